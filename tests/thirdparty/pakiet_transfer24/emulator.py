"""A Transfer24 stand-in on loopback: its API, its bank page, its signed notifications."""

from __future__ import annotations

import html
import itertools
import json
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .provider import SIGNATURE_HEADER, sign


class Transfer24Emulator:
    def __init__(self, *, api_key: str, notify_secret: str, notify_url: str | None = None) -> None:
        self.api_key = api_key
        self.secret = notify_secret
        self.notify_url = notify_url
        self.transactions: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.notifications: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Transfer24Emulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Transfer24Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the bank page does ----------------------------------------------------------

    def decide(self, token: str, action: str) -> str:
        """The customer pays or declines on the bank page; returns where they go next."""
        with self._lock:
            trn = self.transactions[token]
            if trn["status"] == "pending":
                trn["status"] = "paid" if action == "pay" else "failed"
        self.notify(trn)
        return str(trn["url_return"] if action == "pay" else trn["url_cancel"])

    def notification(self, token: str, **changes: Any) -> tuple[bytes, dict[str, str]]:
        """A signed notification of the transaction's state (``changes`` forge fields)."""
        payload = dict(self.transactions[token], event_id=f"N{next(self._ids)}", **changes)
        body = json.dumps(payload).encode()
        self.notifications.append(payload)
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}

    def notify(self, trn: dict[str, Any]) -> None:
        """Deliver the notification to ``notify_url`` when one is set (a live portal)."""
        if not self.notify_url:
            return
        body, headers = self.notification(str(trn["token"]))
        request = urllib.request.Request(self.notify_url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, data: dict[str, Any]) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {emulator.api_key}":
                    return True
                self._json(401, {"error": "unauthorised"})
                return False

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                data = (
                    json.loads(raw) if raw.startswith(b"{") else urllib.parse.parse_qs(raw.decode())
                )
                return data if isinstance(data, dict) else {}

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.startswith("/trnRequest/"):
                    token = self.path.rsplit("/", 1)[1]
                    trn = emulator.transactions.get(token)
                    if trn is None:
                        self._json(404, {"error": "no such transaction"})
                        return
                    page = (
                        "<!doctype html><html lang='pl'><head><meta charset='utf-8'>"
                        "<title>Transfer24</title></head><body><main><h1>Transfer24</h1>"
                        f"<p>{trn['amount'] / 100:.2f} {html.escape(trn['currency'])}</p>"
                        f"<form method='post' action='/trnRequest/{token}'>"
                        "<button name='action' value='pay'>Zapłać</button>"
                        "<button name='action' value='decline'>Odrzuć</button>"
                        "</form></main></body></html>"
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if not self._authorised():
                    return
                token = self.path.rsplit("/", 1)[1]
                trn = emulator.transactions.get(token)
                if trn is None:
                    self._json(404, {"error": "no such transaction"})
                else:
                    self._json(200, trn)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if self.path.startswith("/trnRequest/"):
                    action = self._body().get("action", ["decline"])[0]
                    target = emulator.decide(self.path.rsplit("/", 1)[1], str(action))
                    self.send_response(303)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not self._authorised():
                    return
                data = self._body()
                if self.path == "/api/v1/transactions":
                    key = self.headers.get("Idempotency-Key") or ""
                    with emulator._lock:
                        token = emulator.by_key.get(key)
                        if token is None:
                            token = f"T{next(emulator._ids):08d}"
                            emulator.by_key[key] = token
                            emulator.transactions[token] = dict(
                                data, token=token, status="pending", refunded=0
                            )
                    self._json(
                        201,
                        {"token": token, "redirect_url": f"{emulator.base_url}/trnRequest/{token}"},
                    )
                elif self.path == "/api/v1/refunds":
                    trn = emulator.transactions[str(data["token"])]
                    trn["refunded"] = min(trn["amount"], trn["refunded"] + int(data["amount"]))
                    trn["status"] = "refunded"
                    self._json(200, trn)
                else:
                    self._json(404, {"error": "unknown endpoint"})

        return Handler
