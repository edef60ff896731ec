"""The VIES plugin against its emulator: every outcome, the requester, the consultation
number as proof, and replies that are garbage or slow never taking longer than the timeout."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from pakiet_vies import ViesValidator, requester_parts
from pakiet_vies.client import ViesClient
from pakiet_vies.emulator import ERROR_CODES, NUMBERS, VALID, ViesEmulator
from portal import create_app
from portal.infra.extensions import db
from portal.infra.models import Account, VatCheck
from portal.plugin_api.contracts import VatStatus
from portal.plugin_api.registry import registry
from portal.rules import vat
from tests.conftest import base_config

NOW = dt.datetime.now(dt.UTC)
SELLER = "PL5260250274"
# The emulator's number for each error code (every one passes the offline check).
ERROR_NUMBERS = {
    code: number
    for number, entry in NUMBERS.items()
    for code in ERROR_CODES
    if entry.outcome == code and number.startswith("PL")
}


@pytest.fixture
def vies() -> Iterator[ViesEmulator]:
    with ViesEmulator() as emulator:
        yield emulator


def validator(vies: ViesEmulator, timeout: float = 2.0) -> ViesValidator:
    return ViesValidator(ViesClient(vies.base_url, timeout))


def check(vies: ViesEmulator, full: str, requester: str | None = SELLER, timeout: float = 2.0):
    return validator(vies, timeout).check(
        country=full[:2], number=full[2:], now=NOW, requester=requester
    )


def test_a_valid_number_comes_with_a_consultation_number_name_and_address(vies):
    answer = check(vies, "PL9574890682")
    assert answer.status is VatStatus.VALID
    assert answer.consultation_number and answer.consultation_number.startswith("WAPI")
    assert answer.name == "SKLEP ROWEROWY SZPRYCHA SP. Z O.O."
    assert answer.address == "UL. DŁUGA 5, 80-831 GDAŃSK"
    assert abs(answer.checked_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)  # VIES date
    assert (answer.country, answer.number, answer.validator) == ("PL", "9574890682", "vies")


def test_the_seller_is_sent_as_requester(vies):
    check(vies, "CZ86756508")
    (seen,) = vies.requests
    assert (seen.method, seen.path) == ("POST", "/check-vat-number")
    assert seen.body == {
        "countryCode": "CZ",
        "vatNumber": "86756508",
        "requesterMemberStateCode": "PL",
        "requesterNumber": "5260250274",
    }


def test_without_a_requester_the_get_endpoint_is_used_and_there_is_no_consultation_number(vies):
    answer = check(vies, "EL435189991", requester=None)
    assert answer.status is VatStatus.VALID and answer.consultation_number is None
    assert answer.name == "ΑΘΗΝΑΪΚΗ ΕΜΠΟΡΙΚΗ Α.Ε."
    assert [(s.method, s.path) for s in vies.requests] == [("GET", "/ms/EL/vat/435189991")]


def test_a_requester_vies_refuses_falls_back_to_a_check_without_one(vies):
    answer = check(vies, "PL9574890682", requester="PL3960306202")  # not a valid number
    assert answer.status is VatStatus.VALID and answer.consultation_number is None
    assert [s.method for s in vies.requests] == ["POST", "GET"]


def test_undisclosed_name_and_address_are_left_empty(vies):
    answer = check(vies, "DE812415868")  # Germany answers "---"
    assert answer.status is VatStatus.VALID
    assert answer.name is None and answer.address is None


@pytest.mark.parametrize("requester", [SELLER, None], ids=["post", "get"])
def test_a_number_not_registered_for_intra_eu_trade_is_invalid(vies, requester):
    answer = check(vies, "PL3960306202", requester=requester)
    assert (answer.status, answer.reason) == (VatStatus.INVALID, "INVALID")


def test_an_unknown_number_is_invalid_as_in_vies(vies):
    assert check(vies, "PL1111111111").status is VatStatus.INVALID


@pytest.mark.parametrize("requester", [SELLER, None], ids=["post", "get"])
@pytest.mark.parametrize("code", ERROR_CODES)
def test_every_vies_error_code_means_unavailable_never_invalid(vies, code, requester):
    # POST answers some codes with HTTP 200 and an error envelope, others with 500; GET
    # answers all of them with HTTP 200, "isValid": false and the code in "userError".
    answer = check(vies, ERROR_NUMBERS[code], requester=requester)
    assert (answer.status, answer.reason) == (VatStatus.UNAVAILABLE, code)


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("VAT_BLOCKED", VatStatus.UNAVAILABLE),  # about the asker, not the buyer
        ("SOMETHING_NEW", VatStatus.UNAVAILABLE),
        ("INVALID_INPUT", VatStatus.INVALID),  # VIES refuses the number itself
    ],
)
@pytest.mark.parametrize("requester", [SELLER, None], ids=["post", "get"])
def test_other_codes(vies, outcome, status, requester):
    vies.set_outcome("PL9574890682", outcome)
    answer = check(vies, "PL9574890682", requester=requester)
    assert (answer.status, answer.reason) == (status, outcome)


def test_a_member_state_going_down_is_unavailable_and_check_status_says_so(vies):
    vies.set_available("CZ", False)
    assert check(vies, "CZ86756508").reason == "MS_UNAVAILABLE"
    status = ViesClient(vies.base_url, 2).check_status()
    assert status["CZ"] is False and status["PL"] is True and len(status) == 28


@pytest.mark.parametrize("requester", [SELLER, None], ids=["post", "get"])
def test_a_garbage_reply_is_unavailable(vies, requester):
    answer = check(vies, "PL3622436890", requester=requester)
    assert (answer.status, answer.reason) == (VatStatus.UNAVAILABLE, "garbage")


@pytest.mark.parametrize("requester", [SELLER, None], ids=["post", "get"])
def test_a_reply_trickling_in_is_cut_off_at_the_timeout(vies, requester):
    started = time.monotonic()
    answer = check(vies, "DE845551439", requester=requester, timeout=0.4)
    elapsed = time.monotonic() - started
    assert (answer.status, answer.reason) == (VatStatus.UNAVAILABLE, "timeout")
    assert elapsed < 1.0


def test_a_slow_vies_is_cut_off_at_the_timeout(vies):
    vies.latency = 3.0
    started = time.monotonic()
    answer = check(vies, "PL9574890682", timeout=0.3)
    assert (answer.status, answer.reason) == (VatStatus.UNAVAILABLE, "timeout")
    assert time.monotonic() - started < 1.0


def test_vies_out_of_reach_is_unavailable():
    with ViesEmulator() as gone:
        url = gone.base_url
    answer = ViesValidator(ViesClient(url, 1)).check(
        country="PL", number="9574890682", now=NOW, requester=SELLER
    )
    assert (answer.status, answer.reason) == (VatStatus.UNAVAILABLE, "network")


def test_a_number_vies_does_not_know_of_is_not_asked_about(vies):
    assert check(vies, "GB980780684") is None
    assert check(vies, "US123456789") is None
    assert vies.requests == []


def test_switching_a_number_from_unavailable_to_valid(vies):
    number = ERROR_NUMBERS["MS_UNAVAILABLE"]
    assert check(vies, number).status is VatStatus.UNAVAILABLE
    vies.set_outcome(number, VALID, name="NOWA FIRMA")
    assert check(vies, number).name == "NOWA FIRMA"


@pytest.mark.parametrize(
    ("requester", "parts"),
    [
        ("PL5260250274", ("PL", "5260250274")),
        ("el 094259216", ("EL", "094259216")),
        ("GR094259216", ("EL", "094259216")),
        ("GB980780684", None),
        ("", None),
        (None, None),
    ],
)
def test_requester_parts(requester, parts):
    assert requester_parts(requester) == parts


# -- through the app: configuration and the proof kept by core ----------------------------------


@pytest.fixture
def config_overrides(vies: ViesEmulator) -> dict[str, Any]:
    return {"PLUGIN_CONFIG": {"vies": {"base_url": vies.base_url, "timeout": "1.5"}}}


def test_base_url_and_timeout_come_from_the_plugin_config(app, vies):
    (plugin,) = [v for v in registry(app).vat_validators if v.name == "vies"]
    assert plugin.client.base_url == vies.base_url and plugin.client.timeout == 1.5
    assert plugin.order == 50


@pytest.mark.parametrize(
    "config",
    [
        {"timeout": 0},
        {"timeout": "soon"},
        {"timeout": 600},
        {"base_url": "ftp://x"},
        {"base_url": 5},
    ],
)
def test_bad_settings_stop_the_app(database_url, config):
    """The start-up error names the plugin (issue 24, point 6) and says what is wrong."""
    from portal.plugin_api.registry import PluginError

    with pytest.raises(PluginError, match="pakiet_vies.*(VIES|vies)") as excinfo:
        create_app(base_config(database_url, PLUGIN_CONFIG={"vies": config}))
    assert isinstance(excinfo.value.__cause__, ValueError)


def test_core_stores_the_consultation_number_date_name_and_address(app):
    with app.app_context():
        account = Account(name="Szprycha")
        db.session.add(account)
        db.session.commit()
        settings = vat.settings_for(app)
        number = vat.parse_number("PL 957-489-06-82", "PL", settings.member_states)
        verdict = vat.check(account.id, number, settings, NOW)
        db.session.commit()
        row = db.session.scalar(select(VatCheck))
        assert verdict.status is VatStatus.VALID
        assert (row.country, row.number, row.status, row.validator) == (
            "PL",
            "9574890682",
            "valid",
            "vies",
        )
        assert row.consultation_number.startswith("WAPIAAAA")
        assert row.name == "SKLEP ROWEROWY SZPRYCHA SP. Z O.O."
        assert row.address == "UL. DŁUGA 5, 80-831 GDAŃSK"
        assert abs(row.checked_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
