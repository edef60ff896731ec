"""VAT numbers: reading what customers type, checking it through the validator plugins,
keeping the proof of every check, and retrying what the registry could not answer (R15).

Domain operations: they take data, settings and a clock, and know nothing of requests.
Validators run in their ``order``; the first definite answer (valid or invalid) wins, an
"unavailable" lets the next one try. Every answer is stored as a :class:`VatCheck` row,
except an offline validator's rejection of a mistyped number, which the form refuses
before anything is kept.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import BillingInfo, VatCheck, VatStatus
from portal.plugin_api import contracts
from portal.plugin_api.contracts import VatStatus as Answer
from portal.plugin_api.contracts import VatValidator
from portal.plugin_api.registry import registry

log = logging.getLogger(__name__)

NORTHERN_IRELAND = "XI"
_VAT_PREFIX = {"GR": "EL"}  # ISO code -> VAT-number prefix, where they differ
_ISO = {"EL": "GR", "XI": "GB"}  # VAT-number prefix -> ISO code of the country
#: The registry whose answer alone confirms an EU number (and allows the reverse charge).
EU_REGISTRY = "VIES"
MAX_NUMBER = 20  # the column; the longest EU number with its prefix has 14
_SEPARATORS = re.compile(r"[\s.\-/_,]+")
_ALLOWED = re.compile(r"^[A-Z0-9+*]+$")  # Irish numbers may contain + and *

DEFAULT_BACKOFF = (300, 1800, 7200, 43200, 86400)  # seconds; the last one repeats
DEFAULT_RECHECK_DAYS = 90
DEFAULT_REUSE_SECONDS = 900


class NumberProblem(StrEnum):
    """Why a typed VAT number cannot be used, before any validator is asked."""

    CHARACTERS = "characters"  # something other than letters, digits and separators
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"  # only a prefix
    WRONG_PREFIX = "wrong_prefix"  # another country's number


class VatNumberError(ValueError):
    def __init__(self, problem: NumberProblem, prefix: str | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.prefix = prefix


@dataclass(frozen=True)
class VatNumber:
    """A VAT number as stored and printed (``full``). ``prefix`` is what VIES calls the
    country (EL, XI, DE, ...), ``None`` for a number from outside the EU."""

    full: str
    prefix: str | None
    national: str
    #: outside the EU: the buyer's country, when a validator declares it (GB, NO, CH)
    foreign: str | None = None

    @property
    def in_eu(self) -> bool:
        return self.prefix is not None

    @property
    def checked(self) -> bool:
        """Whether validators are asked about it: an EU number, or a foreign one that a
        validator declared it answers for."""
        return self.in_eu or self.foreign is not None

    @property
    def asked_as(self) -> str:
        """The country the validators are asked with (the EU prefix, or the country)."""
        return self.prefix or self.foreign or ""


def vat_prefix(country: str) -> str:
    """The VAT-number prefix of an EU member state (Greece: EL)."""
    return _VAT_PREFIX.get(country, country)


def normalise(raw: str) -> str:
    return _SEPARATORS.sub("", raw).upper()


def parse_number(
    raw: str | None,
    country: str,
    member_states: Collection[str],
    foreign: Collection[str] = (),
) -> VatNumber | None:
    """Read a typed VAT number for a buyer in ``country`` (ISO code); ``None`` when blank.

    Spaces, dots, dashes and case do not matter and the prefix may be left out. A number
    with another country's prefix is refused. Northern Ireland's numbers (XI) belong to
    buyers in GB; other numbers of buyers outside the EU are kept as typed, unchecked.
    """
    number = normalise(raw or "")
    if not number:
        return None
    if not _ALLOWED.match(number):
        raise VatNumberError(NumberProblem.CHARACTERS)
    if len(number) > MAX_NUMBER:
        raise VatNumberError(NumberProblem.TOO_LONG)
    eu_prefixes = {vat_prefix(code) for code in member_states} | {NORTHERN_IRELAND}
    head = number[:2] if number[:2].isalpha() else None
    if country in member_states:
        expected = vat_prefix(country)
        typed = {expected, country}  # Greeks may type GR
        if head in typed:
            national = number[2:]
        elif head in eu_prefixes or head == "GB":
            raise VatNumberError(NumberProblem.WRONG_PREFIX, head)
        else:
            national = number
        if not national:
            raise VatNumberError(NumberProblem.TOO_SHORT)
        return VatNumber(expected + national, expected, national)
    if country == "GB" and head == NORTHERN_IRELAND:
        if len(number) == 2:
            raise VatNumberError(NumberProblem.TOO_SHORT)
        return VatNumber(number, NORTHERN_IRELAND, number[2:])
    if head in eu_prefixes:
        raise VatNumberError(NumberProblem.WRONG_PREFIX, head)
    if country in foreign:
        # A validator answers for this country (HMRC for GB, say): it is asked too.
        national = number[2:] if head == country and len(number) > 2 else number
        return VatNumber(number, None, national, foreign=country)
    return VatNumber(number, None, number)


# -- settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class VatSettings:
    """What checking needs besides the number: the validators and the retry policy."""

    validators: Sequence[VatValidator]
    member_states: frozenset[str]
    requester: str | None  # the seller's own VAT number, for VIES's consultation number
    backoff: tuple[dt.timedelta, ...] = tuple(dt.timedelta(seconds=s) for s in DEFAULT_BACKOFF)
    recheck_after: dt.timedelta = dt.timedelta(days=DEFAULT_RECHECK_DAYS)
    reuse_within: dt.timedelta = dt.timedelta(seconds=DEFAULT_REUSE_SECONDS)
    #: the plugin that registered each validator, by the validator's name (provenance)
    owners: Mapping[str, str] = field(default_factory=dict)
    #: countries outside the EU whose numbers some validator answers for
    foreign: frozenset[str] = frozenset()

    def owner(self, validator: str) -> str | None:
        return self.owners.get(validator)


def settings_for(app: Flask) -> VatSettings:
    """The app's VAT settings: ``VAT_RETRY_BACKOFF`` (seconds, the last repeats),
    ``VAT_RECHECK_DAYS``, ``VAT_CHECK_REUSE_SECONDS`` and ``SELLER["vat_id"]``."""
    config = app.config
    backoff = tuple(
        dt.timedelta(seconds=int(s)) for s in config.get("VAT_RETRY_BACKOFF", DEFAULT_BACKOFF)
    )
    if not backoff or min(backoff) <= dt.timedelta(0):
        raise ValueError("VAT_RETRY_BACKOFF must be a non-empty list of positive seconds")
    reg = registry(app)
    return VatSettings(
        validators=tuple(reg.vat_validators),
        owners={
            name: plugin for (kind, name), plugin in reg.owners.items() if kind == "VAT validator"
        },
        foreign=frozenset(
            code
            for validator in reg.vat_validators
            for code in getattr(validator, "countries", ()) or ()
            if isinstance(code, str)
        ),
        member_states=frozenset(app.extensions["pakiet.vat_rates"].history),
        requester=config["SELLER"].get("vat_id") or None,
        backoff=backoff,
        recheck_after=dt.timedelta(days=int(config.get("VAT_RECHECK_DAYS", DEFAULT_RECHECK_DAYS))),
        reuse_within=dt.timedelta(
            seconds=int(config.get("VAT_CHECK_REUSE_SECONDS", DEFAULT_REUSE_SECONDS))
        ),
    )


# -- asking the validators ----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the validators said about one number. ``status`` is ``None`` when none of
    them had an opinion; ``deciding`` is the answer that counts."""

    status: Answer | None
    deciding: contracts.VatCheck | None
    answers: tuple[contracts.VatCheck, ...] = ()
    malformed: bool = False  # an offline validator found a typo: refuse the number


