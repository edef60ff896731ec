"""The back office at ``/admin`` (Flask-Admin), for staff only (R16, R17, issue 8).

Lists are read-only: money changes only through the actions below, each a domain
operation in :mod:`portal.staff.actions` with a confirmation page and an audit entry. A customer
opening ``/admin`` gets 403; a visitor is sent to the log-in page.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Flask, Response, abort, current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_admin import Admin, AdminIndexView, BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.model import typefmt
from flask_admin.theme import Bootstrap4Theme
from flask_babel import format_date, format_datetime, gettext, lazy_gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, InvalidRequestError

from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    AuditEntry,
    EInvoiceSubmission,
    Invoice,
    InvoiceKind,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    RenewalOff,
    RenewalOffReason,
    Role,
    Subscription,
    SubscriptionStatus,
    SupportStatus,
    SupportThread,
    User,
    VatCheck,
    VatStatus,
    WebhookDelivery,
    latest_pdf,
    utcnow,
)
from portal.rules import invoicing, renewal_off, revenue, support
from portal.rules.catalogue import PackageCode, Period
from portal.rules.money import Money
from portal.staff import actions

REFUSALS = {
    "not_found": lazy_gettext("It no longer exists."),
    "changed": lazy_gettext(
        "It changed since you opened this page (or the form was sent twice); nothing was done."
        " Look at it again."
    ),
    "not_yearly": lazy_gettext("Only a yearly paid subscription can be switched to monthly."),
    "already_scheduled": lazy_gettext("The switch to monthly is already scheduled."),
    "not_paid": lazy_gettext("The account is not on a paid package."),
    "already_free": lazy_gettext("The account is already on the Free package."),
    "unknown_currency": lazy_gettext("%(currency)s is not a currency of the catalogue."),
    "same_currency": lazy_gettext("The next period is already billed in %(currency)s."),
    "credit_left": lazy_gettext(
        "The account has %(credit)s of credit in its current currency; change the currency"
        " once it is used up."
    ),
    "days_range": lazy_gettext("Extend by 1 to %(max)s days."),
    "not_refundable": lazy_gettext(
        "Only a settled payment that is not fully refunded can be refunded."
    ),
    "amount_range": lazy_gettext("Refund more than 0 and at most what remains: %(max)s."),
    "amount_split": lazy_gettext(
        "This amount cannot be split exactly into net and VAT; the nearest amounts that can"
        " are %(below)s and %(above)s."
    ),
    "no_provider": lazy_gettext("The payment's provider is not available; refund it there."),
    "cannot_refund": lazy_gettext(
        "The payment's provider cannot give money back through the portal; refund it there."
    ),
    "provider_error": lazy_gettext("The provider refused or did not answer: %(message)s"),
    "bad_amount": lazy_gettext("Enter the amount as a number, e.g. 12.50."),
    "empty": lazy_gettext("Please write your message."),
    "too_long": lazy_gettext("A message can have at most 5,000 characters."),
}


def _message(refused: actions.StaffRefused) -> str:
    return (
        str(REFUSALS[refused.code]) % refused.params
        if refused.params
        else str(REFUSALS[refused.code])
    )


def _is_staff() -> bool:
    return bool(current_user.is_authenticated and current_user.role == Role.ADMIN)


def _refuse() -> ResponseReturnValue:
    if current_user.is_authenticated:
        abort(403)
    return redirect(url_for("auth.login", next=request.full_path))


class StaffOnly:
    def is_accessible(self) -> bool:
        return _is_staff()

    def inaccessible_callback(self, name: str, **kwargs: Any) -> ResponseReturnValue:
        return _refuse()


def _money(minor_field: str, currency_field: str = "currency") -> Any:
    def formatter(view: Any, context: Any, model: Any, name: str) -> str:
        minor = getattr(model, minor_field)
        currency = getattr(model, currency_field)
        if minor is None or currency is None:
            return "—"
        return Money(int(minor), currency).format(_language())

    return formatter


def _language() -> str:
    from portal.infra.i18n import current_language

    return current_language()


# Stored codes as staff read them, in their language (never a raw ``standard`` or ``past_due``).
PACKAGES = {
    PackageCode.FREE: lazy_gettext("Free"),
    PackageCode.STANDARD: lazy_gettext("Standard"),
    PackageCode.PRO: lazy_gettext("Pro"),
}
PERIODS = {Period.MONTH: lazy_gettext("Monthly"), Period.YEAR: lazy_gettext("Yearly")}
SUBSCRIPTION_STATUSES = {
    SubscriptionStatus.ACTIVE: lazy_gettext("Active"),
    SubscriptionStatus.PAST_DUE: lazy_gettext("Payment failed"),
    SubscriptionStatus.SUSPENDED: lazy_gettext("Suspended"),
}
ORDER_STATUSES = {
    OrderStatus.PENDING: lazy_gettext("Awaiting payment"),
    OrderStatus.PAID: lazy_gettext("Paid"),
    OrderStatus.FAILED: lazy_gettext("Payment failed"),
    OrderStatus.REFUNDED: lazy_gettext("Refunded"),
    OrderStatus.SUPERSEDED: lazy_gettext("Replaced by a new price"),
}
PAYMENT_STATUSES: dict[str, Any] = {
    PaymentStatus.PENDING: lazy_gettext("Awaiting payment"),
    PaymentStatus.PAID: lazy_gettext("Paid"),
    PaymentStatus.FAILED: lazy_gettext("Payment failed"),
    PaymentStatus.REFUNDED: lazy_gettext("Refunded"),
}
INVOICE_KINDS = {
    InvoiceKind.INVOICE: lazy_gettext("Invoice"),
    InvoiceKind.CORRECTION: lazy_gettext("Correction"),
    InvoiceKind.CREDIT_NOTE: lazy_gettext("Credit note"),
}
SUPPORT_STATUSES = {
    SupportStatus.OPEN: lazy_gettext("Waiting for our answer"),
    SupportStatus.ANSWERED: lazy_gettext("Answered"),
    SupportStatus.CLOSED: lazy_gettext("Closed"),
}
VAT_STATUSES = {
    VatStatus.PENDING: lazy_gettext("Not checked yet"),
    VatStatus.VALID: lazy_gettext("Valid"),
    VatStatus.INVALID: lazy_gettext("Invalid"),
}
ROLES = {Role.CUSTOMER: lazy_gettext("Customer"), Role.ADMIN: lazy_gettext("Staff")}
LANGUAGES = {"pl": "Polski", "en": "English"}
AUDIT_ACTIONS = {
    "add_payment_method": lazy_gettext("Payment method added"),
    "auto_renew": lazy_gettext("Auto-renewal changed"),
    "billing_info": lazy_gettext("Billing information changed"),
    "invoice_note": lazy_gettext("Invoice note changed"),
    "place_order": lazy_gettext("Order placed"),
    "refund": lazy_gettext("Refund"),
    "refund_request": lazy_gettext("Refund requested by the customer"),
    "resend_invoice": lazy_gettext("Invoice sent again"),
    "revoke_sessions": lazy_gettext("Signed out everywhere"),
    "support_reply": lazy_gettext("Support reply"),
    "extend_period": lazy_gettext("Period extended"),
    "return_to_free": lazy_gettext("Returned to Free"),
    "schedule_currency": lazy_gettext("Currency change scheduled"),
    "schedule_monthly": lazy_gettext("Switch to monthly scheduled"),
}
# The customers' answers to "why?" when switching auto-renewal off (staff's wording).
OFF_REASONS = {
    RenewalOffReason.TOO_EXPENSIVE: lazy_gettext("Too expensive"),
    RenewalOffReason.MISSING_FEATURES: lazy_gettext("Missing features"),
    RenewalOffReason.OTHER_PRODUCT: lazy_gettext("Switching to another product"),
    RenewalOffReason.TEMPORARY: lazy_gettext("Only needed it temporarily"),
    RenewalOffReason.OTHER: lazy_gettext("Other"),
}
ACTOR_ROLES = {"customer": lazy_gettext("Customer"), "admin": lazy_gettext("Staff")}


def _label(names: dict[Any, Any]) -> Any:
    """A formatter showing a stored code by its translated name (an unknown code as it is)."""

    def formatter(view: Any, context: Any, model: Any, name: str) -> str:
        value = getattr(model, name)
        if value is None:
            return "—"
        return str(names.get(value, value))

    return formatter


def _provider(view: Any, context: Any, model: Any, name: str) -> Markup | str:
    """A payment provider by the name customers see (its code on hover, as the filter
    takes it); a provider switched off since, or whose label() fails, by its code."""
    code = getattr(model, name)
    if code is None:
        return "—"
    from portal.plugin_api.registry import registry

    provider = registry().payment_providers.get(code)
    try:
        label = provider.label(_language()) if provider is not None else None
    except Exception:  # a plugin's fault must not take the staff list down
        label = None
    if not isinstance(label, str) or not label:
        return str(code)
    return Markup('<span title="{}">{}</span>').format(code, label)


def _yes_no(view: Any, context: Any, model: Any, name: str) -> str:
    value = getattr(model, name)
    return "—" if value is None else str(gettext("Yes") if value else gettext("No"))


def _moment(view: Any, value: dt.datetime, name: str) -> str:
    """A moment in the portal's time zone (BABEL_DEFAULT_TIMEZONE), to the second."""
    return str(format_datetime(value, "yyyy-MM-dd HH:mm:ss"))


