"""Signed webhooks whose body is not the object the provider sends (security issue,
point 7): answered 400, never 500, and nothing is recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from pakiet_stripe.emulator import StripeEmulator
from portal.infra.extensions import db
from portal.infra.models import ProviderEvent
from tests.conftest import providers_config

STRIPE_KEY = "sk_test_bodies"
STRIPE_SECRET = "whsec_bodies"
ODD_BODIES = [b"[]", b'"x"', b"{}", b"null", b"42", b'{"data": []}', b'{"type": 5, "data": {}}']


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET) as emulator:
        yield emulator


@pytest.fixture
def config_overrides(stripe_emulator, paypal, transfer24) -> dict[str, Any]:
    return providers_config(stripe_emulator, paypal, transfer24, timeout=5)


def recorded(app) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(ProviderEvent)) or 0)


@pytest.mark.parametrize("body", ODD_BODIES)
def test_a_signed_stripe_webhook_of_the_wrong_shape_is_400(app, client, stripe_emulator, body):
    headers = {"Stripe-Signature": stripe_emulator.sign(body)}
    response = client.post(
        "/webhooks/stripe", data=body, headers=headers, content_type="application/json"
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert recorded(app) == 0


@pytest.mark.parametrize("body", ODD_BODIES)
def test_a_signed_paypal_webhook_of_the_wrong_shape_is_400(app, client, paypal, body):
    with paypal._lock:  # noqa: SLF001 - the emulator signs any event it is given
        _body, headers = paypal._transmission(json.loads(body))  # noqa: SLF001
    response = client.post("/webhooks/paypal", data=body, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert recorded(app) == 0


@pytest.mark.parametrize("body", ODD_BODIES)
def test_a_signed_transfer24_webhook_of_the_wrong_shape_is_400(app, client, transfer24, body):
    from pakiet_transfer24.provider import SIGNATURE_HEADER, sign

    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign("t24-secret", body)}
    response = client.post("/webhooks/transfer24", data=body, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert recorded(app) == 0


def test_a_webhook_may_be_larger_than_a_form_but_not_unbounded(app, client, transfer24):
    medium = b'{"padding": "' + b"x" * 600_000 + b'"}'  # beyond MAX_CONTENT_LENGTH of forms
    response = client.post("/webhooks/transfer24", data=medium, content_type="application/json")
    assert response.status_code == 400  # read, and refused as unsigned: not too large
    huge = b'{"padding": "' + b"x" * 1_200_000 + b'"}'
    response = client.post("/webhooks/transfer24", data=huge, content_type="application/json")
    assert response.status_code == 413