def _accepts_requester(validator: VatValidator) -> bool:
    try:
        parameters = inspect.signature(validator.check).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "requester" or p.kind is p.VAR_KEYWORD for p in parameters)


def _ask(
    validator: VatValidator, number: VatNumber, settings: VatSettings, now: dt.datetime
) -> contracts.VatCheck | None:
    assert number.checked
    declared = getattr(validator, "countries", None) or frozenset()
    if declared and number.asked_as not in declared:
        # A validator for GB, NO or CH numbers is not asked about another country's: it
        # cannot know (its INVALID would refuse a good number).
        return None
    kwargs: dict[str, Any] = {"country": number.asked_as, "number": number.national, "now": now}
    if _accepts_requester(validator):
        kwargs["requester"] = settings.requester
    try:
        answer = validator.check(**kwargs)
    except Exception:
        # A broken plugin must not break the billing page; it counts as "cannot say now".
        log.exception(
            "VAT validator %s of plugin %s failed on %s",
            validator.name,
            settings.owner(validator.name),
            number.full,
        )
        return _unavailable(validator, number, now, "error")
    if answer is None:
        return None
    if (
        not isinstance(answer, contracts.VatCheck)
        or not isinstance(answer.status, Answer)
        or not isinstance(answer.checked_at, dt.datetime)
        or answer.checked_at.tzinfo is None
    ):
        log.error(
            "VAT validator %s of plugin %s returned %r",
            validator.name,
            settings.owner(validator.name),
            answer,
        )
        return _unavailable(validator, number, now, "bad_answer")
    if answer.status is Answer.VALID and not (
        isinstance(answer.registry, str) and answer.registry.strip()
    ):
        # A format or check-digit check cannot confirm a number (only a registry can): it
        # has no opinion on whether the number is registered, and the next one is asked.
        log.info(
            "VAT validator %s answered VALID without a registry: not a confirmation", validator.name
        )
        return None
    if (
        answer.status is Answer.VALID
        and number.in_eu
        and str(answer.registry).strip().upper() != EU_REGISTRY
    ):
        # VIES stays the authority for EU numbers: only its answer allows the reverse charge.
        log.warning(
            "VAT validator %s of plugin %s confirmed EU number %s from %r, not VIES: not a"
            " confirmation",
            validator.name,
            settings.owner(validator.name),
            number.full,
            answer.registry,
        )
        return None
    return answer


