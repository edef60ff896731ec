"""The audit log: who did what, when, before and after (issue 8).

Staff actions write their entry in the action's own transaction (:func:`record`); customer
actions that touch money or billing data are recorded right after they commit
(:func:`record_customer`), from the view that carried them out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from portal.infra.extensions import db
from portal.infra.models import AuditEntry, User, utcnow


def plain(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (dates as ISO text, Money as minor units and code)."""
    from portal.rules.money import Money

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Money):
        return {"minor": value.minor, "currency": value.currency}
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def record(
    *,
    actor: User | None,
    action: str,
    account_id: int | None,
    object_type: str | None = None,
    object_id: object = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> AuditEntry:
    """Add an entry to the caller's transaction (the caller commits)."""
    entry = AuditEntry(
        actor_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else None,
        actor_role=actor.role if actor is not None else "system",
        account_id=account_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id) if object_id is not None else None,
        before=plain(before) if before is not None else None,
        after=plain(after) if after is not None else None,
        note=(note or None) and note[:500],
        created_at=now or utcnow(),
    )
    db.session.add(entry)
    return entry


def record_customer(actor: User, action: str, **fields: Any) -> None:
    """Record a customer's action that has just been committed."""
    record(actor=actor, action=action, account_id=actor.account_id, **fields)
    db.session.commit()


def subscription_state(sub: Any) -> dict[str, Any]:
    return {
        "package": sub.package,
        "period": sub.period,
        "agents": sub.agents,
        "conversations": sub.conversations,
        "currency": sub.currency,
        "status": sub.status,
        "period_start": sub.period_start,
        "period_end": sub.period_end,
        "auto_renew": sub.auto_renew,
        "credit_minor": sub.credit_minor,
        "next_period": sub.next_period,
        "next_currency": sub.next_currency,
    }
