"""The Transfer24 client: JSON over HTTP, HMAC-signed notifications."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from portal.plugin_api.contracts import (
    PaymentEvent,
    PaymentEventKind,
    PaymentProvider,
    PaymentRequest,
    ProviderError,
    Redirect,
    WebhookRejected,
)
from portal.rules.money import Money

SIGNATURE_HEADER = "X-Transfer24-Signature"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Transfer24Provider(PaymentProvider):
    name = "transfer24"
    currencies = frozenset({"PLN"})
    saves_methods = False  # a bank transfer: nothing to charge again
    renewable_brands: frozenset[str] = frozenset()  # renewals are paid by hand
    can_refund = True  # /api/v1/refunds gives money back

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.base_url = str(config["base_url"]).rstrip("/")
        # The bank's payment page is served from the API's own origin.
        parts = urllib.parse.urlsplit(self.base_url)
        self.hosted_origins = frozenset({f"{parts.scheme}://{parts.netloc}"})
        self.api_key = str(config["api_key"])
        self.secret = str(config["notify_secret"])
        self.timeout = float(config.get("timeout", 5))

    def label(self, language: str) -> str:
        return "Przelew online (Transfer24)" if language == "pl" else "Online bank transfer"

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.api_key}")
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ProviderError(
                f"Transfer24 answered {exc.code}", retryable=exc.code >= 500
            ) from exc
        except (OSError, ValueError) as exc:
            raise ProviderError(f"Transfer24 unreachable: {exc}", retryable=True) from exc
        if not isinstance(answer, dict):
            raise ProviderError("Transfer24 sent a malformed reply", retryable=True)
        return answer

    def start_payment(self, request: PaymentRequest) -> Redirect:
        answer = self._call(
            "POST",
            "/api/v1/transactions",
            {
                "session_id": request.payment_id,
                "amount": request.amount.minor,
                "currency": request.amount.currency,
                "description": request.description,
                "email": request.customer_email,
                "url_return": request.return_url,
                "url_cancel": request.cancel_url,
            },
            key=request.idempotency_key,
        )
        return Redirect(url=str(answer["redirect_url"]), provider_ref=str(answer["token"]))

    def _event(self, data: Mapping[str, Any], event_id: str) -> PaymentEvent:
        status = data.get("status")
        amount = Money(int(data["amount"]), str(data["currency"]))
        if status == "paid":
            kind = PaymentEventKind.SUCCEEDED
        elif status == "failed":
            kind = PaymentEventKind.FAILED
        elif status == "refunded":
            kind = PaymentEventKind.REFUNDED
            amount = Money(int(data["refunded"]), str(data["currency"]))
        else:
            raise ProviderError("the transfer is not settled yet", code="pending", retryable=True)
        return PaymentEvent(
            event_id=event_id,
            kind=kind,
            payment_id=str(data["session_id"]),
            provider_ref=str(data["token"]),
            amount=amount,
            charge_ref=str(data["token"]),
            failure_code="transfer_rejected" if kind is PaymentEventKind.FAILED else None,
        )

    def complete_return(self, *, provider_ref: str, params: Mapping[str, str]) -> PaymentEvent:
        data = self._call("GET", f"/api/v1/transactions/{provider_ref}")
        return self._event(data, f"status:{provider_ref}:{data.get('status')}")

    def refund(self, *, charge_ref: str, amount: Money, idempotency_key: str) -> PaymentEvent:
        data = self._call(
            "POST",
            "/api/v1/refunds",
            {"token": charge_ref, "amount": amount.minor},
            key=idempotency_key,
        )
        return self._event(data, f"refund:{idempotency_key}")

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
        if not given or not hmac.compare_digest(given, sign(self.secret, body)):
            raise WebhookRejected("bad Transfer24 signature")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("a Transfer24 notification is JSON") from exc
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("status"), str)
            or not isinstance(data.get("event_id"), str | int)
        ):
            raise WebhookRejected("a Transfer24 notification has an event_id and a status")
        if data.get("status") not in {"paid", "failed", "refunded"}:
            return None
        return self._event(data, str(data["event_id"]))
