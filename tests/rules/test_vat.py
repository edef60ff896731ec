"""VAT-number domain rules without HTTP: reading typed numbers, asking validators in
order, and surviving validators that break or answer nonsense."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.plugin_api.contracts import VatCheck, VatStatus, VatValidator
from portal.rules import vat

NOW = dt.datetime(2031, 3, 3, 12, 0, tzinfo=dt.UTC)
EU = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)


@pytest.mark.parametrize(
    ("typed", "country", "full", "prefix"),
    [
        ("PL 526-025-02-74", "PL", "PL5260250274", "PL"),
        ("5260250274", "PL", "PL5260250274", "PL"),
        ("de812.415.868", "DE", "DE812415868", "DE"),
        ("094259216", "GR", "EL094259216", "EL"),  # Greece: EL, not GR
        ("GR094259216", "GR", "EL094259216", "EL"),
        ("XI 980 7806 84", "GB", "XI980780684", "XI"),  # Northern Ireland
        ("GB980780684", "GB", "GB980780684", None),  # Great Britain: not in VIES
        ("CHE-123.456.788 MWST", "CH", "CHE123456788MWST", None),
        ("12-3456789", "US", "123456789", None),
        ("AB123456789", "FR", "FRAB123456789", "FR"),  # French keys may be letters
    ],
)
def test_typed_numbers_are_read_for_the_buyers_country(typed, country, full, prefix):
    number = vat.parse_number(typed, country, EU)
    assert number is not None
    assert (number.full, number.prefix, number.in_eu) == (full, prefix, prefix is not None)


@pytest.mark.parametrize(
    ("typed", "country", "problem", "prefix"),
    [
        ("DE812415868", "PL", vat.NumberProblem.WRONG_PREFIX, "DE"),
        ("XI980780684", "PL", vat.NumberProblem.WRONG_PREFIX, "XI"),
        ("GB980780684", "PL", vat.NumberProblem.WRONG_PREFIX, "GB"),
        ("PL5260250274", "US", vat.NumberProblem.WRONG_PREFIX, "PL"),
        ("PL", "PL", vat.NumberProblem.TOO_SHORT, None),
        ("PL" + "1" * 19, "PL", vat.NumberProblem.TOO_LONG, None),
        ("PL52602<b>", "PL", vat.NumberProblem.CHARACTERS, None),
        ("PL5260250274\x00", "PL", vat.NumberProblem.CHARACTERS, None),
    ],
)
def test_numbers_that_cannot_be_used(typed, country, problem, prefix):
    with pytest.raises(vat.VatNumberError) as excinfo:
        vat.parse_number(typed, country, EU)
    assert (excinfo.value.problem, excinfo.value.prefix) == (problem, prefix)


@pytest.mark.parametrize("typed", [None, "", "  ", " - . "])
def test_a_blank_number_is_none(typed):
    assert vat.parse_number(typed, "PL", EU) is None


class Says(VatValidator):
    def __init__(
        self,
        name: str,
        order: int,
        status: VatStatus | None,
        offline: bool = False,
        registry: str | None = "VIES",
    ):
        self.name, self.order, self.status, self.offline = name, order, status, offline
        self.registry = None if offline else registry
        self.asked: list[dict[str, object]] = []

    def check(self, *, country, number, now, requester=None):
        self.asked.append({"country": country, "number": number, "requester": requester})
        if self.status is None:
            return None
        return VatCheck(self.status, country, number, self.name, now, registry=self.registry)


class OldSignature(VatValidator):
    """Written before ``requester`` existed."""

    name, order = "old", 5

    def check(self, *, country: str, number: str, now: dt.datetime) -> VatCheck | None:
        return None


class Broken(VatValidator):
    name, order = "broken", 1

    def check(self, *, country, number, now, requester=None):
        raise RuntimeError("the registry's client blew up")


class Nonsense(VatValidator):
    name, order = "nonsense", 2

    def check(self, *, country, number, now, requester=None):
        return {"valid": True}


def settings(*validators: VatValidator) -> vat.VatSettings:
    return vat.VatSettings(validators=validators, member_states=EU, requester="PL5260250274")


PL = vat.VatNumber("PL9574890682", "PL", "9574890682")


def test_the_first_definite_answer_wins_and_unavailable_lets_the_next_try():
    first = Says("first", 10, None)
    down = Says("down", 20, VatStatus.UNAVAILABLE)
    registry = Says("registry", 30, VatStatus.VALID)
    never = Says("never", 40, VatStatus.INVALID)
    verdict = vat.evaluate(PL, settings(first, down, registry, never), NOW)
    assert verdict.status is VatStatus.VALID and verdict.deciding.validator == "registry"
    assert [a.validator for a in verdict.answers] == ["down", "registry"]
    assert never.asked == [] and not verdict.malformed
    assert registry.asked == [
        {"country": "PL", "number": "9574890682", "requester": "PL5260250274"}
    ]


def test_only_an_offline_rejection_is_a_typo():
    offline = vat.evaluate(PL, settings(Says("format", 10, VatStatus.INVALID, True)), NOW)
    online = vat.evaluate(PL, settings(Says("registry", 10, VatStatus.INVALID)), NOW)
    assert offline.malformed and not online.malformed


def test_nobody_answering_is_no_verdict_and_all_unavailable_is_unavailable():
    assert vat.evaluate(PL, settings(Says("a", 1, None)), NOW).status is None
    verdict = vat.evaluate(PL, settings(Says("a", 1, VatStatus.UNAVAILABLE)), NOW)
    assert verdict.status is VatStatus.UNAVAILABLE


def test_a_validator_without_requester_still_works():
    verdict = vat.evaluate(PL, settings(OldSignature(), Says("r", 9, VatStatus.VALID)), NOW)
    assert verdict.status is VatStatus.VALID


def test_a_broken_or_nonsensical_validator_counts_as_unavailable(caplog):
    verdict = vat.evaluate(PL, settings(Broken(), Nonsense(), Says("r", 9, VatStatus.VALID)), NOW)
    assert verdict.status is VatStatus.VALID
    assert [(a.validator, a.status, a.reason) for a in verdict.answers[:2]] == [
        ("broken", VatStatus.UNAVAILABLE, "error"),
        ("nonsense", VatStatus.UNAVAILABLE, "bad_answer"),
    ]
    assert "broken of plugin" in caplog.text and "nonsense of plugin" in caplog.text


def test_only_a_registrys_answer_confirms_a_number():
    """Issue 24, point 4: a checksum that says VALID (no registry named) is no confirmation;
    the next validator, a registry, decides, and its name is kept with the answer."""
    checksum = Says("checksum", 10, VatStatus.VALID, registry=None)
    vies = Says("vies", 20, VatStatus.VALID, registry="VIES")
    verdict = vat.evaluate(PL, settings(checksum, vies), NOW)
    assert verdict.status is VatStatus.VALID
    assert (verdict.deciding.validator, verdict.deciding.registry) == ("vies", "VIES")
    alone = vat.evaluate(PL, settings(Says("checksum", 10, VatStatus.VALID, registry=None)), NOW)
    assert alone.status is None  # no opinion on registration: not confirmed
    view = vat.verdict_view(PL, "PL", verdict)
    assert (view.state, view.registry) == (vat.State.VALID, "VIES")


class ForCountries(Says):
    """A registry of numbers outside the EU (GB, NO, CH), first in line."""

    def __init__(self, status: VatStatus, countries: frozenset[str], registry: str = "HMRC"):
        super().__init__("hmrc", 1, status, registry=registry)
        self.countries = countries


def test_vies_stays_the_authority_for_eu_numbers():
    """Issue 24, point 4: a registry validator asked first cannot confirm an EU number (only
    VIES allows the reverse charge), and one that declares GB is not asked about a PL
    number at all (its INVALID would refuse a good number)."""
    anywhere = ForCountries(VatStatus.VALID, frozenset())  # declares no countries: EU's
    vies = Says("vies", 20, VatStatus.INVALID, registry="VIES")
    verdict = vat.evaluate(PL, settings(anywhere, vies), NOW)
    assert (verdict.status, verdict.deciding.validator) == (VatStatus.INVALID, "vies")
    assert anywhere.asked and vies.asked

    gb_only = ForCountries(VatStatus.INVALID, frozenset({"GB"}))
    vies = Says("vies", 20, VatStatus.VALID, registry="VIES")
    verdict = vat.evaluate(PL, settings(gb_only, vies), NOW)
    assert (verdict.status, verdict.deciding.validator) == (VatStatus.VALID, "vies")
    assert gb_only.asked == []  # not its country


def test_a_broken_validator_is_logged_with_its_plugins_name(caplog):
    owned = vat.VatSettings(
        validators=(Broken(), Says("r", 9, VatStatus.VALID)),
        member_states=EU,
        requester=None,
        owners={"broken": "pakiet_broken"},
    )
    assert vat.evaluate(PL, owned, NOW).status is VatStatus.VALID
    assert "VAT validator broken of plugin pakiet_broken failed" in caplog.text