def _unavailable(
    validator: VatValidator, number: VatNumber, now: dt.datetime, reason: str
) -> contracts.VatCheck:
    return contracts.VatCheck(
        status=Answer.UNAVAILABLE,
        country=number.asked_as,
        number=number.national,
        validator=str(getattr(validator, "name", "?")),
        checked_at=now,
        reason=reason,
    )


def evaluate(number: VatNumber, settings: VatSettings, now: dt.datetime) -> Verdict:
    """Ask the validators in order until one gives a definite answer. No database."""
    answers: list[contracts.VatCheck] = []
    for validator in settings.validators:
        answer = _ask(validator, number, settings, now)
        if answer is None:
            continue
        answers.append(answer)
        if answer.status is not Answer.UNAVAILABLE:
            malformed = answer.status is Answer.INVALID and bool(
                getattr(validator, "offline", False)
            )
            return Verdict(answer.status, answer, tuple(answers), malformed=malformed)
    if answers:
        return Verdict(Answer.UNAVAILABLE, answers[-1], tuple(answers))
    return Verdict(None, None)


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value else None


def record(
    account_id: int,
    number: VatNumber,
    answers: Sequence[contracts.VatCheck],
    owners: Mapping[str, str] | None = None,
) -> None:
    """Keep every answer as proof (who answered, what, when, VIES's consultation number).

    The number is the one core asked about, whatever the plugin echoed; texts are cut to
    their columns rather than lose the proof.
    """
    for answer in answers:
        db.session.add(
            VatCheck(
                account_id=account_id,
                country=number.asked_as,
                number=number.national[:MAX_NUMBER],
                status=answer.status.value,
                validator=answer.validator[:40],
                consultation_number=_clip(answer.consultation_number, 64),
                name=_clip(answer.name, 300),
                address=_clip(answer.address, 500),
                reason=_clip(answer.reason, 200),
                checked_at=answer.checked_at,
                plugin=_clip((owners or {}).get(answer.validator), 100),
                source_registry=_clip(answer.registry, 60),
            )
        )


