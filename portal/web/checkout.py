"""Edit the package (R4-R7): the form, its live HTMX summary, and placing the order."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import current_user, login_required

from portal.infra import audit
from portal.infra.extensions import db, htmx
from portal.infra.models import Account, OrderStatus, utcnow
from portal.rules import orders, payments
from portal.rules.catalogue import Catalogue, PackageCode, Period
from portal.rules.orders import Pricing
from portal.rules.pricing import ChangeRefused, Quote, RefusalReason, Selection, fit_conversations
from portal.rules.tax import TaxDecision
from portal.web import htmx_util, order_lines, pay
from portal.web.helpers import echoed, format_money, hands_off_to_providers
from portal.web.read_only import read_only
from portal.web.session_user import current_account

bp = Blueprint("checkout", __name__, url_prefix="/package")

PACKAGE_CODES = frozenset(code.value for code in PackageCode)
ECHO_LIMIT = 20  # the longest value a field of this form takes
WHOLE_NUMBER = re.compile(r"^\s*\d{1,6}\s*$")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")

REFUSALS = {
    RefusalReason.FREE_NOT_SELECTABLE: lazy_gettext(
        "The Free package cannot be chosen here. To go back to Free, contact our support team."
    ),
    RefusalReason.YEARLY_TO_MONTHLY: lazy_gettext(
        "Switching from yearly to monthly billing is not self-service: contact our support team "
        "and we will do it for you from your next renewal."
    ),
    RefusalReason.AGENTS_OUT_OF_RANGE: lazy_gettext("Choose between %(min)d and %(max)d agents."),
    RefusalReason.CONVERSATIONS_OUT_OF_RANGE: lazy_gettext(
        "This package has from %(min)d to %(max)d chatbot conversations per month."
    ),
    RefusalReason.CONVERSATIONS_NOT_WHOLE_PACKS: lazy_gettext(
        "Chatbot conversations are sold in packs of %(pack)d."
    ),
    RefusalReason.CURRENCY_FIXED: lazy_gettext(
        "Your account is billed in %(currency)s. To change the currency, contact our support team."
    ),
    RefusalReason.UNKNOWN_CURRENCY: lazy_gettext("We do not sell in this currency."),
    RefusalReason.BILLING_DATA_MISSING: lazy_gettext(
        "Before you pay, enter your billing country and address: the invoice cannot be issued "
        "without them, and the VAT depends on your country."
    ),
}


@dataclass
class Form:
    """The checkout form as submitted: raw values to re-display, a selection if valid."""

    values: dict[str, str]
    selection: Selection | None = None
    errors: list[str] = field(default_factory=list)
    # A forged package, period or currency (not a typing mistake): answered with 400.
    forged: bool = False
    support_needed: bool = False
    # The billing data lack the country or address: the summary links to the form.
    billing_needed: bool = False
    # Set when a change of package brought the conversations into its range.
    fitted: Fitted | None = None


@dataclass(frozen=True)
class Fitted:
    """Conversations entered for one package, brought into another's range."""

    package: PackageCode
    before: int
    after: int
    minimum: int
    maximum: int


def pricing() -> Pricing:
    return Pricing(
        catalogue=current_app.extensions["pakiet.catalogue"],
        vat_rates=current_app.extensions["pakiet.vat_rates"],
        seller_country=current_app.config["SELLER"]["country"],
    )


def today() -> dt.date:
    """Today in the portal's time zone (periods are calendar days)."""
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])).date()


def defaults(account: Account, catalogue: Catalogue) -> dict[str, str]:
    """What the form shows first: the current subscription, or Standard for a Free account."""
    sub = account.subscription
    package = sub.package if sub.is_paid else PackageCode.STANDARD.value
    included = catalogue.package(package).included_conversations
    return {
        "package": package,
        "period": sub.period,
        "agents": str(sub.agents),
        "conversations": str(max(sub.conversations, included)),
        "currency": sub.currency or _default_currency(catalogue),
    }


def _default_currency(catalogue: Catalogue) -> str:
    return "PLN" if "PLN" in catalogue.currencies else catalogue.currencies[0]


