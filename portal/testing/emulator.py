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
HTTP status with a short text, ``"timeout"`` (no answer until the client gives up or the
emulator stops) or ``"garbage"`` (HTTP 200 and an HTML page, as a proxy's error page
would be). :attr:`Emulator.latency` delays every answer; :meth:`EmulatorHandler.send_trickle`
sends a reply one byte at a time, for clients that must bound a whole exchange.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

#: The faults :meth:`Emulator.fail_next` takes besides an HTTP status.
FAULTS = ("timeout", "garbage")
#: How long a ``"timeout"`` fault holds its request at the most (clients give up sooner).
HANG_SECONDS = 30.0


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
    faults: deque[int | str] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


S = TypeVar("S", bound=EmulatorState)


class EmulatorHandler(BaseHTTPRequestHandler, Generic[S]):
    """The base of an emulator's request handler: quiet, HTTP/1.1, with ``state`` (the
    running emulator's :class:`EmulatorState`) and the helpers below."""

    state: S
    protocol_version = "HTTP/1.1"
    #: What a ``"garbage"`` fault answers with HTTP 200.
    garbage_page: ClassVar[bytes] = b"<html><body><h1>Service unavailable</h1></body></html>"
    garbage_type: ClassVar[str] = "text/html"
    #: The content type of :meth:`send_text` and of the text of a status fault.
    text_type: ClassVar[str] = "text/plain; charset=utf-8"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`Emulator.requests` instead."""

    # -- a request's start -----------------------------------------------------------------

    def begin(self, body: Any = None) -> bool:
        """Record the request (with ``body``), wait the latency and answer a queued fault.

        ``True`` when the request is dealt with (a fault answered it, or the emulator is
        stopping): the handler then returns without answering."""
        state = self.state
        with state.lock:
            state.requests.append(Seen(self.command, self.path, body))
            fault = state.faults.popleft() if state.faults else None
            latency = state.latency
        if self.pause(latency):
            return True
        if fault is None:
            return False
        if fault == "timeout":
            self.state.stopping.wait(HANG_SECONDS)
            self.close_connection = True
        elif fault == "garbage":
            self.send_body(200, self.garbage_page, self.garbage_type)
        else:
            status = int(fault)
            self.send_text(status, self.fault_text(status))
        return True

    def fault_text(self, status: int) -> str:
        """The text a status fault answers with; override to mimic the service's."""
        return f"{status} Error"

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``True`` when the emulator is stopping (answer nothing)."""
        return seconds > 0 and self.state.stopping.wait(seconds)

    # -- answers ---------------------------------------------------------------------------

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        """Answer ``status`` with ``body``; a client that gave up is no error."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client timed out and closed the connection
            pass

    def send_text(self, status: int, text: str, content_type: str | None = None) -> None:
        self.send_body(status, text.encode(), content_type or self.text_type)

    def send_json(self, status: int, data: Any) -> None:
        self.send_body(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")

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

    def __init__(self, state: S, port: int = 0) -> None:
        self.state = state
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    def start(self) -> Self:
        self.state.stopping.clear()
        # A handler class per server: each running emulator answers from its own state.
        handler = type(f"{type(self).__name__}Handler", (self.handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
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
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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

    def fail_next(self, status: int | str = 500, count: int = 1) -> None:
        """Answer the next ``count`` requests with HTTP ``status``, or ``"timeout"`` (no
        answer until the client gives up) or ``"garbage"`` (HTTP 200 and an HTML page)."""
        if not isinstance(status, int) and status not in FAULTS:
            raise ValueError(f"a fault is an HTTP status or one of {FAULTS}: {status!r}")
        with self.state.lock:
            self.state.faults.extend([status] * count)


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
