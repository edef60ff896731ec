"""The kit's staff client and checkout driver, used as a third party would: a plugin's own
suite, on the kit's fixtures alone, buys with its provider (here ``pakiet-paybylink`` of
tests/thirdparty) and looks at the result in the back office."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.rules import accounts
from portal.testing.pytest_plugin import BASE_PLUGINS, Auth, Checkout
from tests.conftest import third_party_config


@pytest.fixture
def pakiet_config_overrides(paybylink: Any) -> dict[str, Any]:
    return {
        "PLUGINS": [*BASE_PLUGINS, "pakiet_paybylink"],
        "PLUGIN_CONFIG": {"paybylink": third_party_config("paybylink", paybylink)},
    }


def test_the_checkout_driver_buys_with_the_named_provider(
    pakiet_app: Flask, pakiet_customer: FlaskClient, pakiet_staff: FlaskClient, paybylink: Any
) -> None:
    checkout = Checkout(pakiet_customer)
    assert checkout.summary(agents=2).status_code == 422  # no billing data yet: asks for it
    assert Auth(pakiet_customer).fill_billing().status_code == 303

    response = checkout.pay("paybylink", agents=2)

    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(f"{paybylink.base_url}/pay/"), location
    link = paybylink.links[location.rsplit("/", 1)[1]]
    paybylink.pay(link["id"])
    back = pakiet_customer.get(urlparse(link["return"]).path)
    assert back.status_code in (302, 303)
    with pakiet_app.app_context():
        user = accounts.find_user("customer@example.com")
        assert user is not None and user.account is not None
        sub = user.account.subscription
        assert (sub.package, sub.agents, sub.status) == ("standard", 2, "active")
    # Staff see the payment in the back office; the customer is kept out of it.
    payments = pakiet_staff.get("/admin/payments/")
    assert payments.status_code == 200 and "paybylink" in payments.get_data(as_text=True)
    assert pakiet_customer.get("/admin/payments/").status_code in (302, 403, 404)