TYPE_FORMATTERS = {**typefmt.BASE_FORMATTERS, dt.datetime: _moment}
DETAIL_TYPE_FORMATTERS = {**typefmt.DETAIL_FORMATTERS, dt.datetime: _moment}


def _link(endpoint: str, text: Any, **values: Any) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url_for(endpoint, **values), escape(str(text)))


class ReadOnly(StaffOnly, ModelView):
    """Lists and details only: nothing is created, edited or deleted here."""

    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    can_export = False
    column_display_pk = True
    page_size = 50
    form_base_class = FlaskForm
    action_disallowed_list = ["delete"]
    column_default_sort = ("id", True)
    column_type_formatters = TYPE_FORMATTERS
    column_type_formatters_detail = DETAIL_TYPE_FORMATTERS

    # A hand-made query string (a NUL in a search or filter, page=-1 or 10**20, an id that
    # is not a number) makes the database refuse the query: a bad request, not a 500.
    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_list(*args, **kwargs)
        except (DataError, OverflowError):
            db.session.rollback()
            abort(400)

    def get_one(self, id: Any) -> Any:
        try:
            return super().get_one(id)
        except (DataError, OverflowError, InvalidRequestError):
            db.session.rollback()
            abort(404)


def _account_link(view: Any, context: Any, model: Any, name: str) -> Markup:
    account_id = getattr(model, "account_id", None) or getattr(model, "id", None)
    if account_id is None:
        return Markup("—")
    return _link("staff_actions.account", f"#{account_id}", account_id=account_id)