def parse(data: Mapping[str, str], account: Account, catalogue: Catalogue) -> Form:
    """Read the form; every problem becomes a translated message, nothing is stored."""
    base = defaults(account, catalogue)
    values = {key: str(data.get(key, base[key])) for key in base}
    # Parsed in full, shown again cut: a refused 100 kB value is not sent back.
    form = Form(values={key: echoed(value, ECHO_LIMIT) for key, value in values.items()})

    try:
        package = PackageCode(values["package"])
    except ValueError:
        form.errors.append(gettext("Choose the Standard or the Pro package."))
        form.forged = True
        package = None
    try:
        period = Period(values["period"])
    except ValueError:
        form.errors.append(gettext("Choose monthly or yearly billing."))
        form.forged = True
        period = None
    if values["currency"] not in catalogue.currencies:
        form.errors.append(str(REFUSALS[RefusalReason.UNKNOWN_CURRENCY]))
        form.forged = True

    agents = _whole(values["agents"])
    if agents is None:
        form.errors.append(gettext("Enter the number of agents as a whole number, e.g. 5."))
    conversations = _whole(values["conversations"])
    if conversations is None:
        form.errors.append(
            gettext("Enter chatbot conversations per month as a whole number, e.g. 500.")
        )
    if form.errors or package is None or period is None or agents is None or conversations is None:
        return form
    entered_for = data.get("conversations_for")
    if entered_for in PACKAGE_CODES and entered_for != package:
        # The customer switched Standard <-> Pro: the conversations entered for the other
        # package are brought into this one's range instead of being refused.
        target = catalogue.package(package)
        fitted = fit_conversations(target, conversations)
        if fitted != conversations:
            form.fitted = Fitted(
                package=package,
                before=conversations,
                after=fitted,
                minimum=target.included_conversations,
                maximum=target.max_conversations,
            )
            form.values["conversations"] = str(fitted)
            conversations = fitted
    form.selection = Selection(
        package=package,
        period=period,
        agents=agents,
        conversations=conversations,
        currency=values["currency"],
    )
    return form


def _whole(raw: str) -> int | None:
    return int(raw) if WHOLE_NUMBER.match(raw) else None


def selection_key(selection: Selection | None) -> str:
    """The selection a summary was made for, as the summary's form carries it back: Pay
    tells a price that changed from a choice the customer changed since."""
    if selection is None:
        return ""
    return "/".join(
        [
            selection.package.value,
            selection.period.value,
            str(selection.agents),
            str(selection.conversations),
            selection.currency,
        ]
    )


def refusal_message(exc: ChangeRefused) -> str:
    return str(REFUSALS[exc.reason]) % exc.params


def summarise(account: Account, form: Form) -> tuple[Quote | None, TaxDecision | None]:
    """Price the form's selection, turning a refusal into a message on the form."""
    if form.selection is None:
        return None, None
    try:
        return orders.quote_for(pricing(), account, form.selection, today())
    except ChangeRefused as exc:
        if refusal_message(exc) not in form.errors:  # Pay's refusal, said once
            form.errors.append(refusal_message(exc))
        form.support_needed = exc.reason in {
            RefusalReason.YEARLY_TO_MONTHLY,
            RefusalReason.FREE_NOT_SELECTABLE,
            RefusalReason.CURRENCY_FIXED,
        }
        form.forged = form.forged or exc.reason is RefusalReason.FREE_NOT_SELECTABLE
        form.billing_needed = exc.reason is RefusalReason.BILLING_DATA_MISSING
        return None, None


def context(account: Account, form: Form, **extra: Any) -> dict[str, Any]:
    """What the summary fragment needs: no query beyond the account already loaded."""
    quote, decision = summarise(account, form)
    sub = account.subscription
    record = quote.to_record() if quote else None  # the table's and the digest's
    return {
        "status_text": status_text(form, quote),
        "account": account,
        "sub": sub,
        "form": form,
        "quote": quote,
        "record": record,
        "tax": decision,
        "digest": orders.digest_of(record, sub.version) if record else "",
        "quoted_selection": selection_key(form.selection) if quote else "",
        "support_email": current_app.config["SUPPORT_EMAIL"],
        **extra,
    }


def status_text(form: Form, quote: Quote | None) -> str:
    """What the summary's live region announces to a screen reader when it changes."""
    if form.errors:
        return " ".join(form.errors)
    if quote and quote.payable:
        return f"{gettext('Total due now')}: {format_money(quote.total_due)}"
    if quote:
        return str(gettext("This is your current package: there is nothing to change or pay."))
    return ""


def _status(form: Form) -> int:
    """400 for a forged package, period or currency; 422 for what a customer can fix
    (the live summary swaps 422 in, so the reason replaces the previous price)."""
    if form.forged:
        return 400
    if form.billing_needed and request.method == "GET":
        return 200  # the page opens fine: it asks for the billing data before Pay
    return 422 if form.errors else 200


def show(account: Account, form: Form, status: int | None = None, **extra: Any) -> Response:
    """The edit page, or only its summary for an HTMX request: the same markup."""
    ctx = context(account, form, **extra)
    ctx["chosen_provider"] = request.values.get("provider", "")
    if not htmx:
        ctx["catalogue"] = current_app.extensions["pakiet.catalogue"]
        ctx["providers"] = pay.offered(form.values["currency"])
        ctx["saved_method"] = payments.default_method(account.id)
    elif request.form.get("prices_in", form.values["currency"]) != form.values["currency"]:
        # The package cards show prices in another currency than chosen: swap them too,
        # and the payment methods, which take only some currencies.
        ctx["catalogue"] = current_app.extensions["pakiet.catalogue"]
        ctx["providers"] = pay.offered(form.values["currency"])
    if status is None:
        status = _status(form)
    if htmx and not form.fitted and "catalogue" not in ctx:
        # A live summary that swaps in nothing but itself and its live region (nearly every
        # keystroke): the same two printers the template calls, without the template.
        return _live_summary(ctx, status)
    return htmx_util.render("checkout/edit.html", "checkout/_summary.html", status, **ctx)


