"""Billing information (R12) with the VAT-number check (R15): the form and its live status."""

from __future__ import annotations

import unicodedata
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext, ngettext
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

from portal.infra import audit
from portal.infra.extensions import limiter
from portal.infra.i18n import current_language
from portal.infra.models import utcnow
from portal.rules import billing_info, countries, invoicing, payments, vat
from portal.rules.tax import TaxDecision, decide
from portal.web import htmx_util
from portal.web.checkout import pricing, today
from portal.web.helpers import cap_echoed_fields
from portal.web.session_user import current_account

bp = Blueprint("billing", __name__, url_prefix="/billing")

REQUIRED = lazy_gettext("This field is required.")
AT_MOST = lazy_gettext("At most %(max)d characters.")
VIES_SELF_CHECK = "https://ec.europa.eu/taxation_customs/vies/"


def printable(form: FlaskForm, field: Field) -> None:
    """Refuse control characters and undecodable bytes: they cannot be printed on an invoice."""
    for char in field.data or "":
        if char == "\ufffd" or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ValidationError(
                gettext("Use letters, digits and punctuation only: this text goes on invoices.")
            )


def known_country(form: FlaskForm, field: Field) -> None:
    if not countries.is_country(field.data):
        raise ValidationError(gettext("Choose a country from the list."))


class ContactsField(TextAreaField):
    """The billing contacts as typed; ``cleaned`` is what :func:`contacts_valid` made of them."""

    cleaned: tuple[str, ...] = ()


def contacts_valid(form: FlaskForm, field: Field) -> None:
    """At most three more e-mail addresses; the cleaned list is kept as ``field.cleaned``."""
    try:
        field.cleaned = billing_info.clean_contacts(field.data, form.invoice_email.data)
    except billing_info.ContactsRefused as exc:
        field.cleaned = ()
        if exc.reason == "too_many":
            raise ValidationError(
                ngettext(
                    "You can add at most %(num)d address.",
                    "You can add at most %(num)d addresses.",
                    billing_info.MAX_CONTACTS,
                )
            ) from None
        raise ValidationError(
            gettext("“%(address)s” is not a valid e-mail address.", address=exc.address)
        ) from None


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class BillingForm(FlaskForm):
    company_name = StringField(
        lazy_gettext("Company name"),
        filters=[_strip],
        validators=[DataRequired(message=REQUIRED), Length(max=200, message=AT_MOST), printable],
    )
    street = StringField(
        lazy_gettext("Street and number"),
        filters=[_strip],
        validators=[DataRequired(message=REQUIRED), Length(max=200, message=AT_MOST), printable],
    )
    postcode = StringField(
        lazy_gettext("Postcode"),
        filters=[_strip],
        validators=[
            Optional(),
            Length(max=20, message=AT_MOST),
            Regexp(
                r"^[A-Za-z0-9][A-Za-z0-9 -]*$",
                message=lazy_gettext("Use letters, digits, spaces and dashes only."),
            ),
        ],
    )
    city = StringField(
        lazy_gettext("City"),
        filters=[_strip],
        validators=[DataRequired(message=REQUIRED), Length(max=100, message=AT_MOST), printable],
    )
    country = SelectField(
        lazy_gettext("Country"),
        validate_choice=False,  # checked by known_country, with a translated message
        validators=[DataRequired(message=lazy_gettext("Choose a country.")), known_country],
    )
    vat_number = StringField(
        lazy_gettext("VAT number"),
        filters=[_strip],
        validators=[Optional(), Length(max=40, message=AT_MOST), printable],
    )
    invoice_email = EmailField(
        lazy_gettext("E-mail for invoices"),
        filters=[_strip],
        validators=[
            DataRequired(message=REQUIRED),
            Length(max=254, message=AT_MOST),
            Email(
                message=lazy_gettext("Enter a valid e-mail address."), check_deliverability=False
            ),
        ],
    )
    billing_contacts = ContactsField(
        lazy_gettext("Also send invoices to"),
        filters=[_strip],
        validators=[Length(max=1000, message=AT_MOST), contacts_valid],
    )
    apply_to_last_invoice = BooleanField(lazy_gettext("Apply to the last invoice as well"))


def settings() -> vat.VatSettings:
    return vat.settings_for(current_app)


def tax_effect(country: str | None, vat_valid: bool) -> TaxDecision | None:
    """The VAT invoices to this buyer will carry (the same rule as the checkout)."""
    if not country or not countries.is_country(country):
        return None
    p = pricing()
    return decide(
        seller_country=p.seller_country,
        buyer_country=country,
        vat_number_valid=vat_valid,
        on=today(),
        rates=p.vat_rates,
    )