class AccountView(ReadOnly):
    column_list = ("id", "name", "timezone", "created_at")
    column_searchable_list = ("name",)
    column_labels = {
        "id": lazy_gettext("Account"),
        "name": lazy_gettext("Company"),
        "timezone": lazy_gettext("Time zone"),
        "created_at": lazy_gettext("Created"),
    }
    column_formatters = {"id": _account_link}


class UserView(ReadOnly):
    column_list = ("id", "email", "role", "account_id", "language", "created_at")
    column_details_exclude_list = ("password_hash",)
    column_exclude_list = ("password_hash",)
    column_searchable_list = ("email",)
    column_labels = {
        "email": lazy_gettext("E-mail"),
        "role": lazy_gettext("Role"),
        "account_id": lazy_gettext("Account"),
        "language": lazy_gettext("Language"),
        "created_at": lazy_gettext("Created"),
    }
    column_formatters = {
        "account_id": _account_link,
        "role": _label(ROLES),
        "language": _label(LANGUAGES),
    }


class SubscriptionView(ReadOnly):
    column_list = (
        "account_id", "package", "period", "agents", "conversations", "currency", "status",
        "period_start", "period_end", "auto_renew", "credit_minor", "next_period",
        "next_currency",
    )  # fmt: skip
    column_filters = ("package", "period", "status", "currency", "auto_renew")
    column_labels = {
        "account_id": lazy_gettext("Account"),
        "package": lazy_gettext("Package"),
        "period": lazy_gettext("Billing period"),
        "agents": lazy_gettext("Agents"),
        "conversations": lazy_gettext("Chatbot conversations"),
        "currency": lazy_gettext("Currency"),
        "status": lazy_gettext("Status"),
        "period_start": lazy_gettext("Period start"),
        "period_end": lazy_gettext("Period end"),
        "auto_renew": lazy_gettext("Auto-renewal"),
        "credit_minor": lazy_gettext("Account credit"),
        "next_period": lazy_gettext("Next period"),
        "next_currency": lazy_gettext("Next currency"),
    }
    column_formatters = {
        "account_id": _account_link,
        "credit_minor": _money("credit_minor"),
        "package": _label(PACKAGES),
        "period": _label(PERIODS),
        "next_period": _label(PERIODS),
        "status": _label(SUBSCRIPTION_STATUSES),
        "auto_renew": _yes_no,
    }


class OrderView(ReadOnly):
    column_list = (
        "public_id", "account_id", "status", "package", "period", "agents", "currency",
        "total_minor", "created_at",
    )  # fmt: skip
    column_exclude_list = ("quote",)
    column_filters = ("status", "currency")
    column_labels = {
        "public_id": lazy_gettext("Order"),
        "account_id": lazy_gettext("Account"),
        "status": lazy_gettext("Status"),
        "package": lazy_gettext("Package"),
        "period": lazy_gettext("Billing period"),
        "agents": lazy_gettext("Agents"),
        "currency": lazy_gettext("Currency"),
        "total_minor": lazy_gettext("Total"),
        "created_at": lazy_gettext("Created"),
    }
    column_formatters = {
        "account_id": _account_link,
        "total_minor": _money("total_minor"),
        "status": _label(ORDER_STATUSES),
        "package": _label(PACKAGES),
        "period": _label(PERIODS),
    }


