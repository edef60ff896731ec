"""A Transfer24 stand-in on loopback, built on the kit (``portal.testing.emulator``): its
API, its bank page, its signed notifications."""

from __future__ import annotations

import html
import itertools
import json
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from portal.testing.emulator import Emulator, EmulatorHandler, EmulatorState

from .provider import SIGNATURE_HEADER, sign


@dataclass
class _State(EmulatorState):
    api_key: str = ""
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    data_lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(EmulatorHandler[_State]):
    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.api_key}":
            return True
        self.send_json(401, {"error": "unauthorised"})
        return False

    def _body(self) -> dict[str, Any]:
        raw = self.read_body()
        data = json.loads(raw) if raw.startswith(b"{") else urllib.parse.parse_qs(raw.decode())
        return data if isinstance(data, dict) else {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.begin():
            return
        token = self.path.rsplit("/", 1)[1]
        trn = self.state.transactions.get(token)
        if self.path.startswith("/trnRequest/"):
            if trn is None:
                self.send_json(404, {"error": "no such transaction"})
                return
            page = (
                "<!doctype html><html lang='pl'><head><meta charset='utf-8'>"
                "<title>Transfer24</title></head><body><main><h1>Transfer24</h1>"
                f"<p>{trn['amount'] / 100:.2f} {html.escape(trn['currency'])}</p>"
                f"<form method='post' action='/trnRequest/{token}'>"
                "<button name='action' value='pay'>Zapłać</button>"
                "<button name='action' value='decline'>Odrzuć</button>"
                "</form></main></body></html>"
            )
            self.send_body(200, page.encode(), "text/html; charset=utf-8")
            return
        if not self._authorised():
            return
        if trn is None:
            self.send_json(404, {"error": "no such transaction"})
        else:
            self.send_json(200, trn)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        data = self._body()
        if self.begin(data):
            return
        emulator = self.emulator
        assert isinstance(emulator, Transfer24Emulator)
        if self.path.startswith("/trnRequest/"):
            action = data.get("action", ["decline"])[0]
            target = emulator.decide(self.path.rsplit("/", 1)[1], str(action))
            self.send_body(303, b"", "text/plain", {"Location": target})
            return
        if not self._authorised():
            return
        state = self.state
        if self.path == "/api/v1/transactions":
            key = self.headers.get("Idempotency-Key") or ""
            with state.data_lock:
                token = state.by_key.get(key)
                if token is None:
                    token = f"T{next(state.ids):08d}"
                    state.by_key[key] = token
                    state.transactions[token] = dict(
                        data, token=token, status="pending", refunded=0
                    )
            redirect = f"{emulator.base_url}/trnRequest/{token}"
            self.send_json(201, {"token": token, "redirect_url": redirect})
        elif self.path == "/api/v1/refunds":
            trn = state.transactions[str(data["token"])]
            trn["refunded"] = min(trn["amount"], trn["refunded"] + int(data["amount"]))
            trn["status"] = "refunded"
            self.send_json(200, trn)
        else:
            self.send_json(404, {"error": "unknown endpoint"})


class Transfer24Emulator(Emulator[_State]):
    name, title, handler = "transfer24", "Transfer24", _Handler

    def __init__(
        self,
        *,
        api_key: str,
        notify_secret: str,
        notify_url: str | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(_State(api_key=api_key), port)
        self.secret = notify_secret
        self.notify_url = notify_url
        self.notifications: list[dict[str, Any]] = []

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def transactions(self) -> dict[str, dict[str, Any]]:
        return self.state.transactions

    @property
    def by_key(self) -> dict[str, str]:
        return self.state.by_key

    # -- what the bank page does ----------------------------------------------------------

    def decide(self, token: str, action: str) -> str:
        """The customer pays or declines on the bank page; returns where they go next."""
        with self.state.data_lock:
            trn = self.transactions[token]
            if trn["status"] == "pending":
                trn["status"] = "paid" if action == "pay" else "failed"
        self.notify(trn)
        return str(trn["url_return"] if action == "pay" else trn["url_cancel"])

    def notification(self, token: str, **changes: Any) -> tuple[bytes, dict[str, str]]:
        """A signed notification of the transaction's state (``changes`` forge fields)."""
        payload = dict(self.transactions[token], event_id=f"N{next(self.state.ids)}", **changes)
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
