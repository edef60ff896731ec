"""My package's card (R1): the package, its state and what it renews with, printed in Python.

The card was the heaviest template of the page (issue 26: 0.2 ms of its 1.7, some thirty
translated sentences and filters, each through Jinja's call machinery). It is printed here
in one pass, as the template global ``package_card``, by My package and by its HTMX
refresh while a payment is pending (``account/_package.html``). Every value is escaped
here, once (portal/web/printing.py).
"""

from __future__ import annotations

from typing import Any

from flask import url_for
from markupsafe import Markup, escape

from portal.infra.models import Payment, Subscription, SubscriptionStatus
from portal.plugin_api.contracts import SavedMethod
from portal.rules.catalogue import Package, Period
from portal.rules.payments import Attempt
from portal.web.helpers import PACKAGE_NAMES, PERIOD_NAMES, STATUS_NAMES, path_for
from portal.web.pay import describe_saved_method, failure_message
from portal.web.printing import Texts


def package_card(
    sub: Subscription,
    package: Package,
    currency: Any,
    attempt: Attempt | None,
    method: SavedMethod | None,
    method_provider: str | None,
    method_expires: bool,
    refundable: Payment | None,
) -> Markup:
    """The card of ``sub`` (of the catalogue's ``package``; ``currency``: the registry's
    currency, whose names it shows), with the latest payment ``attempt``, the default
    ``method`` and the payment a refund may be asked for (``refundable``)."""
    t = Texts()
    _, ngettext, e = t.gettext, t.ngettext, escape
    pending = attempt is not None and attempt.pending
    method_text = (
        e(describe_saved_method(method_provider, method))
        if method is not None and method_provider is not None
        else None
    )
    name = str(e(PACKAGE_NAMES[sub.package_code]))
    refresh = (
        f' hx-get="{path_for("account.package")}" hx-trigger="every 2s" hx-swap="outerHTML"'
        ' hx-select="#package"'
        if pending
        else ""
    )
    status = e(STATUS_NAMES[SubscriptionStatus(sub.status)])
    out = [
        f'<article id="package" aria-labelledby="package-heading"{refresh}>\n'
        f'  <header>\n    <h2 id="package-heading">{name}\n'
        f'      <span class="badge badge-{e(sub.status)}">{status}</span>'
    ]
    if pending:
        waiting = _("Payment pending")
        out.append(f'\n      <span class="badge badge-pending">{waiting}</span>')
    out.append("</h2>\n  </header>\n")
    if pending:
        waiting = _(
            "We are waiting for the payment provider to confirm your payment. This usually "
            "takes seconds, sometimes minutes; this page updates itself."
        )
        out.append(f'  <p role="status">{waiting}</p>\n')
    elif attempt is not None and attempt.failure_code:
        failed = _(
            "Your last payment (%(amount)s) did not go through.", amount=t.amount(attempt.amount)
        )
        why = e(failure_message(attempt.failure_code))
        again = (
            url_for("checkout.order", public_id=attempt.order_public_id)
            if attempt.order_payable
            else path_for("checkout.edit")
        )
        try_again = _("Try again")
        out.append(
            '  <div class="flash flash-error" role="alert">\n'
            f"    <p>{failed} {why}</p>\n"
            f'    <p><a href="{e(again)}">{try_again}</a></p>\n  </div>\n'
        )
    if method_expires:
        expires = _(
            "%(method)s expires before your renewal on %(date)s, so the renewal cannot be "
            "charged to it.",
            method=Markup(method_text or ""),
            date=t.day(sub.period_end),
        )
        replace = _("Replace the payment method")
        out.append(
            '  <div class="flash flash-error" role="alert">\n'
            f'    <p>{expires}\n      <a href="{path_for("methods.page")}">{replace}</a></p>\n'
            "  </div>\n"
        )
    facts: list[tuple[str, str]] = [(_("Package"), name)]
    if sub.is_paid:
        conversations = ngettext(
            "%(num)d conversation per month", "%(num)d conversations per month", sub.conversations
        )
        if sub.conversations > package.included_conversations:
            included = ngettext(
                "%(num)d included in the package",
                "%(num)d included in the package",
                package.included_conversations,
            )
            conversations += f"\n      <small>({included})</small>"
        currency_text = str(e(sub.currency))
        if currency is not None:
            named = currency.names.get(t.language, sub.currency)
            currency_text += f" — {e(named)}"
        if sub.status == "suspended":
            ends = _("Ended on")
        elif sub.auto_renew:
            ends = _("Renews on")
        else:
            ends = _("Ends on")
        end = t.day(sub.period_end)
        iso = sub.period_end.isoformat() if sub.period_end else ""  # a paid one has an end
        facts += [
            (_("Billing period"), str(e(PERIOD_NAMES[Period(sub.period)]))),
            (_("Agents"), ngettext("%(num)d agent", "%(num)d agents", sub.agents)),
            (_("Chatbot conversations"), conversations),
            (_("Currency"), currency_text),
            (ends, f'<time datetime="{iso}">{end}</time>'),
        ]
        if sub.next_period and sub.next_period != sub.period:
            scheduled = _(
                "Billing period %(period)s from the renewal on %(date)s",
                period=PERIOD_NAMES[Period(sub.next_period)],
                date=t.day(sub.period_end),
            )
            facts.append((_("Scheduled change"), scheduled))
        if sub.next_currency and sub.next_currency != sub.currency:
            scheduled = _(
                "Currency %(currency)s from the renewal on %(date)s",
                currency=sub.next_currency,
                date=t.day(sub.period_end),
            )
            facts.append((_("Scheduled change"), scheduled))
        renewal = _("On") if sub.auto_renew else _("Off")
        if not sub.auto_renew and sub.status != "suspended":
            suspended = _("Your account will be suspended on %(date)s.", date=end)
            renewal += f"\n      <small>{suspended}</small>"
        if sub.auto_renew and sub.status != "suspended":
            switch_off = _("Switch auto-renewal off")
            renewal += (
                f'\n      <small><a href="{path_for("methods.confirm_auto_renew_off")}">'
                f"{switch_off}</a></small>"
            )
        change = _("Change in Payment methods")
        renewal += f'\n      <small><a href="{path_for("methods.page")}">{change}</a></small>'
        facts.append((_("Auto-renewal"), renewal))
    else:
        facts += [
            (
                _("Agents"),
                ngettext("up to %(num)d agent", "up to %(num)d agents", package.max_agents),
            ),
            (_("Chatbot conversations"), _("Not included in the Free package")),
            (_("Period"), _("The Free package does not expire")),
        ]
    facts.append(
        (
            _("Payment method"),
            method_text or _("None saved yet: you choose one at your first payment"),
        )
    )
    if sub.credit:
        used_up = _("used up by your next invoices")
        facts.append((_("Account credit"), f"{t.amount(sub.credit)} <small>{used_up}</small>"))
    out.append('  <dl class="package-facts">\n')
    out.extend(f"    <dt>{term}</dt>\n    <dd>{value}</dd>\n" for term, value in facts)
    out.append("  </dl>\n")
    history = _("Payment history")
    out.append(f'  <p><small><a href="{path_for("history.page")}">{history}</a></small></p>\n')
    if sub.status == "suspended":
        edit = _("Reactivate")
    elif sub.is_paid:
        edit = _("Edit")
    else:
        edit = _("Buy a package")
    out.append(f'  <footer>\n    <a role="button" href="{path_for("checkout.edit")}">{edit}</a>\n')
    if refundable is not None:
        refund_url = url_for("refunds.confirm_page", public_id=refundable.public_id)
        refund = _("Request refund")
        out.append(f'    <a role="button" class="secondary" href="{e(refund_url)}">{refund}</a>\n')
    if not package.support:
        paid_only = _("Customer support is available on paid packages only.")
        out.append(f"    <p><small>{paid_only}</small></p>\n")
    else:
        write = _(
            "To go back to the Free package, or for any change you cannot make here, write "
            "to our support team."
        )
        contact = _("Contact support")
        out.append(
            f"    <p><small>{write}\n"
            f'      <a href="{path_for("support.page")}">{contact}</a></small></p>\n'
        )
    out.append("  </footer>\n</article>\n")
    return Markup("".join(out))