def _live_summary(ctx: dict[str, Any], status: int) -> Response:
    """``checkout/_summary.html`` for a live summary that swaps in nothing else."""
    form = ctx["form"]
    body = order_lines.live_region(ctx["status_text"], form.values["package"])
    body += order_lines.summary_section(
        form=form,
        quote=ctx["quote"],
        record=ctx["record"],
        tax=ctx["tax"],
        digest=ctx["digest"],
        quoted_selection=ctx["quoted_selection"],
        support_email=ctx["support_email"],
        notice=ctx.get("notice"),
    )
    response = Response(body, status, mimetype="text/html")
    response.vary.add("HX-Request")
    return response


@bp.get("/edit")
@hands_off_to_providers
@login_required
def edit() -> ResponseReturnValue:
    account = current_account()
    form = parse(request.args, account, current_app.extensions["pakiet.catalogue"])
    return show(account, form, idempotency_key=orders.new_idempotency_key())


@bp.post("/summary")
@login_required
@read_only
def summary() -> ResponseReturnValue:
    """The live order summary: the same fragment the full page includes."""
    account = current_account()
    return show(account, parse(request.form, account, current_app.extensions["pakiet.catalogue"]))


@bp.post("/edit")
@hands_off_to_providers
@login_required
def submit() -> ResponseReturnValue:
    """Without JavaScript "Update summary" lands here; "Pay" places the order."""
    account = current_account()
    form = parse(request.form, account, current_app.extensions["pakiet.catalogue"])
    key = request.form.get("idempotency_key", "")
    if not IDEMPOTENCY_KEY.fullmatch(key):
        key = orders.new_idempotency_key()
    if request.form.get("action") != "pay" or form.selection is None:
        return show(account, form, idempotency_key=key)
    try:
        order = orders.place_order(
            pricing=pricing(),
            account=account,
            selection=form.selection,
            shown_digest=request.form.get("quote_digest", ""),
            idempotency_key=key,
            today=today(),
            now=utcnow(),
        )
    except ChangeRefused as exc:
        form.errors.append(refusal_message(exc))
        return show(account, form, idempotency_key=key)
    except orders.QuoteChanged:
        if request.form.get("quoted_selection") != selection_key(form.selection):
            # Pay came before the summary caught up with what the customer typed: nothing
            # changed on our side; they see the price of their new choice before paying.
            notice = gettext(
                "The summary now shows the price of what you entered. Check it, then press Pay."
            )
            return show(account, form, idempotency_key=key, notice=notice)
        notice = gettext(
            "The price or your package changed since you opened this page. "
            "Please check the new summary before you pay."
        )
        return show(account, form, 409, idempotency_key=key, notice=notice)
    except orders.NothingToPay:
        return show(account, form, 400, idempotency_key=key)
    audit.record_customer(
        current_user,
        "place_order",
        object_type="order",
        object_id=order.public_id,
        before={"subscription_version": order.subscription_version},
        after={
            "package": order.package,
            "period": order.period,
            "agents": order.agents,
            "conversations": order.conversations,
            "total": order.total,
        },
    )
    return pay.begin(account, order, request.form.get("provider"))


@bp.get("/orders/<public_id>")
@hands_off_to_providers
@login_required
def order(public_id: str) -> ResponseReturnValue:
    """The payment step of a placed order (another account's order is a 404)."""
    account = current_account()
    placed = orders.find_order(account.id, public_id)
    if placed is None:
        abort(404)
    if payments.unpayable_reason(placed, utcnow()) == payments.TAX_CHANGED:
        # Placed from other billing data: cancelled, with the provider pages it opened.
        payments.close_stale_orders(account_id=account.id, now=utcnow())
        db.session.refresh(placed)
    tax_changed = placed.status == OrderStatus.SUPERSEDED and not orders.tax_holds(
        pricing(), account.billing_info, placed
    )
    try:
        new_quote = orders.revalidate(
            pricing=pricing(), account=account, order=placed, today=today(), now=utcnow()
        )
        refusal = None
    except ChangeRefused as exc:
        new_quote, refusal = None, refusal_message(exc)
    selection = orders.order_selection(placed)
    edit_url = url_for(
        "checkout.edit",
        package=selection.package.value,
        period=selection.period.value,
        agents=selection.agents,
        conversations=selection.conversations,
        currency=selection.currency,
    )
    return render_template(
        "checkout/order.html",
        account=account,
        order=placed,
        failure=pay.render_order_failure(placed),
        saved_method=payments.default_method(account.id),
        record=placed.quote,
        new_quote=new_quote,
        refusal=refusal,
        tax_changed=tax_changed,
        edit_url=edit_url,
        providers=pay.offered(placed.currency),
    )