def context(form: BillingForm, view: vat.VatView, **extra: Any) -> dict[str, Any]:
    member_states = pricing().vat_rates.history
    eu, others = countries.choices(current_language(), member_states)
    return {
        "form": form,
        "vat": view,
        "tax": tax_effect(view.country, view.state is vat.State.VALID),
        "eu_countries": eu,
        "other_countries": others,
        "vies_url": VIES_SELF_CHECK,
        "max_contacts": billing_info.MAX_CONTACTS,
        **extra,
    }


def render(form: BillingForm, view: vat.VatView, status: int = 200, **extra: Any) -> Response:
    return htmx_util.render(
        "billing/page.html", "billing/_vat_status.html", status, **context(form, view, **extra)
    )


def _check_limit() -> str:
    return str(current_app.config.get("VAT_CHECK_RATE_LIMIT", "60 per minute"))


@bp.get("")
@login_required
def page() -> ResponseReturnValue:
    account = current_account()
    billing = account.billing_info
    form = BillingForm(obj=billing)
    form.billing_contacts.data = "\n".join(billing.billing_contacts or []) if billing else ""
    if billing is not None and not billing.country and current_language() == "pl":
        form.country.data = "PL"  # the likely answer; shown, not saved until the form is
    return render(form, vat.billing_view(billing, settings().member_states, settings().foreign))


@bp.post("")
@login_required
@limiter.limit(_check_limit)
def save() -> ResponseReturnValue:
    """Save; or, without JavaScript, "Check the VAT number" only checks it."""
    account = current_account()
    form = BillingForm()
    if request.form.get("action") == "check":
        return _check(form)
    if not form.validate():
        cap_echoed_fields(form)
        return render(
            form,
            vat.billing_view(account.billing_info, settings().member_states, settings().foreign),
            400,
        )
    data = billing_info.BillingData(
        company_name=form.company_name.data or "",
        street=form.street.data or "",
        postcode=form.postcode.data or None,
        city=form.city.data or "",
        country=form.country.data or "",
        vat_number=form.vat_number.data or None,
        invoice_email=(form.invoice_email.data or "").lower(),
        billing_contacts=form.billing_contacts.cleaned,
    )
    try:
        saved = billing_info.save(
            account_id=account.id,
            data=data,
            apply_to_last_invoice=bool(form.apply_to_last_invoice.data),
            user_id=current_user.id,
            settings=settings(),
            now=utcnow(),
        )
    except vat.VatNumberError as exc:
        view = vat.problem_view(exc, form.vat_number.data or "", data.country)
        return render(form, view, 400)
    except billing_info.MalformedVatNumber as exc:
        return render(form, exc.view, 400)
    if saved.change is not None:
        audit.record_customer(
            current_user,
            "billing_info",
            object_type="billing_change",
            object_id=saved.change.id,
            before=saved.change.before,
            after=saved.change.after,
        )
    # Tax is decided from the buyer data in force when the payment starts: open orders
    # placed from the old data are cancelled, and the provider pages they opened closed.
    cancelled = payments.close_stale_orders(account_id=account.id, now=utcnow())
    if cancelled:
        flash(
            ngettext(
                "%(num)d open order was cancelled because the new billing information changes "
                "its VAT. Place it again to pay the right amount.",
                "%(num)d open orders were cancelled because the new billing information "
                "changes their VAT. Place them again to pay the right amount.",
                len(cancelled),
            ),
            "error",
        )
    if not saved.changed:
        flash(gettext("Nothing changed: your billing information is as it was."), "success")
    elif saved.change is not None and saved.change.apply_to_last_invoice:
        corrected = invoicing.correct_buyer_now(saved.change.id, now=utcnow())
        if corrected is not None and corrected.kind == "invoice":  # another taxable person
            message = gettext(
                "Saved. Your last invoice was corrected to zero by a credit note and issued "
                "again, with a new number, to the new details (see Invoices)."
            )
        else:
            message = gettext(
                "Saved. Your next invoices use the new details, and your last invoice has a "
                "correcting invoice with them (see Invoices)."
            )
        flash(message, "success")
    else:
        flash(gettext("Saved. Your next invoices use the new details."), "success")
    return redirect(url_for("billing.page"), code=303)


@bp.post("/vat-check")
@login_required
@limiter.limit(_check_limit)
def vat_check() -> ResponseReturnValue:
    """The live check: the status fragment for the number and country in the form."""
    return _check(BillingForm())


def _check(form: BillingForm) -> Response:
    """Check the number and country in the form, nothing else stored but the check's proof.

    HTMX gets the status fragment; without JavaScript the form's "Check" button lands
    here through :func:`save` and gets the whole page, field errors included.
    """
    account = current_account()
    form.validate()
    cap_echoed_fields(form)
    raw = request.form.get("vat_number", "")[:80]
    country = request.form.get("country", "")
    if not countries.is_country(country):
        view = vat.VatView(vat.State.NONE)
    else:
        view = vat.live_check(
            account_id=account.id,
            billing=account.billing_info,
            raw=raw,
            country=country,
            settings=settings(),
            now=utcnow(),
        )
    return render(form, view)