def _refund_link(view: Any, context: Any, model: Payment, name: str) -> Markup:
    status = str(PAYMENT_STATUSES.get(model.status, model.status))
    if model.status != PaymentStatus.PAID:
        return Markup(escape(status))
    text = f"{status} · {gettext('Refund')}"
    return _link("staff_actions.refund", text, payment_id=model.id)


class PaymentView(ReadOnly):
    column_list = (
        "public_id", "account_id", "provider", "status", "amount_minor", "refunded_minor",
        "created_at", "settled_at",
    )  # fmt: skip
    column_filters = ("status", "provider", "currency")
    column_labels = {
        "public_id": lazy_gettext("Payment"),
        "account_id": lazy_gettext("Account"),
        "provider": lazy_gettext("Provider"),
        "status": lazy_gettext("Status"),
        "amount_minor": lazy_gettext("Amount"),
        "refunded_minor": lazy_gettext("Refunded"),
        "created_at": lazy_gettext("Created"),
        "settled_at": lazy_gettext("Settled"),
    }
    column_formatters = {
        "account_id": _account_link,
        "provider": _provider,
        "amount_minor": _money("amount_minor"),
        "refunded_minor": _money("refunded_minor"),
        "status": _refund_link,
    }


class RefundView(PaymentView):
    """Payments with money given back (R14 refunds and staff refunds)."""

    def get_query(self) -> Any:
        return super().get_query().filter(Payment.refunded_minor > 0)

    def get_count_query(self) -> Any:
        return super().get_count_query().filter(Payment.refunded_minor > 0)


def _invoice_links(view: Any, context: Any, model: Invoice, name: str) -> Markup:
    return Markup(" · ").join(
        [
            _link("staff_actions.invoice_pdf", model.number, invoice_id=model.id),
            _link("staff_actions.resend", gettext("Resend"), invoice_id=model.id),
        ]
    )


class InvoiceView(ReadOnly):
    column_list = (
        "number", "kind", "account_id", "issue_date", "currency", "net_minor", "vat_minor",
        "total_minor", "corrects_id", "note", "rate_plugin",
    )  # fmt: skip
    column_exclude_list = ("content", "xml")
    column_details_exclude_list = ("content", "xml")
    column_filters = ("kind", "currency", "issue_date")
    column_searchable_list = ("number",)
    column_labels = {
        "number": lazy_gettext("Number"),
        "kind": lazy_gettext("Kind"),
        "account_id": lazy_gettext("Account"),
        "issue_date": lazy_gettext("Issue date"),
        "currency": lazy_gettext("Currency"),
        "net_minor": lazy_gettext("Net"),
        "vat_minor": lazy_gettext("VAT"),
        "total_minor": lazy_gettext("Total"),
        "corrects_id": lazy_gettext("Corrects"),
        "note": lazy_gettext("Note"),
        "rate_plugin": lazy_gettext("Exchange rate from plugin"),
    }
    column_formatters = {
        "number": _invoice_links,
        "kind": _label(INVOICE_KINDS),
        "account_id": _account_link,
        "net_minor": _money("net_minor"),
        "vat_minor": _money("vat_minor"),
        "total_minor": _money("total_minor"),
    }


def _submission_invoice(view: Any, context: Any, model: EInvoiceSubmission, name: str) -> Any:
    invoice = db.session.get(Invoice, model.invoice_id)
    return invoice.number if invoice is not None else model.invoice_id


class EInvoiceSubmissionView(ReadOnly):
    """Each issued document's way through KSeF: a rejection is for staff to act on."""

    column_list = (
        "invoice_id", "channel", "state", "offline", "national_number", "assigned_at",
        "error_code", "error_message", "attempts", "next_try_at",
    )  # fmt: skip
    column_exclude_list = ("payload", "receipt")
    column_details_exclude_list = ("payload", "receipt")
    column_filters = ("state", "channel", "offline")
    column_searchable_list = ("national_number",)
    column_default_sort = ("id", True)
    column_labels = {
        "invoice_id": lazy_gettext("Invoice"),
        "channel": lazy_gettext("Channel"),
        "state": lazy_gettext("Status"),
        "offline": lazy_gettext("Offline mode"),
        "national_number": lazy_gettext("KSeF number"),
        "assigned_at": lazy_gettext("Number assigned"),
        "error_code": lazy_gettext("Error code"),
        "error_message": lazy_gettext("Error"),
        "attempts": lazy_gettext("Attempts"),
        "next_try_at": lazy_gettext("Next try"),
    }
    column_formatters = {"invoice_id": _submission_invoice}


