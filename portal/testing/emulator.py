"""A kit for emulators: a web service's stand-in on ``127.0.0.1``, for tests and demos.

An emulator is three small pieces, and this module writes the common part of each:

* a *state* (:class:`EmulatorState`, a dataclass): what the emulator serves, plus the
  requests it answered, the faults queued for the next requests, a latency, a lock and a
  ``stopping`` event. Subclass it with the service's own fields.
* a *handler* (:class:`EmulatorHandler`): one ``do_GET``/``do_POST`` per HTTP method the
  service answers. It starts with :meth:`~EmulatorHandler.begin`, which records the
  request, waits the latency and answers a queued fault; then it answers with
  :meth:`~EmulatorHandler.send_body`, :meth:`~EmulatorHandler.send_text` or
  :meth:`~EmulatorHandler.send_json`, which never fail on a client that hung up.
* the *emulator* (:class:`Emulator`): a server on its own thread with ``start()``,
  ``stop()``, ``with``, :attr:`~Emulator.base_url`, :attr:`~Emulator.requests`,
  :meth:`~Emulator.fail_next` and :attr:`~Emulator.latency`. Subclass it with the test
  controls of the service (``set_rate(...)``, ``set_outcome(...)``).

A complete emulator::

    from dataclasses import dataclass

    from portal.testing.emulator import (
        Emulator, EmulatorHandler, EmulatorState, run_from_command_line,
    )

    @dataclass
    class _State(EmulatorState):
        greeting: str = "hello"

    class _Handler(EmulatorHandler[_State]):
        def do_GET(self) -> None:
            if self.begin():  # recorded; a fault or the emulator stopping answered it
                return
            self.send_text(200, self.state.greeting)

    class HelloEmulator(Emulator[_State]):
        name, title, handler = "hello", "Hello", _Handler

        def __init__(self, port: int = 0) -> None:
            super().__init__(_State(), port)

    if __name__ == "__main__":  # python -m my_plugin.emulator --port 12199 [--latency 0.2]
        run_from_command_line(HelloEmulator, "Hello API emulator", port=12199)

and in a test::

    with HelloEmulator() as hello:  # a free port; stopped at the end of the block
        PLUGIN_CONFIG = {"hello": {"base_url": hello.base_url, "timeout": 2}}
        hello.fail_next(503)        # or "timeout" / "garbage"; count=n
        ...
        assert [seen.path for seen in hello.requests] == ["/greeting"]

Faults (:meth:`Emulator.fail_next`) answer the next requests in place of the service: an
HTTP status with the service's error body (:meth:`EmulatorHandler.fault_body`),
``"timeout"`` (no answer until the client hangs up, the emulator stops or
:data:`HANG_SECONDS` pass), ``"close"`` (the connection closed unanswered) or ``"garbage"``
(HTTP 200 and a body the client cannot read, by default a proxy's HTML error page). A fault
can be limited to the requests whose path starts with ``path``, and can be ``processed``:
the request is carried out and only its answer is lost, as when the network fails after the
service acted (the test of a client's idempotent retry). :attr:`Emulator.latency` delays
every answer; :meth:`EmulatorHandler.send_trickle` sends a reply one byte at a time, for
clients that must bound a whole exchange.

An emulator with its own routing (a large API, hosted pages, webhooks it sends) uses the
same pieces: its handler reads :attr:`EmulatorHandler.emulator`, takes a fault with
:meth:`EmulatorHandler.take_fault` and answers it with :meth:`EmulatorHandler.answer_fault`;
background threads (a webhook sender) start in an overridden :meth:`Emulator.start` and end
in :meth:`Emulator.stop`, which sets :attr:`Emulator.stopping` first. The Stripe and PayPal
emulators are built this way.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast

#: The faults :meth:`Emulator.fail_next` takes besides an HTTP status.
FAULTS = ("timeout", "close", "garbage")
#: A fault: an HTTP status or one of :data:`FAULTS`.
Fault = int | Literal["timeout", "close", "garbage"]
#: How long a ``"timeout"`` fault holds its request at the most (clients give up sooner).
HANG_SECONDS = 30.0


@dataclass
class FaultPlan:
    """A fault queued by :meth:`Emulator.fail_next`: ``remaining`` more requests (whose path
    starts with ``path``, when set) get ``fault``; ``processed`` ones are carried out first."""

    fault: Fault
    path: str | None = None
    processed: bool = False
    remaining: int = 1


def check_fault(fault: int | str) -> Fault:
    """``fault`` as a :data:`Fault` (``"503"`` from a command line is 503), or ValueError."""
    if isinstance(fault, str) and fault.isdigit():
        fault = int(fault)
    if isinstance(fault, int):
        if not 100 <= fault <= 599:
            raise ValueError(f"not an HTTP status: {fault}")
        return fault
    if fault not in FAULTS:
        raise ValueError(f"a fault is an HTTP status or one of {FAULTS}: {fault!r}")
    return cast(Fault, fault)


@dataclass
class Seen:
    """One request the emulator answered (tests assert what the client asked).

    ``body`` is what the handler passed to :meth:`EmulatorHandler.begin`, such as the
    parsed JSON of a POST; ``None`` for a GET."""

    method: str
    path: str
    body: Any = None


@dataclass(kw_only=True)
class EmulatorState:
    """What every emulator keeps; subclass it (a ``@dataclass``) with the service's own."""

    latency: float = 0.0  # seconds before every answer
    faults: deque[FaultPlan] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