def _as_contract(row: VatCheck) -> contracts.VatCheck:
    return contracts.VatCheck(
        status=Answer(row.status),
        country=row.country,
        number=row.number,
        validator=row.validator,
        checked_at=row.checked_at,
        consultation_number=row.consultation_number,
        name=row.name,
        address=row.address,
        reason=row.reason,
        registry=row.source_registry,
    )


def _latest(
    account_id: int, number: VatNumber, statuses: Collection[str], since: dt.datetime | None = None
) -> VatCheck | None:
    stmt = select(VatCheck).where(
        VatCheck.account_id == account_id,
        VatCheck.country == number.asked_as,
        VatCheck.number == number.national,
        VatCheck.status.in_(list(statuses)),
    )
    if since is not None:
        stmt = stmt.where(VatCheck.checked_at >= since)
    row = db.session.scalar(stmt.order_by(VatCheck.checked_at.desc(), VatCheck.id.desc()).limit(1))
    return row if isinstance(row, VatCheck) else None


def check(account_id: int, number: VatNumber, settings: VatSettings, now: dt.datetime) -> Verdict:
    """Check an EU number for an account and record the answers (not committed).

    A definite answer for the same number from the last ``reuse_within`` is used again
    instead of asking VIES twice (the live check, then saving the form). A mistyped
    number is not recorded: it is refused, not kept.
    """
    definite = (Answer.VALID.value, Answer.INVALID.value)
    recent = _latest(account_id, number, definite, since=now - settings.reuse_within)
    if recent is not None:
        answer = _as_contract(recent)
        return Verdict(answer.status, answer)
    end_transaction()
    verdict = evaluate(number, settings, now)
    if not verdict.malformed:
        record(account_id, number, verdict.answers, settings.owners)
    return verdict


def end_transaction() -> None:
    """End the session's transaction before an outside service is asked: nothing (no row,
    no snapshot, no SQLite lock) is held while it answers; what follows writes the answer
    in a new, short transaction. The callers have written nothing yet (it would be
    committed here)."""
    db.session.commit()


def _failed_attempts(account_id: int, number: VatNumber) -> int:
    """Checks in a row that got no definite answer for this number (for the backoff)."""
    last = _latest(account_id, number, (Answer.VALID.value, Answer.INVALID.value))
    stmt = select(func.count(func.distinct(VatCheck.checked_at))).where(
        VatCheck.account_id == account_id,
        VatCheck.country == number.asked_as,
        VatCheck.number == number.national,
        VatCheck.status == Answer.UNAVAILABLE.value,
    )
    if last is not None:
        stmt = stmt.where(VatCheck.checked_at > last.checked_at)
    return int(db.session.scalar(stmt) or 0)


def apply(
    billing: BillingInfo,
    number: VatNumber,
    verdict: Verdict,
    settings: VatSettings,
    now: dt.datetime,
) -> None:
    """Set the billing information's VAT status from a verdict on its number.

    Valid: re-checked after ``recheck_after``. Invalid: not retried (the customer has to
    act; saving the form checks again). No answer: pending, retried with backoff, and
    VAT is charged meanwhile; but a number that was valid stays valid while VIES is
    down for its periodic re-check, since nothing says it stopped being valid.
    """
    db.session.flush()
    when = verdict.deciding.checked_at if verdict.deciding is not None else now
    billing.vat_checked_at = when
    if verdict.status is Answer.VALID:
        billing.vat_status = VatStatus.VALID.value
        billing.vat_next_check_at = when + settings.recheck_after
        return
    if verdict.status is Answer.INVALID:
        billing.vat_status = VatStatus.INVALID.value
        billing.vat_next_check_at = None
        return
    attempts = _failed_attempts(billing.account_id, number) if verdict.answers else 0
    step = attempts - 1 if attempts else len(settings.backoff) - 1
    billing.vat_next_check_at = now + settings.backoff[min(step, len(settings.backoff) - 1)]
    if billing.vat_status != VatStatus.VALID.value:
        billing.vat_status = VatStatus.PENDING.value