def _thread_link(view: Any, context: Any, model: SupportThread, name: str) -> Markup:
    return _link("staff_actions.thread", model.subject, thread_id=model.id)


class SupportThreadView(ReadOnly):
    column_list = ("subject", "account_id", "status", "created_at", "updated_at")
    column_filters = ("status",)
    column_default_sort = ("updated_at", True)
    column_labels = {
        "subject": lazy_gettext("Subject"),
        "account_id": lazy_gettext("Account"),
        "status": lazy_gettext("Status"),
        "created_at": lazy_gettext("Created"),
        "updated_at": lazy_gettext("Last change"),
    }
    column_formatters = {
        "subject": _thread_link,
        "account_id": _account_link,
        "status": _label(SUPPORT_STATUSES),
    }


class VatCheckView(ReadOnly):
    column_list = (
        "account_id", "country", "number", "status", "source_registry", "validator", "plugin",
        "checked_at",
    )  # fmt: skip
    column_filters = ("status", "country")
    column_labels = {
        "account_id": lazy_gettext("Account"),
        "country": lazy_gettext("Country"),
        "number": lazy_gettext("VAT number"),
        "status": lazy_gettext("Status"),
        "validator": lazy_gettext("Checked by"),
        "source_registry": lazy_gettext("Registry"),
        "plugin": lazy_gettext("Plugin"),
        "checked_at": lazy_gettext("Checked"),
    }
    column_formatters = {"account_id": _account_link, "status": _label(VAT_STATUSES)}


class AuditView(ReadOnly):
    column_list = (
        "created_at", "actor_email", "actor_role", "action", "account_id", "object_type",
        "object_id", "before", "after", "note",
    )  # fmt: skip
    column_filters = ("action", "actor_role", "actor_email")
    column_labels = {
        "created_at": lazy_gettext("When"),
        "actor_email": lazy_gettext("Who"),
        "actor_role": lazy_gettext("Role"),
        "action": lazy_gettext("What"),
        "account_id": lazy_gettext("Account"),
        "object_type": lazy_gettext("Object"),
        "object_id": lazy_gettext("Id"),
        "before": lazy_gettext("Before"),
        "after": lazy_gettext("After"),
        "note": lazy_gettext("Note"),
    }
    column_formatters = {
        "account_id": _account_link,
        "action": _label(AUDIT_ACTIONS),
        "actor_role": _label(ACTOR_ROLES),
    }


class WebhookView(ReadOnly):
    """The events sent to the chat product (docs/integration.md), newest first."""

    column_list = (
        "created_at", "type", "account_id", "event_id", "url", "attempts", "next_attempt_at",
        "delivered_at", "gave_up_at", "last_error",
    )  # fmt: skip
    column_default_sort = ("id", True)
    column_filters = ("type", "url")
    column_labels = {
        "created_at": lazy_gettext("When"),
        "type": lazy_gettext("Event"),
        "account_id": lazy_gettext("Account"),
        "event_id": lazy_gettext("Id"),
        "url": lazy_gettext("URL"),
        "attempts": lazy_gettext("Tries"),
        "next_attempt_at": lazy_gettext("Next try"),
        "delivered_at": lazy_gettext("Delivered"),
        "gave_up_at": lazy_gettext("Given up"),
        "last_error": lazy_gettext("Last error"),
    }
    column_formatters = {"account_id": _account_link}


class RenewalOffView(ReadOnly):
    """Why customers switched auto-renewal off (their optional answers, issue 25)."""

    column_list = ("created_at", "account_id", "reason", "detail")
    column_filters = ("reason",)
    column_searchable_list = ("detail",)
    column_default_sort = ("created_at", True)
    column_labels = {
        "created_at": lazy_gettext("When"),
        "account_id": lazy_gettext("Account"),
        "user_id": lazy_gettext("User"),
        "reason": lazy_gettext("Reason"),
        "detail": lazy_gettext("In their words"),
    }
    column_formatters = {"account_id": _account_link, "reason": _label(OFF_REASONS)}
    column_formatters_detail = {"account_id": _account_link, "reason": _label(OFF_REASONS)}


# -- the dashboard ------------------------------------------------------------------------------


CHART_HEIGHT = 120  # the bars' greatest height in the dashboard's SVG charts (px)


def _month_label(first: dt.date) -> str:
    return str(format_date(first, "LLL yy"))


