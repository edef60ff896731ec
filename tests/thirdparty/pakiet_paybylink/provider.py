"""The PayByLink client: form-encoded requests, JSON answers, signed notifications.

Every notification carries ``X-PayByLink-Signature: t=<unix time>,v1=<hex>``, the HMAC-SHA256
of ``"<t>.<body>"`` with the merchant's secret.
"""

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

SIGNATURE_HEADER = "X-PayByLink-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class PayByLinkProvider(PaymentProvider):
    name = "paybylink"
    currencies = frozenset({"PLN", "EUR"})
    saves_methods = False
    renewable_brands: frozenset[str] = frozenset()  # a link is paid once: it cannot renew
    can_refund = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.base_url = str(config["base_url"]).rstrip("/")
        # The link's payment page is served from the API's own origin.
        parts = urllib.parse.urlsplit(self.base_url)
        self.hosted_origins = frozenset({f"{parts.scheme}://{parts.netloc}"})
        self.merchant_id = str(config["merchant_id"])
        self.secret = str(config["secret"])
        self.timeout = float(config.get("timeout", 5))

    def label(self, language: str) -> str:
        return "Płatność linkiem (PayByLink)" if language == "pl" else "Pay by link (PayByLink)"

    def _call(self, method: str, path: str, form: Mapping[str, Any] | None = None) -> Any:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("X-Merchant", self.merchant_id)
        request.add_header("Authorization", f"Bearer {self.secret}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ProviderError(
                f"PayByLink answered {exc.code}", retryable=exc.code >= 500
            ) from exc
        except (OSError, ValueError) as exc:
            raise ProviderError(f"PayByLink unreachable: {exc}", retryable=True) from exc
        if not isinstance(answer, dict):
            raise ProviderError("PayByLink sent a malformed reply", retryable=True)
        return answer

    def start_payment(self, request: PaymentRequest) -> Redirect:
        answer = self._call(
            "POST",
            "/v1/links",
            {
                "reference": request.payment_id,
                "request_id": request.idempotency_key,
                "amount": request.amount.minor,
                "currency": request.amount.currency,
                "title": request.description,
                "email": request.customer_email,
                "return": request.return_url,
                "cancel": request.cancel_url,
                "notify": request.webhook_url or "",
            },
        )
        return Redirect(url=str(answer["url"]), provider_ref=str(answer["id"]))

    def _event(self, link: Mapping[str, Any], event_id: str) -> PaymentEvent:
        state = link.get("state")
        currency = str(link["currency"])
        if state == "PAID":
            kind, amount = PaymentEventKind.SUCCEEDED, Money(int(link["amount"]), currency)
        elif state in ("REJECTED", "EXPIRED"):
            kind, amount = PaymentEventKind.FAILED, None
        elif state == "REFUNDED":
            kind, amount = PaymentEventKind.REFUNDED, Money(int(link["refunded"]), currency)
        else:
            raise ProviderError("the link is not paid yet", code="pending", retryable=True)
        return PaymentEvent(
            event_id=event_id,
            kind=kind,
            payment_id=str(link["reference"]),
            provider_ref=str(link["id"]),
            amount=amount,
            charge_ref=str(link["id"]),
            failure_code=str(state).lower() if kind is PaymentEventKind.FAILED else None,
        )

    def complete_return(self, *, provider_ref: str, params: Mapping[str, str]) -> PaymentEvent:
        link = self._call("GET", f"/v1/links/{urllib.parse.quote(provider_ref)}")
        return self._event(link, f"{provider_ref}:{link.get('state')}")

    def cancel(self, *, provider_ref: str) -> PaymentEvent | None:
        link = self._call("POST", f"/v1/links/{urllib.parse.quote(provider_ref)}/close")
        return self._event(link, f"{provider_ref}:{link.get('state')}")

    def refund(self, *, charge_ref: str, amount: Money, idempotency_key: str) -> PaymentEvent:
        link = self._call(
            "POST",
            f"/v1/links/{urllib.parse.quote(charge_ref)}/refunds",
            {"amount": amount.minor, "request_id": idempotency_key},
        )
        return self._event(link, f"refund:{idempotency_key}")

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
        parts = dict(part.split("=", 1) for part in given.split(",") if "=" in part)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError as exc:
            raise WebhookRejected("no PayByLink signature") from exc
        if not hmac.compare_digest(given, sign(self.secret, body, timestamp)):
            raise WebhookRejected("bad PayByLink signature")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("a PayByLink notification is JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("link"), dict):
            raise WebhookRejected("a PayByLink notification carries its link")
        if data["link"].get("state") not in {"PAID", "REJECTED", "EXPIRED", "REFUNDED"}:
            return None
        return self._event(data["link"], str(data["id"]))
