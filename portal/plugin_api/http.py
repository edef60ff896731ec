"""For plugins that ask a web service: settings, one bounded request, errors as core's.

A plugin that fetches from a service (exchange rates from a central bank, a VAT number
from a registry) needs the same few things, written here once:

* :func:`service_settings` and :func:`enabled_setting`: ``base_url``, ``timeout`` and
  ``enabled`` from ``PLUGIN_CONFIG[name]``, checked, so that a typo stops the app at start;
* :func:`checked_base_url`: the URL and timeout a client is built with, checked;
* :func:`fetch`: one HTTP request whose every socket operation is bounded by what is left
  of a deadline (a server that trickles its reply byte by byte cannot stretch it) and
  whose reply is bounded in size. A timeout, a network error or an oversized reply raise a
  retryable :class:`~portal.plugin_api.contracts.ProviderError` (codes ``timeout``,
  ``network``, ``garbage``); any HTTP status comes back for the plugin to judge;
* :func:`status_error`: the usual judgement of an unexpected status (429 and 5xx
  retryable, any other not), and :func:`service_error` for the plugin's own;
* :class:`Clients`: one client per ``(base_url, timeout)`` for the process, so that a
  client's cache of published answers outlives a single hook call.

Every error message starts with the service's name (``"NBP: no answer within the
timeout"``).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from portal.plugin_api.contracts import ProviderError

#: The default bound of a reply's size: every service here answers in a few KiB.
MAX_REPLY_BYTES = 64 * 1024
#: The longest ``timeout`` a client accepts: a page waits for some of these answers.
MAX_TIMEOUT = 60.0


# -- settings --------------------------------------------------------------------------


def enabled_setting(name: str, config: Mapping[str, Any]) -> bool:
    """``config["enabled"]``, ``True`` by default; ValueError unless true or false."""
    enabled = config.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{name}.enabled must be true or false, got {enabled!r}")
    return enabled


def service_settings(
    name: str, config: Mapping[str, Any], *, default_base_url: str, default_timeout: float
) -> tuple[str, float]:
    """``(base_url, timeout)`` from ``config`` (the settings ``PLUGIN_CONFIG[name]``),
    defaults filled in; a ValueError naming ``name.base_url`` or ``name.timeout`` for a
    value of the wrong kind (the client checks the values themselves)."""
    base_url = config.get("base_url", default_base_url)
    if not isinstance(base_url, str):
        raise ValueError(f"{name}.base_url must be a URL, got {base_url!r}")
    raw = config.get("timeout", default_timeout)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"{name}.timeout must be a number of seconds, got {raw!r}")
    try:
        timeout = float(raw)
    except ValueError:
        raise ValueError(f"{name}.timeout must be a number of seconds, got {raw!r}") from None
    return base_url, timeout


def checked_base_url(service: str, base_url: str, timeout: float) -> str:
    """``base_url`` without its trailing ``/``, once it is ``http(s)://host/...`` and
    ``timeout`` is more than 0 and at most :data:`MAX_TIMEOUT` seconds; a ValueError naming
    ``service`` otherwise."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{service} base URL must be http(s)://host/...: {base_url!r}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"{service} timeout must be between 0 and 60 seconds: {timeout!r}")
    return base_url.rstrip("/")


# -- errors ----------------------------------------------------------------------------


def service_error(
    service: str, message: str, code: str, *, retryable: bool = True
) -> ProviderError:
    """``ProviderError("{service}: {message}")``, retryable unless said otherwise."""
    return ProviderError(f"{service}: {message}", code=code, retryable=retryable)


def status_error(service: str, status: int, body: bytes, about: str) -> ProviderError:
    """The error for HTTP ``status`` where another was expected, ``about`` saying what was
    asked: retryable for 429 and 5xx (the service is busy or down), not retryable for any
    other (the request is wrong; asking again will not help), with the start of ``body``."""
    if status >= 500 or status == 429:
        return service_error(service, f"HTTP {status} for {about}", f"http_{status}")
    excerpt = body[:120].decode("utf-8", "replace").strip()
    return service_error(
        service, f"HTTP {status} for {about}: {excerpt!r}", f"http_{status}", retryable=False
    )


# -- one request -----------------------------------------------------------------------


def fetch(
    service: str,
    base_url: str,
    path: str,
    *,
    deadline: float,
    headers: Mapping[str, str],
    method: str = "GET",
    body: bytes | None = None,
    max_bytes: int = MAX_REPLY_BYTES,
) -> tuple[int, bytes]:
    """``(status, body)`` of one ``method`` request to ``base_url + path``.

    Every socket operation is limited to what is left of ``deadline`` (a
    :func:`time.monotonic` time). Raises a retryable ``ProviderError`` with code
    ``timeout`` when the deadline passes, ``network`` when the service cannot be reached
    or breaks the connection, ``garbage`` when the reply is longer than ``max_bytes``.
    """

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise service_error(service, "no answer within the timeout", "timeout")
        return left

    parts = urlsplit(base_url + path)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "", parts.port, timeout=remaining())
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, body=body, headers=dict(headers))
        if connection.sock is not None:
            connection.sock.settimeout(remaining())
        response = connection.getresponse()
        chunks: list[bytes] = []
        size = 0
        while True:
            if connection.sock is not None:
                connection.sock.settimeout(remaining())
            chunk = response.read1(8192)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise service_error(service, "the reply is too long", "garbage")
            chunks.append(chunk)
        return response.status, b"".join(chunks)
    except TimeoutError:
        raise service_error(service, "no answer within the timeout", "timeout") from None
    except (OSError, http.client.HTTPException) as exc:
        raise service_error(service, f"cannot reach {base_url}: {exc}", "network") from None
    finally:
        connection.close()


# -- clients for the process -----------------------------------------------------------

C = TypeVar("C")


class Clients(Generic[C]):
    """One client per ``(base_url, timeout)``, made by ``make(base_url, timeout)`` on first
    use and kept for the process: its cache of published answers outlives a hook call."""

    def __init__(self, make: Callable[[str, float], C]) -> None:
        self._make = make
        self._clients: dict[tuple[str, float], C] = {}
        self._lock = threading.Lock()

    def get(self, base_url: str, timeout: float) -> C:
        key = (base_url.rstrip("/"), timeout)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._clients[key] = self._make(base_url, timeout)
            return found

    def clear(self) -> None:
        """Drop every client and so its cache (tests whose emulators reuse a port)."""
        with self._lock:
            self._clients.clear()