def revenue_charts(months: list[revenue.Month]) -> dict[str, Any]:
    """The 12 months as server-rendered bar charts: one per currency (its own scale), and
    one of new and churned subscriptions. Heights are integers (no float touches money)."""
    labels = [_month_label(month.first) for month in months]
    currencies = sorted({currency for month in months for currency in month.mrr})
    mrr_charts = []
    for currency in currencies:
        amounts = [month.mrr.get(currency, Money(0, currency)) for month in months]
        top = max(amount.minor for amount in amounts) or 1
        mrr_charts.append(
            {
                "currency": currency,
                "top": Money(top, currency),
                "bars": [
                    {
                        "label": label,
                        "amount": amount,
                        "height": amount.minor * CHART_HEIGHT // top,
                    }
                    for label, amount in zip(labels, amounts, strict=True)
                ],
            }
        )
    top = max([m.new for m in months] + [m.churned for m in months] + [1])
    flow = [
        {
            "label": label,
            "new": month.new,
            "churned": month.churned,
            "new_height": month.new * CHART_HEIGHT // top,
            "churned_height": month.churned * CHART_HEIGHT // top,
        }
        for label, month in zip(labels, months, strict=True)
    ]
    return {"mrr_charts": mrr_charts, "flow": flow, "flow_top": top, "chart_height": CHART_HEIGHT}