def clear(billing: BillingInfo) -> None:
    """No number, or one from outside the EU: nothing to check, no status."""
    billing.vat_status = None
    billing.vat_checked_at = None
    billing.vat_next_check_at = None


# -- what the customer sees -----------------------------------------------------------------


class State(StrEnum):
    NONE = "none"  # no number
    NOT_EU = "not_eu"  # not checked: no VIES for it
    MALFORMED = "malformed"  # refused before any registry was asked
    VALID = "valid"
    INVALID = "invalid"  # the registry does not confirm it
    PENDING = "pending"  # not confirmed yet; retried


@dataclass(frozen=True)
class VatView:
    """The VAT number's standing, for the billing page's status fragment."""

    state: State
    number: str | None = None
    country: str | None = None  # the buyer's country (ISO)
    reason: str | None = None  # NumberProblem, or the validator's reason code
    prefix: str | None = None  # WRONG_PREFIX: the prefix that was typed
    name: str | None = None
    address: str | None = None
    consultation_number: str | None = None
    checked_at: dt.datetime | None = None
    retry_at: dt.datetime | None = None
    registry: str | None = None  # who confirmed it (VIES, HMRC)
    in_eu: bool = True  # VIES is the register asked (else a validator of that country)


def problem_view(error: VatNumberError, raw: str, country: str) -> VatView:
    return VatView(
        State.MALFORMED,
        number=normalise(raw)[:40],
        country=country,
        reason=error.problem.value,
        prefix=error.prefix,
    )


def verdict_view(
    number: VatNumber, country: str, verdict: Verdict, retry_at: dt.datetime | None = None
) -> VatView:
    answer = verdict.deciding
    state = {
        Answer.VALID: State.VALID,
        Answer.INVALID: State.MALFORMED if verdict.malformed else State.INVALID,
    }.get(verdict.status or Answer.UNAVAILABLE, State.PENDING)
    return VatView(
        state,
        number=number.full,
        country=country,
        reason=answer.reason if answer else None,
        name=answer.name if answer else None,
        address=answer.address if answer else None,
        consultation_number=answer.consultation_number if answer else None,
        checked_at=answer.checked_at if answer else None,
        retry_at=retry_at,
        registry=answer.registry if answer else None,
        in_eu=number.in_eu,
    )


def billing_view(
    billing: BillingInfo | None, member_states: Collection[str], foreign: Collection[str] = ()
) -> VatView:
    """The saved number's standing, with the answer that decided it."""
    if billing is None or not billing.vat_number:
        return VatView(State.NONE, country=billing.country if billing else None)
    country = billing.country or ""
    try:
        number = parse_number(billing.vat_number, country, member_states, foreign)
    except VatNumberError as exc:
        return problem_view(exc, billing.vat_number, country)
    if number is None or not number.checked or billing.vat_status is None:
        return VatView(State.NOT_EU, number=billing.vat_number, country=country)
    status = VatStatus(billing.vat_status)
    wanted = {
        VatStatus.VALID: Answer.VALID,
        VatStatus.INVALID: Answer.INVALID,
        VatStatus.PENDING: Answer.UNAVAILABLE,
    }[status]
    row = _latest(billing.account_id, number, (wanted.value,))
    answer = _as_contract(row) if row is not None else None
    view = verdict_view(
        number, country, Verdict(wanted, answer), retry_at=billing.vat_next_check_at
    )
    # The saved status decides: a valid number stays valid while a re-check is pending.
    state = {VatStatus.VALID: State.VALID, VatStatus.INVALID: State.INVALID}.get(
        status, State.PENDING
    )
    return replace(view, state=state)


