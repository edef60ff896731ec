"""Why auto-renewal was switched off: the customer's optional answer (issue 25).

The answer is one reason from a short list, and free text of at most 500 characters
(for "other", or anything the customer adds). It is optional: no answer is a valid answer.
It is stored with the switch, in the same transaction, and shown to staff only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import RenewalOff, RenewalOffReason

MAX_DETAIL = 500


class AnswerRefused(Exception):
    """The answer cannot be stored as sent; ``code`` names why (the page translates it)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class OffAnswer:
    reason: RenewalOffReason
    detail: str | None


def clean_text(text: str | None) -> str:
    """Control characters dropped (PostgreSQL refuses a NUL), line breaks kept, trimmed."""
    return "".join(ch for ch in (text or "") if ch in "\n\t" or ch.isprintable()).strip()


def parse_answer(reason: str | None, detail: str | None) -> OffAnswer | None:
    """The form's answer, or None when the customer gave none.

    Free text without a chosen reason counts as "other". An unknown reason or text beyond
    500 characters is refused (``unknown_reason``, ``detail_too_long``).
    """
    code = (reason or "").strip()
    text = clean_text(detail).replace("\r\n", "\n")
    if len(text) > MAX_DETAIL:
        raise AnswerRefused("detail_too_long")
    if not code:
        return OffAnswer(RenewalOffReason.OTHER, text) if text else None
    try:
        known = RenewalOffReason(code)
    except ValueError:
        raise AnswerRefused("unknown_reason") from None
    return OffAnswer(known, text or None)


def record(
    answer: OffAnswer, *, account_id: int, user_id: int | None, now: dt.datetime
) -> RenewalOff:
    """Add the answer to the session (the caller's transaction commits it)."""
    row = RenewalOff(
        account_id=account_id,
        user_id=user_id,
        reason=answer.reason.value,
        detail=answer.detail,
        created_at=now,
    )
    db.session.add(row)
    return row


def counts(*, since: dt.datetime | None = None) -> Mapping[RenewalOffReason, int]:
    """How many answers gave each reason (since ``since``), every reason listed."""
    query = select(RenewalOff.reason, func.count()).group_by(RenewalOff.reason)
    if since is not None:
        query = query.where(RenewalOff.created_at >= since)
    found = {str(reason): int(n) for reason, n in db.session.execute(query).all()}
    return {reason: found.get(reason.value, 0) for reason in RenewalOffReason}


def of_account(account_id: int) -> list[RenewalOff]:
    """An account's answers, newest first."""
    return list(
        db.session.scalars(
            select(RenewalOff)
            .where(RenewalOff.account_id == account_id)
            .order_by(RenewalOff.created_at.desc(), RenewalOff.id.desc())
        )
    )