def dashboard_figures(now: dt.datetime) -> dict[str, Any]:
    """MRR and active subscriptions by package and currency (no exchange: per currency).

    MRR counts active and past-due paid subscriptions at the net price of their current
    period, a yearly one at a twelfth (rounded half-up once per currency).
    """
    rows = db.session.execute(
        select(
            Subscription.package,
            Subscription.currency,
            Subscription.period,
            func.count(),
            func.sum(Subscription.period_net_minor),
        )
        .where(
            Subscription.package != PackageCode.FREE.value,
            Subscription.status.in_(
                [SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAST_DUE.value]
            ),
        )
        .group_by(Subscription.package, Subscription.currency, Subscription.period)
    ).all()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    twelfths: dict[str, int] = defaultdict(int)  # MRR x 12, exact
    for package, currency, period, count, net in rows:
        code = str(currency)  # a paid subscription always has one (a CHECK says so)
        counts[(str(package), code)] += int(count)
        twelfths[code] += int(net or 0) * (12 if period == Period.MONTH else 1)
    mrr = {
        currency: Money(int((Decimal(total) / 12).to_integral_value("ROUND_HALF_UP")), currency)
        for currency, total in sorted(twelfths.items())
    }
    by_package = sorted(counts.items(), key=lambda item: (item[0][0], item[0][1]))
    widest = max(counts.values(), default=1)
    bars = [
        {"package": package, "currency": currency, "count": count, "width": count * 100 // widest}
        for (package, currency), count in by_package
    ]
    free = db.session.scalar(
        select(func.count())
        .select_from(Subscription)
        .where(Subscription.package == PackageCode.FREE.value)
    )
    retrying = db.session.scalar(
        select(func.count())
        .select_from(Subscription)
        .where(Subscription.status == SubscriptionStatus.PAST_DUE.value)
    )
    open_threads = db.session.scalar(
        select(func.count())
        .select_from(SupportThread)
        .where(SupportThread.status == SupportStatus.OPEN.value)
    )
    today = invoicing.local_today(now)
    months = revenue.history(
        today=today, timezone=current_app.config["BABEL_DEFAULT_TIMEZONE"], months=12
    )
    return {
        **revenue_charts(months),
        "months": months,
        "off_reasons": renewal_off.counts(),
        "off_reason_names": OFF_REASONS,
        "mrr": mrr,
        "bars": bars,
        "free": int(free or 0),
        "total": sum(counts.values()),
        "retrying": int(retrying or 0),
        "open_threads": int(open_threads or 0),
    }


class Dashboard(StaffOnly, AdminIndexView):
    @expose("/")
    def index(self) -> Any:
        return self.render("admin/dashboard.html", **dashboard_figures(utcnow()))


# -- actions --------------------------------------------------------------------------------------


class Actions(StaffOnly, BaseView):
    """Confirmation pages and the actions behind them (hidden from the menu)."""

    def is_visible(self) -> bool:
        return False

    @expose("/")
    def index(self) -> Any:
        return redirect(url_for("admin.index"))

    def _done(self, message: str, account_id: int) -> ResponseReturnValue:
        flash(message, "success")
        return redirect(url_for(".account", account_id=account_id))

    @expose("/account/<int:account_id>")
    def account(self, account_id: int) -> Any:
        account = db.session.get(Account, account_id)
        if account is None:
            abort(404)
        payments = db.session.scalars(
            select(Payment).where(Payment.account_id == account_id).order_by(Payment.id.desc())
        ).all()
        invoices = db.session.scalars(
            select(Invoice).where(Invoice.account_id == account_id).order_by(Invoice.id.desc())
        ).all()
        threads = support.threads(account_id)
        return self.render(
            "admin/account.html",
            account=account,
            payment_status_names=PAYMENT_STATUSES,
            off_answers=renewal_off.of_account(account_id),
            off_reason_names=OFF_REASONS,
            sub=account.subscription,
            payments=payments,
            invoices=invoices,
            threads=threads,
            currencies=current_app.extensions["pakiet.catalogue"].currencies,
        )

    @expose("/subscription/<int:sub_id>/<action>", methods=("GET", "POST"))
    def subscription(self, sub_id: int, action: str) -> Any:
        if action not in ("monthly", "free", "extend", "currency"):
            abort(404)
        sub = db.session.get(Subscription, sub_id)
        if sub is None:
            abort(404)
        error = None
        if request.method == "POST":
            try:
                self._subscription_action(sub, action)
            except actions.StaffRefused as refused:
                error = _message(refused)
                db.session.expire_all()
                sub = db.session.get(Subscription, sub_id)
                if sub is None:
                    abort(404)
            else:
                return self._done(str(DONE[action]), sub.account_id)
        return self.render(
            "admin/confirm_subscription.html",
            sub=sub,
            action=action,
            error=error,
            currencies=current_app.extensions["pakiet.catalogue"].currencies,
            form=request.form,
        ), (422 if error else 200)

    def _subscription_action(self, sub: Subscription, action: str) -> None:
        version = _int(request.form.get("version"))
        note = _note(500)
        now = utcnow()
        if action == "monthly":
            actions.schedule_monthly(sub_id=sub.id, version=version, actor=current_user, now=now)
        elif action == "free":
            catalogue = current_app.extensions["pakiet.catalogue"]
            actions.return_to_free(
                sub_id=sub.id,
                version=version,
                free_agents=catalogue.package(PackageCode.FREE).max_agents,
                actor=current_user,
                note=note,
                now=now,
            )
        elif action == "extend":
            actions.extend_period(
                sub_id=sub.id,
                version=version,
                days=_int(request.form.get("days"), stored=False),
                actor=current_user,
                note=note,
                now=now,
                today=invoicing.local_today(now),
            )
        else:
            actions.schedule_currency(
                sub_id=sub.id,
                version=version,
                currency=(request.form.get("currency") or "").strip().upper()[:3],
                catalogue=current_app.extensions["pakiet.catalogue"],
                actor=current_user,
                now=now,
            )

    @expose("/payment/<int:payment_id>/refund", methods=("GET", "POST"))
    def refund(self, payment_id: int) -> Any:
        payment = db.session.get(Payment, payment_id)
        if payment is None:
            abort(404)
        error = None
        if request.method == "POST":
            try:
                amount = _amount(request.form.get("amount"), payment.currency)
                now = utcnow()
                from portal.plugin_api.registry import registry

                result = actions.refund(
                    payment_id=payment.id,
                    refunded_seen=_int(request.form.get("refunded_seen")),
                    amount=amount,
                    providers=registry().payment_providers.get,
                    seller=current_app.config["SELLER"],
                    render=invoicing.app_renderer(),
                    actor=current_user,
                    note=_note(300),
                    now=now,
                    today=invoicing.local_today(now),
                )
            except actions.StaffRefused as refused:
                error = _message(refused)
                db.session.expire_all()
                payment = db.session.get(Payment, payment_id)
                if payment is None:
                    abort(404)
            else:
                if result.credit_note is not None:
                    invoicing.send(result.credit_note, now=now)
                message = gettext("Refunded %(amount)s.", amount=amount.format(_language()))
                return self._done(message, payment.account_id)
        remaining = Money(payment.amount_minor - payment.refunded_minor, payment.currency)
        return self.render(
            "admin/confirm_refund.html",
            payment=payment,
            remaining=remaining,
            error=error,
            amount=request.form.get("amount", str(remaining.amount)),
        ), (422 if error else 200)

    @expose("/account/<int:account_id>/sessions", methods=("GET", "POST"))
    def sessions(self, account_id: int) -> Any:
        account = db.session.get(Account, account_id)
        if account is None:
            abort(404)
        if request.method == "POST":
            actions.revoke_sessions(account_id=account.id, actor=current_user, now=utcnow())
            return self._done(gettext("Everyone on this account has been logged out."), account.id)
        return self.render("admin/confirm_sessions.html", account=account)

    @expose("/invoice/<int:invoice_id>/resend", methods=("GET", "POST"))
    def resend(self, invoice_id: int) -> Any:
        invoice = db.session.get(Invoice, invoice_id)
        if invoice is None:
            abort(404)
        if request.method == "POST":
            actions.resend_invoice(invoice_id=invoice.id, actor=current_user, now=utcnow())
            return self._done(
                gettext("Invoice %(number)s sent again.", number=invoice.number),
                invoice.account_id,
            )
        return self.render("admin/confirm_resend.html", invoice=invoice)

    @expose("/invoice/<int:invoice_id>.pdf")
    def invoice_pdf(self, invoice_id: int) -> Any:
        invoice = db.session.get(Invoice, invoice_id)
        if invoice is not None:
            invoicing.ensure_rendered(invoice, now=utcnow())
        body = latest_pdf(invoice_id) if invoice is not None else None
        if invoice is None or body is None:
            abort(404)
        response = Response(body, mimetype="application/pdf")
        filename = invoice.number.replace("/", "-") + ".pdf"
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @expose("/thread/<int:thread_id>", methods=("GET", "POST"))
    def thread(self, thread_id: int) -> Any:
        thread = db.session.get(SupportThread, thread_id)
        if thread is None:
            abort(404)
        error = None
        if request.method == "POST":
            try:
                support.staff_reply(
                    thread=thread,
                    staff=current_user,
                    body=request.form.get("body", ""),
                    now=utcnow(),
                )
            except support.SupportRefused as refused:
                error = str(REFUSALS.get(refused.code, refused.code))
            else:
                flash(gettext("Your reply was sent to the customer."), "success")
                return redirect(url_for(".thread", thread_id=thread.id))
        return self.render(
            "admin/thread.html", thread=thread, error=error, body=request.form.get("body", "")
        ), (422 if error else 200)


DONE = {
    "monthly": lazy_gettext("Scheduled: monthly from the next renewal."),
    "free": lazy_gettext("The account is on the Free package now."),
    "extend": lazy_gettext("The period was extended."),
    "currency": lazy_gettext("Scheduled: the new currency from the next renewal."),
}


def _note(limit: int) -> str | None:
    """The form's reason for the audit log: control characters dropped (PostgreSQL refuses
    a NUL in text), trimmed, at most ``limit`` characters; None when empty."""
    text = request.form.get("note") or ""
    cleaned = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    return cleaned[:limit].strip() or None


def _int(text: str | None, *, stored: bool = True) -> int:
    """A number from a form. A ``stored`` one (a version, an amount seen) is compared with
    a database integer: beyond its range it cannot match (and PostgreSQL would refuse it)."""
    try:
        value = int((text or "").strip())
    except ValueError:
        raise actions.StaffRefused("changed") from None
    if stored and not -(2**31) <= value < 2**31:
        raise actions.StaffRefused("changed")
    return value


def _amount(text: str | None, currency: str) -> Money:
    cleaned = (text or "").strip().replace(" ", "").replace("\xa0", "").replace(",", ".")
    try:
        return Money.of(Decimal(cleaned), currency)
    except (InvalidOperation, ValueError):
        raise actions.StaffRefused("bad_amount") from None


def init_admin(app: Flask) -> Admin:
    admin = Admin(
        app,
        name=lazy_gettext("Pakiet admin"),
        url="/admin",
        index_view=Dashboard(name=lazy_gettext("Dashboard"), url="/admin"),
        theme=Bootstrap4Theme(swatch="default"),
    )
    session = db

    def add(view_class: Any, model: Any, name: Any, slug: str) -> None:
        # Endpoints are prefixed: the portal has its own "account", "invoices"... blueprints.
        admin.add_view(
            view_class(model, session, name=name, endpoint=f"admin_{slug}", url=f"/admin/{slug}")
        )

    add(AccountView, Account, lazy_gettext("Accounts"), "accounts")
    add(UserView, User, lazy_gettext("Users"), "users")
    add(SubscriptionView, Subscription, lazy_gettext("Subscriptions"), "subscriptions")
    add(OrderView, Order, lazy_gettext("Orders"), "orders")
    add(PaymentView, Payment, lazy_gettext("Payments"), "payments")
    add(RefundView, Payment, lazy_gettext("Refunds"), "refunds")
    add(InvoiceView, Invoice, lazy_gettext("Invoices"), "invoices")
    add(EInvoiceSubmissionView, EInvoiceSubmission, lazy_gettext("KSeF"), "einvoices")
    add(SupportThreadView, SupportThread, lazy_gettext("Support requests"), "support")
    add(VatCheckView, VatCheck, lazy_gettext("VAT checks"), "vies")
    add(RenewalOffView, RenewalOff, lazy_gettext("Why renewal is off"), "renewal-off")
    add(AuditView, AuditEntry, lazy_gettext("Audit log"), "audit")
    add(WebhookView, WebhookDelivery, lazy_gettext("Webhooks"), "webhooks")
    admin.add_view(Actions(name="actions", endpoint="staff_actions", url="/admin/actions"))
    return admin
