"""A PayByLink stand-in on loopback, built on the kit (``portal.testing.emulator``): its API,
its payment page, and its signed notifications (delivered to the link's ``notify`` URL)."""

from __future__ import annotations

import html
import itertools
import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from portal.testing.emulator import Emulator, EmulatorHandler, EmulatorState

from .provider import SIGNATURE_HEADER, sign


@dataclass
class _State(EmulatorState):
    merchant_id: str = ""
    secret: str = ""
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_request: dict[str, str] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    deliver: bool = True


class _Handler(EmulatorHandler[_State]):
    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return {key: values[0] for key, values in urllib.parse.parse_qs(raw).items()}

    def _authorised(self) -> bool:
        state = self.state
        if (
            self.headers.get("X-Merchant") == state.merchant_id
            and self.headers.get("Authorization") == f"Bearer {state.secret}"
        ):
            return True
        self.send_json(401, {"error": "unauthorised"})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.begin():
            return
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/pay/"):
            link = self.state.links.get(path.rsplit("/", 1)[1])
            if link is None:
                self.send_text(404, "no such link")
                return
            amount = f"{int(link['amount']) // 100}.{int(link['amount']) % 100:02d}"
            page = (
                "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<title>PayByLink</title></head><body><main><h1>PayByLink</h1>"
                f"<p>{html.escape(link['title'])}: {amount} {html.escape(link['currency'])}</p>"
                f"<form method='post' action='/pay/{link['id']}'>"
                "<button name='action' value='pay'>Pay now</button>"
                "<button name='action' value='reject'>Reject</button>"
                "</form></main></body></html>"
            )
            self.send_body(200, page.encode(), "text/html; charset=utf-8")
            return
        if not self._authorised():
            return
        link = self.state.links.get(path.rsplit("/", 1)[1])
        if path.startswith("/v1/links/") and link is not None:
            self.send_json(200, link)
        else:
            self.send_json(404, {"error": "no such link"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        form = self._form()
        if self.begin(form):
            return
        path = urllib.parse.urlsplit(self.path).path
        state = self.state
        if path.startswith("/pay/"):
            link = state.links.get(path.rsplit("/", 1)[1])
            if link is None:
                self.send_text(404, "no such link")
                return
            paid = form.get("action") == "pay"
            with state.lock:
                if link["state"] == "OPEN":
                    link["state"] = "PAID" if paid else "REJECTED"
            PayByLinkEmulator.deliver(state, link)
            self.send_response(303)
            self.send_header("Location", link["return"] if paid else link["cancel"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self._authorised():
            return
        if path == "/v1/links":
            with state.lock:
                link_id = state.by_request.get(form.get("request_id", ""))
                if link_id is None:
                    link_id = f"L{next(state.ids):06d}"
                    state.by_request[form.get("request_id", "")] = link_id
                    state.links[link_id] = dict(
                        form,
                        id=link_id,
                        amount=int(form["amount"]),
                        state="OPEN",
                        refunded=0,
                        url=f"{self._base()}/pay/{link_id}",
                    )
                link = state.links[link_id]
            self.send_json(201, link)
            return
        parts = path.split("/")  # ["", "v1", "links", id, action]
        link = state.links.get(parts[3]) if len(parts) == 5 else None
        if link is None:
            self.send_json(404, {"error": "no such link"})
        elif parts[4] == "close":
            with state.lock:
                if link["state"] == "OPEN":
                    link["state"] = "EXPIRED"
            self.send_json(200, link)
        elif parts[4] == "refunds" and link["state"] in ("PAID", "REFUNDED"):
            with state.lock:
                link["refunded"] = min(link["amount"], link["refunded"] + int(form["amount"]))
                link["state"] = "REFUNDED"
            self.send_json(200, link)
        else:
            self.send_json(409, {"error": "not refundable"})

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


class PayByLinkEmulator(Emulator[_State]):
    name, title, handler = "paybylink", "PayByLink", _Handler

    def __init__(self, *, merchant_id: str, secret: str, port: int = 0) -> None:
        super().__init__(_State(merchant_id=merchant_id, secret=secret), port)

    @property
    def links(self) -> dict[str, dict[str, Any]]:
        return self.state.links

    def forget(self) -> None:
        """Forget every link (a test that starts from fresh portal data)."""
        with self.state.lock:
            self.state.links.clear()
            self.state.by_request.clear()

    def pay(self, link_id: str, *, deliver: bool = False) -> None:
        """The customer pays the link on its page (a test's shortcut)."""
        link = self.state.links[link_id]
        with self.state.lock:
            link["state"] = "PAID"
        if deliver:
            self.deliver(self.state, link)

    def notification(self, link_id: str, **changes: Any) -> tuple[bytes, dict[str, str]]:
        """A signed notification of the link as it stands (``changes`` forge its fields)."""
        return self.signed(self.state, dict(self.state.links[link_id], **changes))

    @staticmethod
    def signed(state: _State, link: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"id": f"E{next(state.ids):06d}", "link": link}).encode()
        signature = sign(state.secret, body, int(time.time()))
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature}

    @staticmethod
    def deliver(state: _State, link: dict[str, Any]) -> None:
        """POST the notification to the link's ``notify`` URL, when it has one."""
        if not state.deliver or not link.get("notify"):
            return
        body, headers = PayByLinkEmulator.signed(state, link)
        request = urllib.request.Request(link["notify"], data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except OSError:
            pass  # not delivered (no live portal there): the return confirms the payment
