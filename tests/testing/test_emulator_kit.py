"""The emulator kit (portal.testing.emulator) itself: faults, their scope, a processed
fault, the stall, and stopping while a request hangs. Every emulator of the project and the
third-party ones stand on these."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from portal.testing.emulator import (
    Emulator,
    EmulatorHandler,
    EmulatorState,
    check_fault,
)


@dataclass
class _State(EmulatorState):
    count: int = 0


class _Handler(EmulatorHandler[_State]):
    garbage_page = b'{"truncated'
    garbage_type = "application/json"

    def fault_body(self, status: int) -> tuple[bytes, str]:
        return b'{"error": "injected"}', "application/json"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.begin():
            return
        self.send_json(200, {"count": self.state.count, "mine": self.emulator is not None})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.read_body()
        if self.begin(body):
            return
        with self.state.lock:
            self.state.count += 1
            count = self.state.count
        self.send_json(201, {"count": count}, {"X-Count": str(count), "X-Empty": ""})


class _Counter(Emulator[_State]):
    name, title, handler = "counter", "Counter", _Handler

    def __init__(self, port: int = 0) -> None:
        super().__init__(_State(), port)


@pytest.fixture
def counter() -> Iterator[_Counter]:
    with _Counter() as emulator:
        yield emulator


def call(
    emulator: _Counter, method: str, path: str, timeout: float = 5
) -> tuple[int, bytes, http.client.HTTPMessage]:
    host, port = emulator.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=b"x=1" if method == "POST" else None)
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def test_an_answer_carries_its_headers_and_leaves_out_empty_ones(counter: _Counter) -> None:
    status, body, headers = call(counter, "POST", "/count")
    assert (status, body) == (201, b'{"count": 1}')
    assert headers["X-Count"] == "1" and "X-Empty" not in headers
    assert [(seen.method, seen.path, seen.body) for seen in counter.requests] == [
        ("POST", "/count", b"x=1")
    ]


def test_a_status_fault_answers_the_services_error_body_once(counter: _Counter) -> None:
    counter.fail_next(503)
    assert call(counter, "GET", "/")[:2] == (503, b'{"error": "injected"}')
    assert call(counter, "GET", "/")[:2] == (200, b'{"count": 0, "mine": true}')


def test_count_faults_in_a_row_then_the_service_again(counter: _Counter) -> None:
    counter.fail_next("garbage", count=2)
    assert [call(counter, "GET", "/")[:2] for _ in range(3)] == [
        (200, b'{"truncated'),
        (200, b'{"truncated'),
        (200, b'{"count": 0, "mine": true}'),
    ]


def test_a_fault_scoped_to_a_path_leaves_other_paths_alone(counter: _Counter) -> None:
    counter.fail_next(500, path="/count")
    assert call(counter, "GET", "/status")[0] == 200
    assert call(counter, "POST", "/count")[0] == 500
    assert counter.state.count == 0  # not carried out
    assert call(counter, "POST", "/count")[0] == 201


def test_a_processed_fault_carries_the_request_out_and_loses_its_answer(
    counter: _Counter,
) -> None:
    counter.fail_next(502, processed=True)
    assert call(counter, "POST", "/count")[:2] == (502, b'{"error": "injected"}')
    assert counter.state.count == 1  # the service acted; only the answer was lost
    assert call(counter, "POST", "/count")[:2] == (201, b'{"count": 2}')


def test_close_ends_the_connection_unanswered(counter: _Counter) -> None:
    counter.fail_next("close")
    with pytest.raises(http.client.RemoteDisconnected):
        call(counter, "GET", "/")
    assert call(counter, "GET", "/")[0] == 200


def test_timeout_answers_nothing_until_the_client_gives_up(counter: _Counter) -> None:
    counter.fail_next("timeout")
    with pytest.raises(socket.timeout):
        call(counter, "GET", "/", timeout=0.5)
    assert call(counter, "GET", "/")[0] == 200  # the next request is answered


def test_stop_ends_a_request_that_hangs(counter: _Counter) -> None:
    counter.fail_next("timeout")
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            call(counter, "GET", "/", timeout=60)
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    client = threading.Thread(target=hang)
    client.start()
    while not counter.requests:  # the request arrived and hangs
        threading.Event().wait(0.02)
    counter.stop()
    client.join(timeout=10)
    assert not client.is_alive(), "the client still waits: stop() left the request hanging"
    assert outcome and isinstance(outcome[0], http.client.RemoteDisconnected)


@pytest.mark.parametrize(
    ("given", "fault"), [(503, 503), ("503", 503), ("timeout", "timeout"), ("close", "close")]
)
def test_faults_are_read_from_a_command_line_or_code(given: int | str, fault: object) -> None:
    assert check_fault(given) == fault


@pytest.mark.parametrize("given", ["nope", 99, 600, "5o3"])
def test_an_unknown_fault_is_refused(given: int | str, counter: _Counter) -> None:
    with pytest.raises(ValueError):
        check_fault(given)
    with pytest.raises(ValueError):
        counter.fail_next(given)


def test_a_fault_count_below_one_is_refused(counter: _Counter) -> None:
    with pytest.raises(ValueError):
        counter.fail_next(500, count=0)