S = TypeVar("S", bound=EmulatorState)


class EmulatorHandler(BaseHTTPRequestHandler, Generic[S]):
    """The base of an emulator's request handler: quiet, HTTP/1.1, with ``state`` (the
    running emulator's :class:`EmulatorState`) and the helpers below."""

    state: S
    #: The running :class:`Emulator` (for an emulator that routes requests itself).
    emulator: Emulator[S]
    protocol_version = "HTTP/1.1"
    #: What a ``"garbage"`` fault answers with HTTP 200.
    garbage_page: ClassVar[bytes] = b"<html><body><h1>Service unavailable</h1></body></html>"
    garbage_type: ClassVar[str] = "text/html"
    #: The content type of :meth:`send_text` and of the text of a status fault.
    text_type: ClassVar[str] = "text/plain; charset=utf-8"
    #: A ``processed`` fault taken by :meth:`begin`: the next answer is replaced by it.
    lost_answer: FaultPlan | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`Emulator.requests` instead."""

    # -- a request's start -----------------------------------------------------------------

    def begin(self, body: Any = None) -> bool:
        """Record the request (with ``body``), wait the latency and answer a queued fault.

        ``True`` when the request is dealt with (a fault answered it, or the emulator is
        stopping): the handler then returns without answering. A ``processed`` fault lets
        the handler carry the request out; its answer is then replaced by the fault."""
        state = self.state
        with state.lock:
            state.requests.append(Seen(self.command, self.path, body))
            latency = state.latency
        if self.pause(latency):
            return True
        plan = self.take_fault()
        if plan is None:
            return False
        if plan.processed:
            self.lost_answer = plan
            return False
        self.answer_fault(plan.fault)
        return True

    def read_body(self) -> bytes:
        """The request's body (read even when a fault answers: a socket closed with unread
        input is reset, and the client would see the reset instead of the fault)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def take_fault(self) -> FaultPlan | None:
        """The first queued fault for this request's path, counted as used; ``None`` if none."""
        path = self.path.split("?", 1)[0]
        state = self.state
        with state.lock:
            for plan in state.faults:
                if plan.path is None or path.startswith(plan.path):
                    plan.remaining -= 1
                    if plan.remaining <= 0:
                        state.faults.remove(plan)
                    return plan
        return None

    def answer_fault(self, fault: Fault) -> None:
        """Answer ``fault`` in place of the service (see the module's docs)."""
        if fault == "timeout":
            self.stall()
        elif fault == "close":
            self.close_connection = True
        elif fault == "garbage":
            self._write(200, self.garbage_page, self.garbage_type, {})
        else:
            body, content_type = self.fault_body(int(fault))
            self._write(int(fault), body, content_type, {})

    def fault_body(self, status: int) -> tuple[bytes, str]:
        """The body and content type a status fault answers with; override to answer the
        service's own error document (by default :meth:`fault_text` as text)."""
        return self.fault_text(status).encode(), self.text_type

    def fault_text(self, status: int) -> str:
        """The text a status fault answers with; override to mimic the service's."""
        return f"{status} Error"

    def stall(self) -> None:
        """Answer nothing until the client hangs up (its timeout), the emulator stops or
        :data:`HANG_SECONDS` pass; then close the connection."""
        connection = self.connection
        deadline = time.monotonic() + HANG_SECONDS
        while not self.state.stopping.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([connection], [], [], 0.05)
            if readable:
                try:
                    if not connection.recv(1):
                        break
                except OSError:
                    break
        self.close_connection = True

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``True`` when the emulator is stopping (answer nothing)."""
        return seconds > 0 and self.state.stopping.wait(seconds)

    # -- answers ---------------------------------------------------------------------------

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``status`` with ``body`` (and ``headers``; empty values are left out); a
        client that gave up is no error. A ``processed`` fault answers in its place."""
        if self.lost_answer is not None:
            plan, self.lost_answer = self.lost_answer, None
            self.answer_fault(plan.fault)
            return
        self._write(status, body, content_type, headers or {})

    def _write(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                if value:
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client timed out and closed the connection
            pass

    def send_text(self, status: int, text: str, content_type: str | None = None) -> None:
        self.send_body(status, text.encode(), content_type or self.text_type)

    def send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        self.send_body(status, body, "application/json", headers)

    def send_trickle(
        self, status: int, body: bytes, content_type: str, interval: float = 0.5
    ) -> None:
        """Answer one byte every ``interval`` seconds, far slower than any client waits."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body:
                if self.pause(interval):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        except OSError:  # the client gave up, as it should
            pass


class Emulator(Generic[S]):
    """A server on ``127.0.0.1`` answering with ``handler`` from ``state``, on a thread.

    ``port=0`` picks a free port (tests); :attr:`base_url` says which. Subclasses set
    :attr:`name`, :attr:`title` and :attr:`handler` and add the service's test controls.
    """

    #: The thread's name is ``{name}-emulator``.
    name: ClassVar[str] = "http"
    #: The command line prints ``{title} emulator at {base_url}``.
    title: ClassVar[str] = "HTTP"
    handler: ClassVar[type[EmulatorHandler[Any]]] = EmulatorHandler
    #: Whether :meth:`stop` waits for the requests being answered (nothing outlives it).
    join_requests: ClassVar[bool] = False

    def __init__(self, state: S, port: int = 0, host: str = "127.0.0.1") -> None:
        self.state = state
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    def start(self) -> Self:
        self.state.stopping.clear()
        # A handler class per server: each running emulator answers from its own state.
        handler = type(
            f"{type(self).__name__}Handler",
            (self.handler,),
            {"state": self.state, "emulator": self},
        )
        self._server = _Server((self._host, self._port), handler)
        self._server.daemon_threads = not self.join_requests
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that stop() returns at once
            name=f"{self.name}-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()  # wakes handlers that hang, sleep or trickle
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def stopping(self) -> threading.Event:
        """Set by :meth:`stop`: what the emulator's own threads (a webhook sender) wait on."""
        return self.state.stopping

    # -- what tests read and set -----------------------------------------------------------

    @property
    def requests(self) -> list[Seen]:
        with self.state.lock:
            return list(self.state.requests)

    def clear_requests(self) -> None:
        with self.state.lock:
            self.state.requests.clear()

    @property
    def latency(self) -> float:
        """Seconds the emulator waits before every answer (0 by default)."""
        return self.state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.state.latency = seconds

    def fail_next(
        self,
        status: int | str = 500,
        count: int = 1,
        *,
        path: str | None = None,
        processed: bool = False,
    ) -> None:
        """Answer the next ``count`` requests (whose path starts with ``path``, when given)
        with HTTP ``status``, or ``"timeout"``, ``"close"`` or ``"garbage"`` (see the
        module's docs). With ``processed`` each request is carried out and only its answer
        is lost."""
        if count < 1:
            raise ValueError(f"count must be at least 1: {count}")
        plan = FaultPlan(check_fault(status), path, processed, count)
        with self.state.lock:
            self.state.faults.append(plan)


class _Server(ThreadingHTTPServer):
    # Clients that open many connections at once (a billing run's threads, a benchmark's 16
    # connections) must not find the listen queue full (the default is 5): a dropped SYN
    # is retried after a second or more, and looks like a slow service.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (timeouts, tests) is not an error; anything
        else (an emulator's bug) is printed, as the standard server does."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def serve_until_interrupted(emulator: Emulator[Any]) -> None:
    """Start ``emulator``, say where it listens, and serve until Ctrl-C; then stop it."""
    emulator.start()
    print(f"{emulator.title} emulator at {emulator.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def run_from_command_line(
    make: Callable[..., Emulator[Any]],
    description: str,
    *,
    port: int,
    argv: list[str] | None = None,
) -> None:
    """``python -m plugin.emulator [--port N] [--latency S]``: ``make(port=N)``, served
    until interrupted. ``port`` is the default port (the demo's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    emulator = make(port=args.port)
    emulator.latency = args.latency
    serve_until_interrupted(emulator)
