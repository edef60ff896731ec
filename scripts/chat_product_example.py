"""The chat product's side of the integration, as a runnable example (docs/integration.md).

Standard library only. Two commands:

    # A single-use link that signs the account's user in to the portal (5 minutes):
    python scripts/chat_product_example.py link --portal http://127.0.0.1:5000 \\
        --token chat-service-token --account 1 --page invoices \\
        --return-url http://127.0.0.1:8765/app

    # A webhook receiver that checks the signature and de-duplicates events by id:
    python scripts/chat_product_example.py receive --port 8765 --secret whsec_example

The portal side: ``ENTITLEMENTS_TOKENS=["chat-service-token"]``,
``PORTAL_RETURN_URLS=["http://127.0.0.1:8765/app"]``,
``WEBHOOK_URLS=["http://127.0.0.1:8765/webhooks/pakiet"]``, ``WEBHOOK_SECRET="whsec_example"``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: How far the signature's time may be from ours (replayed old events are refused).
TOLERANCE = 300


class BadSignature(ValueError):
    """The event is not the portal's, or too old: answer 400 and ignore it."""


def verify(secret: str, header: str, body: bytes, now: float, tolerance: int = TOLERANCE) -> None:
    """Check a ``Pakiet-Signature`` header (``t=<unix time>,v1=<hex HMAC-SHA256>``) over the
    raw body; raise :class:`BadSignature` when it does not hold."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise BadSignature("no timestamp") from None
    if abs(now - timestamp) > tolerance:
        raise BadSignature("timestamp outside the tolerance")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise BadSignature("signature does not match")


def create_link(
    portal: str, token: str, account: int, page: str = "package", return_url: str | None = None
) -> dict[str, Any]:
    """``POST /api/v1/portal-sessions``: ``{"id", "url", "expires_at"}``; raises
    ``urllib.error.HTTPError`` with the JSON error on a refusal."""
    body: dict[str, Any] = {"account": account, "page": page}
    if return_url:
        body["return_url"] = return_url
    request = urllib.request.Request(
        portal.rstrip("/") + "/api/v1/portal-sessions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.load(response)
        return result


class Receiver(BaseHTTPRequestHandler):
    """Takes the portal's events: checks the signature, skips an id seen before (delivery
    is at least once), answers 2xx quickly (do slow work after answering)."""

    secret = ""
    seen: set[str] = set()
    handle_event: Any = staticmethod(lambda event: print(json.dumps(event), flush=True))
    clock: Any = staticmethod(time.time)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1024 * 1024))
        try:
            verify(self.secret, self.headers.get("Pakiet-Signature", ""), body, self.clock())
            event = json.loads(body)
        except (BadSignature, ValueError):
            self.send_response(400)
            self.end_headers()
            return
        if event["id"] not in self.seen:  # a real receiver keeps these in its database
            self.seen.add(event["id"])
            self.handle_event(event)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    link = commands.add_parser("link", help="create a portal-session link")
    link.add_argument("--portal", default="http://127.0.0.1:5000")
    link.add_argument("--token", required=True)
    link.add_argument("--account", type=int, required=True)
    link.add_argument("--page", default="package", choices=("package", "checkout", "invoices"))
    link.add_argument("--return-url")
    receive = commands.add_parser("receive", help="run a webhook receiver")
    receive.add_argument("--port", type=int, default=8765)
    receive.add_argument("--secret", required=True)
    args = parser.parse_args(argv)
    if args.command == "link":
        try:
            made = create_link(args.portal, args.token, args.account, args.page, args.return_url)
        except urllib.error.HTTPError as exc:
            print(exc.code, exc.read().decode(errors="replace"), file=sys.stderr)
            return 1
        except (urllib.error.URLError, OSError) as exc:
            print(f"the portal at {args.portal} did not answer: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(made))
        return 0
    Receiver.secret = args.secret
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Receiver)
    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