def live_check(
    *,
    account_id: int,
    billing: BillingInfo | None,
    raw: str,
    country: str,
    settings: VatSettings,
    now: dt.datetime,
) -> VatView:
    """Check a number as it is typed into the billing form (nothing else is saved).

    Answers from a registry are kept as proof; when the number is the one already
    saved, its status follows the new answer ("check again").
    """
    try:
        number = parse_number(raw, country, settings.member_states, settings.foreign)
    except VatNumberError as exc:
        return problem_view(exc, raw, country)
    if number is None:
        return VatView(State.NONE, country=country)
    if not number.checked:
        return VatView(State.NOT_EU, number=number.full, country=country)
    verdict = check(account_id, number, settings, now)
    retry_at = None
    if (
        billing is not None
        and not verdict.malformed
        and billing.vat_number == number.full
        and billing.country == country
    ):
        apply(billing, number, verdict, settings, now)
        retry_at = billing.vat_next_check_at if billing.vat_status == VatStatus.PENDING else None
    db.session.commit()
    return verdict_view(number, country, verdict, retry_at=retry_at)


# -- the background re-check ----------------------------------------------------------------


@dataclass
class RecheckReport:
    checked: int = 0
    valid: int = 0
    invalid: int = 0
    pending: int = 0


# How long the background re-check holds a number it is asking about.
CLAIM = dt.timedelta(minutes=10)


def _tax_may_have_changed(account_id: int, now: dt.datetime) -> None:
    """A number's validity decides reverse charge: open orders placed with the old verdict
    are cancelled and their provider pages closed (a provider that cannot answer now is
    no loss: paying such an order is refused, and its money refunded, when it comes)."""
    from portal.rules import payments

    try:
        payments.close_stale_orders(account_id=account_id, now=now)
    except Exception:
        db.session.rollback()
        log.exception("closing the open orders of account %s failed", account_id)


def run_due_checks(*, now: dt.datetime, limit: int, settings: VatSettings) -> RecheckReport:
    """Check the numbers whose next check is due: pending ones on their backoff, valid
    ones periodically. Safe on many nodes at once: each row is claimed with
    ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite has one writer anyway) and committed
    before the next, so a row another node is checking is skipped, not checked twice.
    """
    report = RecheckReport()
    seen: list[int] = []
    while report.checked < limit:
        stmt = (
            select(BillingInfo)
            .where(BillingInfo.vat_next_check_at <= now, BillingInfo.vat_number.is_not(None))
            .order_by(BillingInfo.vat_next_check_at, BillingInfo.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if seen:
            stmt = stmt.where(BillingInfo.id.not_in(seen))
        billing = db.session.scalar(stmt)
        if not isinstance(billing, BillingInfo):
            break
        seen.append(billing.id)
        report.checked += 1
        account_id, was = billing.account_id, billing.vat_status
        try:
            number = parse_number(
                billing.vat_number, billing.country or "", settings.member_states, settings.foreign
            )
        except VatNumberError:
            number = None
        if number is None or not number.checked:
            # The rules or the data changed under the number: nothing left to check.
            clear(billing)
            db.session.commit()
            _tax_may_have_changed(account_id, now)
            continue
        # Claimed for a while (another node skips it), then nothing is held while the
        # registry answers; a node that dies here leaves it due again after the claim.
        billing_id, account_id, saved_number = billing.id, billing.account_id, billing.vat_number
        billing.vat_next_check_at = now + CLAIM
        db.session.commit()
        # Unlike the form, the background check keeps even an offline rejection: the
        # number is already saved, and its status must say it is not usable.
        verdict = evaluate(number, settings, now)
        billing = db.session.scalar(
            select(BillingInfo).where(BillingInfo.id == billing_id).with_for_update()
        )
        if not isinstance(billing, BillingInfo) or billing.vat_number != saved_number:
            db.session.commit()  # saved anew meanwhile: that save checked the new number
            continue
        record(account_id, number, verdict.answers, settings.owners)
        apply(billing, number, verdict, settings, now)
        db.session.commit()
        if (billing.vat_status == VatStatus.VALID) != (was == VatStatus.VALID):
            _tax_may_have_changed(account_id, now)
        if billing.vat_status == VatStatus.VALID:
            report.valid += 1
        elif billing.vat_status == VatStatus.INVALID:
            report.invalid += 1
        else:
            report.pending += 1
    return report
