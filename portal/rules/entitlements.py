"""What an account may use right now, as the chat product reads it.

One document for the entitlements endpoint (``portal/web/entitlements.py``) and the
webhooks' payload (``portal.rules.webhooks``): a suspended account is entitled to the Free
package; while a renewal is being retried (``past_due``) the paid package keeps working.
"""

from __future__ import annotations

from typing import Any

from portal.infra.models import Subscription, SubscriptionStatus
from portal.rules.catalogue import Catalogue, PackageCode


def entitlements(sub: Subscription, catalogue: Catalogue) -> dict[str, Any]:
    """The document for ``sub``: what to enforce now, and the subscription on record."""
    suspended = sub.status == SubscriptionStatus.SUSPENDED
    free = catalogue.package(PackageCode.FREE)
    if sub.is_paid and not suspended:
        package, agents, conversations = sub.package, sub.agents, sub.conversations
    else:
        package = PackageCode.FREE.value
        agents = min(sub.agents, free.max_agents) if sub.is_paid else free.max_agents
        conversations = 0
    return {
        "account_id": sub.account_id,
        "package": package,
        "agents": agents,
        "chatbot_conversations": conversations,
        "support": catalogue.package(package).support,
        "status": sub.status,
        "period_end": sub.period_end.isoformat() if sub.is_paid and sub.period_end else None,
        "auto_renew": sub.auto_renew,
        "subscription": {
            "package": sub.package,
            "period": sub.period if sub.is_paid else None,
            "agents": sub.agents,
            "chatbot_conversations": sub.conversations,
        },
        "version": sub.version,
    }
