"""Pricing and proration (R2, R3, R5-R7): exact amounts, worked out by hand in the comments.

Catalogue prices (net, minor units) per agent per month / year: Standard PLN 8900 / 89000,
EUR 2000, USD 2200, CZK 50000 a month; Pro PLN 12900 / 129000, EUR 3000, USD 3300, CZK 75000
a month; a pack of 100 conversations PLN 4500 / 45000, EUR 1000, USD 1100, CZK 25000 a month.
Included conversations: Standard 100, Pro 500. Rounding is half-up, once per amount.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.rules.catalogue import PackageCode, Period, load_catalogue
from portal.rules.money import Money
from portal.rules.periods import add_period
from portal.rules.pricing import (
    Change,
    ChangeField,
    ChangeRefused,
    Current,
    LineKind,
    QuoteLine,
    RefusalReason,
    Selection,
    quote,
    renewal,
    validate,
)

CATALOGUE = load_catalogue()
STD, PRO, FREE = PackageCode.STANDARD, PackageCode.PRO, PackageCode.FREE
MONTH, YEAR = Period.MONTH, Period.YEAR
PL_VAT = Decimal("0.23")


def paid(
    package: PackageCode,
    period: Period,
    agents: int,
    start: date,
    net: int,
    *,
    conversations: int | None = None,
    currency: str = "PLN",
    credit: int = 0,
) -> Current:
    """A paid subscription whose period started on ``start`` and cost ``net``."""
    return Current(
        package=package,
        period=period,
        agents=agents,
        conversations=CATALOGUE.package(package).included_conversations
        if conversations is None
        else conversations,
        currency=currency,
        period_start=start,
        period_end=add_period(start, period),
        period_net=Money(net, currency),
        credit=Money(credit, currency),
    )


def free_with_credit(credit: int, currency: str = "PLN") -> Current:
    """Back on Free after a refund: the currency and any account credit stay (R3, R6)."""
    return Current(FREE, MONTH, 1, 0, currency, None, None, None, Money(credit, currency))


def sel(
    package: PackageCode,
    period: Period,
    agents: int,
    conversations: int | None = None,
    currency: str = "PLN",
) -> Selection:
    included = CATALOGUE.package(package).included_conversations
    return Selection(
        package, period, agents, included if conversations is None else conversations, currency
    )


def row(
    case_id: str,
    current: Current,
    selection: Selection,
    today: date,
    vat_rate: Decimal = PL_VAT,
    /,
    **expected: Any,
) -> Any:
    """One table row; ``expected`` is a subset of :meth:`Quote.to_record`."""
    return pytest.param(current, selection, today, vat_rate, expected, id=case_id)


APR = date(2025, 4, 1)  # a 30-day period: 2025-04-01 .. 2025-05-01
STD3_APR = paid(STD, MONTH, 3, APR, 26700)  # 3 x 8900

QUOTES = [
    # Free -> Standard monthly, 3 agents: 3 x 8900 = 26700; VAT 26700 x 0.23 = 6141.
    row(
        "first-purchase-standard-monthly-3-agents",
        Current.free(),
        sel(STD, MONTH, 3),
        date(2025, 3, 13),
        subtotal_minor=26700,
        unused_days=0,
        period_days=0,
        unused_credit_minor=0,
        net_due_minor=26700,
        vat_minor=6141,
        total_due_minor=32841,
        credit_after_minor=0,
        period_start="2025-03-13",
        period_end="2025-04-13",
        renewal_date="2025-04-13",
        renewal_total_minor=32841,
        is_first_purchase=True,
    ),
    # 3 -> 5 agents on 2025-04-14: 17 unused days of 30 x 26700 = 15130 (exact).
    # New 5 x 8900 = 44500; due 44500 - 15130 = 29370; VAT 6755.1 -> 6755; total 36125.
    # Renewal: 44500 + 10235 VAT = 54735.
    row(
        "more-agents-mid-period",
        STD3_APR,
        sel(STD, MONTH, 5),
        date(2025, 4, 14),
        subtotal_minor=44500,
        unused_days=17,
        period_days=30,
        credit_base_minor=26700,
        unused_credit_minor=15130,
        net_due_minor=29370,
        vat_minor=6755,
        total_due_minor=36125,
        credit_after_minor=0,
        period_start="2025-04-14",
        period_end="2025-05-14",
        renewal_net_minor=44500,
        renewal_vat_minor=10235,
        renewal_total_minor=54735,
        is_first_purchase=False,
        nothing_to_change=False,
    ),
    # Standard 5 -> Pro 5 on 2025-06-11: 20/30 x 44500 = 29666.67 -> 29667.
    # Pro 5 x 12900 = 64500 (500 conversations included); due 34833; VAT 8011.59 -> 8012.
    row(
        "standard-to-pro",
        paid(STD, MONTH, 5, date(2025, 6, 1), 44500),
        sel(PRO, MONTH, 5),
        date(2025, 6, 11),
        subtotal_minor=64500,
        unused_days=20,
        period_days=30,
        unused_credit_minor=29667,
        net_due_minor=34833,
        vat_minor=8012,
        total_due_minor=42845,
    ),
    # Monthly -> yearly on 2025-01-20, period 2025-01-10..02-10 (31 days): 21/31 x 26700
    # = 18087.10 -> 18087. Yearly 3 x 89000 = 267000; due 248913; VAT 57249.99 -> 57250.
    row(
        "monthly-to-yearly",
        paid(STD, MONTH, 3, date(2025, 1, 10), 26700),
        sel(STD, YEAR, 3),
        date(2025, 1, 20),
        subtotal_minor=267000,
        unused_days=21,
        period_days=31,
        unused_credit_minor=18087,
        net_due_minor=248913,
        vat_minor=57250,
        total_due_minor=306163,
        period_end="2026-01-20",
        renewal_date="2026-01-20",
    ),
    # 5 -> 1 agent on 2025-09-02 (30-day September): 29/30 x 44500 = 43016.67 -> 43017.
    # New 8900 is covered; nothing due; 43017 - 8900 = 34117 stays as account credit.
    row(
        "fewer-agents-leaves-account-credit",
        paid(STD, MONTH, 5, date(2025, 9, 1), 44500),
        sel(STD, MONTH, 1),
        date(2025, 9, 2),
        subtotal_minor=8900,
        unused_credit_minor=43017,
        account_credit_used_minor=0,
        net_due_minor=0,
        vat_minor=0,
        total_due_minor=0,
        credit_after_minor=34117,
        # The renewal (8900 net) is covered by the credit left: nothing charged then.
        renewal_total_minor=0,
    ),
    # Same downgrade with 1000 credit already on the account: it is untouched and grows.
    row(
        "downgrade-adds-to-existing-credit",
        paid(STD, MONTH, 5, date(2025, 9, 1), 44500, credit=1000),
        sel(STD, MONTH, 1),
        date(2025, 9, 2),
        account_credit_used_minor=0,
        net_due_minor=0,
        credit_after_minor=35117,
    ),
    # First day of the period: 30/30, the whole 26700 comes back. 4 x 8900 = 35600;
    # due 8900; VAT 2047; total 10947.
    row(
        "first-day-of-period",
        STD3_APR,
        sel(STD, MONTH, 4),
        date(2025, 4, 1),
        unused_days=30,
        period_days=30,
        unused_credit_minor=26700,
        net_due_minor=8900,
        vat_minor=2047,
        total_due_minor=10947,
    ),
    # Last day (2025-04-30): 1/30 x 26700 = 890. Due 35600 - 890 = 34710; VAT 7983.3 -> 7983.
    row(
        "last-day-of-period",
        STD3_APR,
        sel(STD, MONTH, 4),
        date(2025, 4, 30),
        unused_days=1,
        period_days=30,
        unused_credit_minor=890,
        net_due_minor=34710,
        vat_minor=7983,
        total_due_minor=42693,
    ),
    # On the renewal date the period is used up: no credit. 35600 + 8188 VAT.
    row(
        "renewal-date-no-credit",
        STD3_APR,
        sel(STD, MONTH, 4),
        date(2025, 5, 1),
        unused_days=0,
        period_days=30,
        unused_credit_minor=0,
        net_due_minor=35600,
        total_due_minor=43788,
    ),
    # 3 -> 5 agents with 10 days left; the credit is 26700 x 10 / days in month.
    # February 2025 (28): 9535.71 -> 9536; due 34964; VAT 8041.72 -> 8042.
    row(
        "28-day-month",
        paid(STD, MONTH, 3, date(2025, 2, 1), 26700),
        sel(STD, MONTH, 5),
        date(2025, 2, 19),
        unused_days=10,
        period_days=28,
        unused_credit_minor=9536,
        net_due_minor=34964,
        vat_minor=8042,
        total_due_minor=43006,
        period_end="2025-03-19",
    ),
    # February 2028 (29, leap year): 9206.90 -> 9207; due 35293; VAT 8117.39 -> 8117.
    row(
        "29-day-month-leap-february",
        paid(STD, MONTH, 3, date(2028, 2, 1), 26700),
        sel(STD, MONTH, 5),
        date(2028, 2, 20),
        unused_days=10,
        period_days=29,
        unused_credit_minor=9207,
        net_due_minor=35293,
        vat_minor=8117,
        total_due_minor=43410,
        period_end="2028-03-20",
    ),
    # April 2025 (30): 8900 exactly; due 35600; VAT 8188.
    row(
        "30-day-month",
        STD3_APR,
        sel(STD, MONTH, 5),
        date(2025, 4, 21),
        unused_days=10,
        period_days=30,
        unused_credit_minor=8900,
        net_due_minor=35600,
        vat_minor=8188,
        total_due_minor=43788,
    ),
    # January 2025 (31): 8612.90 -> 8613; due 35887; VAT 8254.01 -> 8254.
    row(
        "31-day-month",
        paid(STD, MONTH, 3, date(2025, 1, 1), 26700),
        sel(STD, MONTH, 5),
        date(2025, 1, 22),
        unused_days=10,
        period_days=31,
        unused_credit_minor=8613,
        net_due_minor=35887,
        vat_minor=8254,
        total_due_minor=44141,
    ),
    # Bought on 31 January 2028: the month ends on the leap day.
    row(
        "leap-year-purchase-on-31-january",
        Current.free(),
        sel(STD, MONTH, 1),
        date(2028, 1, 31),
        period_end="2028-02-29",
        net_due_minor=8900,
    ),
    # Yearly period 2027-03-01..2028-03-01 holds 29 February: 366 days. On 2028-02-01,
    # 29 unused: 89000 x 29 / 366 = 7051.91 -> 7052. 2 x 89000 = 178000; due 170948;
    # VAT 39318.04 -> 39318.
    row(
        "leap-year-yearly-366-days",
        paid(STD, YEAR, 1, date(2027, 3, 1), 89000),
        sel(STD, YEAR, 2),
        date(2028, 2, 1),
        unused_days=29,
        period_days=366,
        unused_credit_minor=7052,
        net_due_minor=170948,
        vat_minor=39318,
        total_due_minor=210266,
        period_end="2029-02-01",
    ),
    # Every currency: Pro monthly, 2 agents, 600 conversations (one pack) from Free.
    # PLN 2 x 12900 + 4500 = 30300; VAT 23 % 6969.
    row(
        "currency-pln",
        Current.free(),
        sel(PRO, MONTH, 2, 600, "PLN"),
        date(2025, 3, 1),
        currency="PLN",
        subtotal_minor=30300,
        vat_minor=6969,
        total_due_minor=37269,
    ),
    # EUR 2 x 3000 + 1000 = 7000; VAT 19 % 1330.
    row(
        "currency-eur",
        Current.free(),
        sel(PRO, MONTH, 2, 600, "EUR"),
        date(2025, 3, 1),
        Decimal("0.19"),
        currency="EUR",
        subtotal_minor=7000,
        vat_rate="0.19",
        vat_minor=1330,
        total_due_minor=8330,
    ),
    # USD 2 x 3300 + 1100 = 7700; outside the EU, no VAT.
    row(
        "currency-usd",
        Current.free(),
        sel(PRO, MONTH, 2, 600, "USD"),
        date(2025, 3, 1),
        Decimal(0),
        currency="USD",
        subtotal_minor=7700,
        vat_minor=0,
        total_due_minor=7700,
    ),
    # CZK 2 x 75000 + 25000 = 175000; VAT 21 % 36750.
    row(
        "currency-czk",
        Current.free(),
        sel(PRO, MONTH, 2, 600, "CZK"),
        date(2025, 3, 1),
        Decimal("0.21"),
        currency="CZK",
        subtotal_minor=175000,
        vat_minor=36750,
        total_due_minor=211750,
    ),
    # CZK 3 -> 5 agents on 2025-04-14: 17/30 x 150000 = 85000; 250000 - 85000 = 165000;
    # VAT 21 % 34650.
    row(
        "currency-czk-proration",
        paid(STD, MONTH, 3, APR, 150000, currency="CZK"),
        sel(STD, MONTH, 5, currency="CZK"),
        date(2025, 4, 14),
        Decimal("0.21"),
        unused_credit_minor=85000,
        net_due_minor=165000,
        vat_minor=34650,
        total_due_minor=199650,
    ),
    # EUR 3 -> 5 agents with 10 of 31 days left: 6000 x 10 / 31 = 1935.48 -> 1935;
    # 10000 - 1935 = 8065; VAT 19 % 1532.35 -> 1532.
    row(
        "currency-eur-proration",
        paid(STD, MONTH, 3, date(2025, 1, 1), 6000, currency="EUR"),
        sel(STD, MONTH, 5, currency="EUR"),
        date(2025, 1, 22),
        Decimal("0.19"),
        unused_credit_minor=1935,
        net_due_minor=8065,
        vat_minor=1532,
        total_due_minor=9597,
    ),
    # Standard with 300 conversations: 3 x 8900 + 2 packs x 4500 = 35700; VAT 8211.
    row(
        "extra-conversation-packs",
        Current.free(),
        sel(STD, MONTH, 3, 300),
        date(2025, 3, 1),
        subtotal_minor=35700,
        vat_minor=8211,
        total_due_minor=43911,
    ),
    # Pro at the ceiling, yearly: (10000 - 500) / 100 = 95 packs x 45000 = 4275000,
    # + 129000 = 4404000; VAT 1012920.
    row(
        "pro-maximum-conversations-yearly",
        Current.free(),
        sel(PRO, YEAR, 1, 10000),
        date(2025, 3, 1),
        subtotal_minor=4404000,
        vat_minor=1012920,
        total_due_minor=5416920,
    ),
    # 100 -> 300 conversations on 2025-04-14: 35700 - 15130 = 20570; VAT 4731.1 -> 4731.
    row(
        "more-conversations-mid-period",
        STD3_APR,
        sel(STD, MONTH, 3, 300),
        date(2025, 4, 14),
        subtotal_minor=35700,
        unused_credit_minor=15130,
        net_due_minor=20570,
        vat_minor=4731,
        total_due_minor=25301,
    ),
    # 3 -> 5 agents with 10000 account credit: 44500 - 15130 = 29370, all 10000 credit
    # used, 19370 due; VAT 4455.1 -> 4455.
    row(
        "account-credit-used-up-fully",
        paid(STD, MONTH, 3, APR, 26700, credit=10000),
        sel(STD, MONTH, 5),
        date(2025, 4, 14),
        unused_credit_minor=15130,
        account_credit_used_minor=10000,
        net_due_minor=19370,
        vat_minor=4455,
        total_due_minor=23825,
        credit_after_minor=0,
    ),
    # The same with 50000 credit: 29370 of it covers the rest; 20630 stays.
    row(
        "account-credit-used-up-partially",
        paid(STD, MONTH, 3, APR, 26700, credit=50000),
        sel(STD, MONTH, 5),
        date(2025, 4, 14),
        unused_credit_minor=15130,
        account_credit_used_minor=29370,
        net_due_minor=0,
        vat_minor=0,
        total_due_minor=0,
        credit_after_minor=20630,
    ),
    # Back on Free with 5000 credit: 26700 - 5000 = 21700; VAT 4991.
    row(
        "free-account-with-credit-buys-again",
        free_with_credit(5000),
        sel(STD, MONTH, 3),
        date(2025, 3, 1),
        account_credit_used_minor=5000,
        net_due_minor=21700,
        vat_minor=4991,
        total_due_minor=26691,
        is_first_purchase=True,
    ),
    # Nothing to change: lines and the renewal are shown, nothing is due, no credit moves.
    row(
        "nothing-to-change",
        paid(STD, MONTH, 3, APR, 26700, credit=2000),
        sel(STD, MONTH, 3),
        date(2025, 4, 14),
        subtotal_minor=26700,
        unused_days=0,
        period_days=0,
        unused_credit_minor=0,
        account_credit_used_minor=0,
        net_due_minor=0,
        vat_minor=0,
        total_due_minor=0,
        credit_after_minor=2000,
        period_start="2025-04-01",
        period_end="2025-05-01",
        renewal_date="2025-05-01",
        # The renewal uses the 2000 of account credit first: 24700 net, 23 % VAT 5681.
        renewal_net_minor=24700,
        renewal_vat_minor=5681,
        renewal_total_minor=30381,
        changes=[],
        nothing_to_change=True,
    ),
    # The same selection once the period is over is a new purchase at full price.
    row(
        "same-selection-after-period-ended",
        STD3_APR,
        sel(STD, MONTH, 3),
        date(2025, 5, 1),
        net_due_minor=26700,
        total_due_minor=32841,
        period_end="2025-06-01",
        nothing_to_change=False,
    ),
]


@pytest.mark.parametrize(("current", "selection", "today", "vat_rate", "expected"), QUOTES)
def test_quote(
    current: Current,
    selection: Selection,
    today: date,
    vat_rate: Decimal,
    expected: dict[str, Any],
) -> None:
    record = quote(CATALOGUE, current, selection, today, vat_rate).to_record()
    assert {key: record[key] for key in expected} == expected


def test_lines_show_agents_and_packs_separately() -> None:
    result = quote(CATALOGUE, Current.free(), sel(STD, YEAR, 4, 500), date(2025, 3, 1), PL_VAT)
    # 4 x 89000 = 356000; (500 - 100) / 100 = 4 packs x 45000 = 180000.
    assert result.lines == (
        QuoteLine(LineKind.PACKAGE, 4, Money(89000, "PLN"), Money(356000, "PLN")),
        QuoteLine(LineKind.CONVERSATION_PACKS, 4, Money(45000, "PLN"), Money(180000, "PLN")),
    )
    assert result.subtotal == Money(536000, "PLN")
    assert (result.included_conversations, result.conversation_pack) == (100, 100)


def test_no_pack_line_when_only_included_conversations() -> None:
    result = quote(CATALOGUE, Current.free(), sel(PRO, MONTH, 1), date(2025, 3, 1), PL_VAT)
    assert [line.kind for line in result.lines] == [LineKind.PACKAGE]


@pytest.mark.parametrize(
    ("current", "selection", "changes"),
    [
        pytest.param(
            STD3_APR,
            sel(STD, MONTH, 5),
            (Change(ChangeField.AGENTS, 3, 5, 2),),
            id="three-to-five-agents",
        ),
        pytest.param(
            paid(STD, MONTH, 5, APR, 44500),
            sel(STD, MONTH, 3),
            (Change(ChangeField.AGENTS, 5, 3, -2),),
            id="five-to-three-agents",
        ),
        pytest.param(
            STD3_APR,
            sel(PRO, YEAR, 3, 700),
            (
                Change(ChangeField.PACKAGE, "standard", "pro", None),
                Change(ChangeField.PERIOD, "month", "year", None),
                Change(ChangeField.CONVERSATIONS, 100, 700, 600),
            ),
            id="package-period-and-conversations",
        ),
        pytest.param(
            Current.free(),
            sel(STD, MONTH, 3),
            (
                Change(ChangeField.PACKAGE, "free", "standard", None),
                Change(ChangeField.AGENTS, 1, 3, 2),
                Change(ChangeField.CONVERSATIONS, 0, 100, 100),
            ),
            id="first-purchase",
        ),
        pytest.param(STD3_APR, sel(STD, MONTH, 3), (), id="nothing"),
    ],
)
def test_changes_against_today(
    current: Current, selection: Selection, changes: tuple[Change, ...]
) -> None:
    assert quote(CATALOGUE, current, selection, date(2025, 4, 14), PL_VAT).changes == changes


def test_nothing_to_change_is_not_payable() -> None:
    result = quote(CATALOGUE, STD3_APR, sel(STD, MONTH, 3), date(2025, 4, 14), PL_VAT)
    assert result.nothing_to_change and not result.payable


def test_a_downgrade_with_nothing_due_is_still_payable() -> None:
    result = quote(CATALOGUE, STD3_APR, sel(STD, MONTH, 1), date(2025, 4, 2), PL_VAT)
    assert result.total_due == Money.zero("PLN") and result.payable


def test_same_inputs_give_equal_quotes_and_records() -> None:
    args = (CATALOGUE, STD3_APR, sel(STD, MONTH, 5, 300), date(2025, 4, 14), PL_VAT)
    first, second = quote(*args), quote(*args)
    assert first == second and hash(first) == hash(second)
    assert first.to_record() == second.to_record()
    assert json.loads(json.dumps(first.to_record())) == first.to_record()


REFUSALS = [
    pytest.param(
        STD3_APR, sel(FREE, MONTH, 1, 0), RefusalReason.FREE_NOT_SELECTABLE, {}, id="free"
    ),
    pytest.param(
        paid(STD, YEAR, 3, APR, 267000),
        sel(STD, MONTH, 3),
        RefusalReason.YEARLY_TO_MONTHLY,
        {},
        id="yearly-to-monthly",
    ),
    pytest.param(
        STD3_APR,
        sel(STD, MONTH, 0),
        RefusalReason.AGENTS_OUT_OF_RANGE,
        {"min": 1, "max": 200},
        id="no-agents",
    ),
    pytest.param(
        Current.free(),
        sel(PRO, MONTH, 201),
        RefusalReason.AGENTS_OUT_OF_RANGE,
        {"min": 1, "max": 200},
        id="too-many-agents",
    ),
    pytest.param(
        STD3_APR,
        sel(STD, MONTH, 3, 600),
        RefusalReason.CONVERSATIONS_OUT_OF_RANGE,
        {"min": 100, "max": 500},
        id="standard-above-500-conversations",
    ),
    pytest.param(
        STD3_APR,
        sel(PRO, MONTH, 3, 100),
        RefusalReason.CONVERSATIONS_OUT_OF_RANGE,
        {"min": 500, "max": 10000},
        id="pro-below-included-conversations",
    ),
    pytest.param(
        STD3_APR,
        sel(PRO, MONTH, 3, 10100),
        RefusalReason.CONVERSATIONS_OUT_OF_RANGE,
        {"min": 500, "max": 10000},
        id="pro-above-10000-conversations",
    ),
    pytest.param(
        STD3_APR,
        sel(STD, MONTH, 3, 150),
        RefusalReason.CONVERSATIONS_NOT_WHOLE_PACKS,
        {"pack": 100},
        id="half-a-pack",
    ),
    pytest.param(
        STD3_APR,
        sel(STD, MONTH, 3, currency="EUR"),
        RefusalReason.CURRENCY_FIXED,
        {"currency": "PLN"},
        id="currency-fixed",
    ),
    pytest.param(
        free_with_credit(0, "CZK"),
        sel(STD, MONTH, 3, currency="USD"),
        RefusalReason.CURRENCY_FIXED,
        {"currency": "CZK"},
        id="currency-fixed-after-return-to-free",
    ),
    pytest.param(
        Current.free(),
        sel(STD, MONTH, 3, currency="GBP"),
        RefusalReason.UNKNOWN_CURRENCY,
        {"currency": "GBP"},
        id="unknown-currency",
    ),
]


@pytest.mark.parametrize(("current", "selection", "reason", "params"), REFUSALS)
def test_refusals(
    current: Current, selection: Selection, reason: RefusalReason, params: dict[str, object]
) -> None:
    with pytest.raises(ChangeRefused) as refused:
        validate(CATALOGUE, current, selection)
    assert (refused.value.reason, refused.value.params) == (reason, params)
    with pytest.raises(ChangeRefused):
        quote(CATALOGUE, current, selection, date(2025, 4, 14), PL_VAT)


def test_yearly_to_yearly_is_allowed() -> None:
    validate(CATALOGUE, paid(STD, YEAR, 3, APR, 267000), sel(PRO, YEAR, 3))


@pytest.mark.parametrize("rate", [Decimal("-0.01"), Decimal(1), Decimal(23)], ids=str)
def test_vat_rate_must_be_a_fraction(rate: Decimal) -> None:
    with pytest.raises(ValueError, match="vat_rate"):
        quote(CATALOGUE, Current.free(), sel(STD, MONTH, 1), date(2025, 3, 1), rate)


def test_a_paid_subscription_needs_its_period() -> None:
    with pytest.raises(ValueError, match="paid subscription"):
        Current(STD, MONTH, 3, 100, "PLN", None, None, None, None)


def test_current_money_must_be_in_its_currency() -> None:
    with pytest.raises(ValueError, match="not in the subscription currency"):
        Current(FREE, MONTH, 1, 0, None, None, None, None, Money(100, "PLN"))


# -- property: money is conserved ---------------------------------------------------


def draw_choice(draw: st.DrawFn, currency: str) -> tuple[PackageCode, int, int]:
    """A paid package with a valid number of agents and conversations."""
    code = draw(st.sampled_from([STD, PRO]))
    package = CATALOGUE.package(code)
    most_packs = (package.max_conversations - package.included_conversations) // 100
    conversations = package.included_conversations + 100 * draw(st.integers(0, most_packs))
    return code, draw(st.integers(1, 200)), conversations


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Current, Selection, date]:
    """A valid selection over a Free or paid subscription, on a day around its period."""
    currency = draw(st.sampled_from(CATALOGUE.currencies))
    credit = Money(draw(st.integers(0, 10**7)), currency)
    start = draw(st.dates(date(2024, 1, 1), date(2030, 12, 31)))
    today = start + timedelta(days=draw(st.integers(-5, 400)))
    if draw(st.booleans()):
        current = Current(FREE, MONTH, 1, 0, currency, None, None, None, credit)
    else:
        code, agents, conversations = draw_choice(draw, currency)
        period = draw(st.sampled_from(Period))
        net = Money(draw(st.integers(0, 10**8)), currency)
        end = add_period(start, period)
        current = Current(code, period, agents, conversations, currency, start, end, net, credit)
        if draw(st.booleans()):  # ask for exactly what is there
            return current, Selection(code, period, agents, conversations, currency), today
    code, agents, conversations = draw_choice(draw, currency)
    period = YEAR if current.is_paid and current.period == YEAR else draw(st.sampled_from(Period))
    return current, Selection(code, period, agents, conversations, currency), today


@given(
    scenarios(), st.sampled_from([Decimal(0), Decimal("0.19"), Decimal("0.23"), Decimal("0.255")])
)
def test_money_is_conserved(scenario: tuple[Current, Selection, date], vat_rate: Decimal) -> None:
    current, selection, today = scenario
    result = quote(CATALOGUE, current, selection, today, vat_rate)
    credit_before = current.credit or Money.zero(selection.currency)
    zero = Money.zero(selection.currency)
    assert zero <= result.net_due <= result.subtotal
    assert zero <= result.account_credit_used <= credit_before
    assert result.credit_after >= zero
    assert result.total_due == result.net_due + result.vat >= zero
    if result.nothing_to_change:
        assert (result.net_due, result.unused_credit, result.credit_after) == (
            zero,
            zero,
            credit_before,
        )
        return
    # What is bought is paid by cash, the unused-time credit and the account credit;
    # whatever credit is not spent is still on the account afterwards.
    assert result.subtotal + result.credit_after == (
        result.net_due + result.unused_credit + credit_before
    )
    # Credit is spent before cash is asked for.
    assert result.net_due == zero or result.credit_after == zero
    assert result.unused_credit <= result.credit_base


@given(
    scenarios(), st.sampled_from([Decimal(0), Decimal("0.19"), Decimal("0.23"), Decimal("0.255")])
)
def test_the_next_renewal_shown_is_what_the_renewal_charges(
    scenario: tuple[Current, Selection, date], vat_rate: Decimal
) -> None:
    """The summary's "next renewal" line subtracts the account credit exactly as the
    renewal run will, once the order is paid (issue 20: after a downgrade it showed the
    full price while the renewal charged less)."""
    current, selection, today = scenario
    result = quote(CATALOGUE, current, selection, today, vat_rate)
    if result.nothing_to_change:
        return
    after = Current(
        selection.package,
        selection.period,
        selection.agents,
        selection.conversations,
        selection.currency,
        result.period_start,
        result.period_end,
        result.subtotal,
        result.credit_after,
    )
    charged = renewal(CATALOGUE, after, selection, vat_rate)
    assert (result.renewal_net, result.renewal_vat, result.renewal_total) == (
        charged.net_due,
        charged.vat,
        charged.total_due,
    )
    assert (
        charged.renewal_total
        == renewal(
            CATALOGUE,
            Current(
                selection.package,
                selection.period,
                selection.agents,
                selection.conversations,
                selection.currency,
                charged.period_start,
                charged.period_end,
                charged.subtotal,
                charged.credit_after,
            ),
            selection,
            vat_rate,
        ).total_due
    )
