"""The order summary's table and list of changes, printed in Python from a quote record.

The live summary (R5) answers every keystroke of the checkout form, and its table was most
of its cost: some twenty translated, formatted and escaped sentences, each through Jinja's
call machinery (issue 26: 0.6 ms of the summary's 1.8). These functions print the same
markup in one pass. The live summary, a placed order's page and a renewal paid by hand all
show their prices through them (as the template globals ``summary_table`` and
``change_list``), so the customer sees one table wherever a price is shown.

Every value is escaped here, once (portal/web/printing.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from markupsafe import Markup, escape

from portal.rules import countries
from portal.rules.pricing import Quote
from portal.rules.tax import TaxDecision
from portal.web.helpers import (
    PACKAGE_NAMES,
    PERIOD_NAMES,
    format_day,
    format_minor,
    format_rate,
    path_for,
)
from portal.web.helpers import _last_day_filter as last_day
from portal.web.printing import Texts

Record = Mapping[str, Any]


def summary_table(
    record: Record, treatment: str, country: str | None = None, t: Texts | None = None
) -> Markup:
    """The order summary's table (lines, credit, VAT, total) and the renewal it leads to.
    ``t``: the printing's texts, when a caller has them already."""
    t = t or Texts()
    _, ngettext = t.gettext, t.ngettext
    cur = record["currency"]

    def money(minor: int) -> str:
        return t.money(minor, cur)

    # (Translated outside the f-strings: the catalogue's extraction reads no call inside one.)
    period = _("monthly") if record["period"] == "month" else _("yearly")
    caption, item_heading, quantity_heading = _("Order summary"), _("Item"), _("Quantity")
    unit_heading, amount_heading = _("Unit price"), _("Amount")
    out = [
        '<table class="summary-table">\n'
        f'  <caption class="visually-hidden">{caption}</caption>\n'
        "  <thead>\n"
        f'    <tr><th scope="col">{item_heading}</th><th scope="col">{quantity_heading}</th>'
        f'<th scope="col" class="num unit">{unit_heading}</th>'
        f'<th scope="col" class="num">{amount_heading}</th></tr>\n'
        "  </thead>\n  <tbody>\n"
    ]
    for line in record["lines"]:
        if line["kind"] == "package":
            item = _(
                "%(package)s package, %(period)s",
                package=PACKAGE_NAMES[record["package"]],
                period=period,
            )
            quantity = ngettext("%(num)d agent", "%(num)d agents", line["quantity"])
            unit = _("per agent")
        else:
            included = ngettext(
                "%(num)d conversation per month included",
                "%(num)d conversations per month included",
                record["included_conversations"],
            )
            extra = _("Extra chatbot conversations, %(period)s", period=period)
            item = f"{extra} <small>({included})</small>"
            quantity = ngettext(
                "%(num)d pack of %(size)d",
                "%(num)d packs of %(size)d",
                line["quantity"],
                size=record["conversation_pack"],
            )
            unit = _("per pack")
        price = money(line["unit_price_minor"])
        out.append(
            f'    <tr>\n      <th scope="row">{item}</th>\n      <td>{quantity}</td>\n'
            f'      <td class="num unit">{price} <small>{unit}</small></td>\n'
            f'      <td class="num">{money(line["amount_minor"])}</td>\n    </tr>\n'
        )
    out.append("  </tbody>\n  <tbody>\n")
    start = record["period_start"]
    out.append(
        _row(
            _(
                "Price for the new period, %(start)s – %(end)s",
                start=format_day(start, t.language),
                end=format_day(last_day(record["period_end"], start), t.language),
            ),
            money(record["subtotal_minor"]),
        )
    )
    if record["unused_credit_minor"]:
        said = ngettext(
            "%(num)d unused day of %(days)d × %(paid)s paid for the current period",
            "%(num)d unused days of %(days)d × %(paid)s paid for the current period",
            record["unused_days"],
            days=record["period_days"],
            paid=format_minor(record["credit_base_minor"], cur, t.language),
        )
        credit = _("Credit for unused time")
        out.append(
            _row(
                f"{credit} <small>{said}</small>",
                "−" + money(record["unused_credit_minor"]),
                "credit",
            )
        )
    if record["account_credit_used_minor"]:
        out.append(
            _row(
                _("Account credit used"), "−" + money(record["account_credit_used_minor"]), "credit"
            )
        )
    out.append(_row(_("Net amount due"), money(record["net_due_minor"])))
    rate = format_rate(record["vat_rate"], t.language)
    if treatment == "outside_eu":
        vat = _("VAT: not charged (buyer outside the EU)")
    elif treatment == "reverse_charge":
        reverse = _("VAT %(rate)s: reverse charge", rate=rate)
        who = _("The buyer accounts for the VAT (reverse charge).")
        vat = f"{reverse} <small>{who}</small>"
    elif treatment == "eu_consumer" and country:
        vat = _(
            "VAT %(rate)s (%(country)s)",
            rate=rate,
            country=countries.name(country, t.language),
        )
    else:
        vat = _("VAT %(rate)s", rate=rate)
    out.append(_row(vat, money(record["vat_minor"])))
    total = _("Total due now")
    out.append(
        "  </tbody>\n  <tfoot>\n"
        '    <tr class="total">\n'
        f'      <th scope="row" colspan="3">{total}</th>\n'
        f'      <td class="num"><strong data-testid="total-due">'
        f"{money(record['total_due_minor'])}</strong></td>\n"
        "    </tr>\n  </tfoot>\n</table>\n"
    )
    if record["credit_after_minor"]:
        after = _(
            "Account credit after this change: %(amount)s, used up by your next invoices.",
            amount=format_minor(record["credit_after_minor"], cur, t.language),
        )
        out.append(f"<p>{after}</p>\n")
    renewal = {
        "date": format_day(record["renewal_date"], t.language),
        "amount": format_minor(record["renewal_total_minor"], cur, t.language),
    }
    renewal_credit = record["subtotal_minor"] - record["renewal_net_minor"]
    if renewal_credit:
        said = _(
            "Next renewal on %(date)s: %(amount)s including VAT, "  # one msgid: concatenated
            "after %(credit)s of account credit.",
            credit=format_minor(renewal_credit, cur, t.language),
            **renewal,
        )
    else:
        said = _("Next renewal on %(date)s: %(amount)s including VAT.", **renewal)
    out.append(f"<p>{said}</p>\n")
    return Markup("".join(out))


def _row(label: str, amount: str, css: str | None = None) -> str:
    opening = f'    <tr class="{css}">\n' if css else "    <tr>\n"
    return (
        f'{opening}      <th scope="row" colspan="3">{label}</th>\n'
        f'      <td class="num">{amount}</td>\n    </tr>\n'
    )


def change_list(record: Record, t: Texts | None = None) -> Markup:
    """What the order changes (or that it is the first purchase), in words."""
    t = t or Texts()
    _ = t.gettext
    if record["is_first_purchase"]:
        first = _("First purchase: the package starts as soon as the payment is confirmed.")
        return Markup(f"<p>{first}</p>\n")
    if not record["changes"]:
        return Markup("")
    items = []
    for change in record["changes"]:
        field, before, after = change["field"], change["before"], change["after"]
        if field == "agents":
            said = _("Agents: %(before)d → %(after)d", before=before, after=after)
        elif field == "conversations":
            said = _(
                "Chatbot conversations per month: %(before)d → %(after)d",
                before=before,
                after=after,
            )
        elif field == "package":
            said = _(
                "Package: %(before)s → %(after)s",
                before=PACKAGE_NAMES[before],
                after=PACKAGE_NAMES[after],
            )
        else:
            said = _(
                "Billing period: %(before)s → %(after)s",
                before=PERIOD_NAMES[before],
                after=PERIOD_NAMES[after],
            )
        if change.get("delta"):
            said += f" <strong>({change['delta']:+d})</strong>"
        items.append(f"  <li>{said}</li>\n")
    return Markup(f'<ul class="changes">\n{"".join(items)}</ul>\n')


def live_region(status_text: str, package: str) -> Markup:
    """What a live summary swaps in out of band besides itself: the sentence its live
    region announces, and the package its conversations field was entered for."""
    return Markup(
        '<p id="summary-status" class="visually-hidden" aria-live="polite" '
        f'hx-swap-oob="true">{escape(status_text)}</p>\n'
        '<input type="hidden" id="conversations-for" name="conversations_for" '
        f'value="{escape(package)}" hx-swap-oob="true">\n'
    )


def summary_section(
    *,
    form: Any,
    quote: Quote | None,
    record: Record | None,
    tax: TaxDecision | None,
    digest: str,
    quoted_selection: str,
    support_email: str,
    notice: str | None = None,
) -> Markup:
    """The checkout's order summary (R5): what changes, the table, and the Pay button.

    The Pay button keeps its id: a summary that lands while it has the keyboard focus gives
    the focus back to the new button (htmx restores it by id) instead of the page."""
    t = Texts()
    _ = t.gettext
    heading = _("Order summary")
    out = [
        '<section id="summary" class="summary" aria-labelledby="summary-heading">\n'
        f'  <h2 id="summary-heading">{heading}</h2>\n'
    ]
    if notice:
        out.append(f'  <p class="flash" role="alert">{escape(notice)}</p>\n')
    fitted = form.fitted
    if fitted:
        changed = _(
            "Chatbot conversations changed from %(before)d to %(after)d per month: the "
            "%(package)s package has from %(min)d to %(max)d.",
            before=fitted.before,
            after=fitted.after,
            package=PACKAGE_NAMES[fitted.package],
            min=fitted.minimum,
            max=fitted.maximum,
        )
        out.append(f'  <p class="flash" role="status">{changed}</p>\n')
    if form.errors:
        errors = "".join(f"<li>{escape(error)}</li>" for error in form.errors)
        out.append(f'  <div class="flash flash-error" role="alert">\n    <ul>{errors}</ul>\n')
        if form.support_needed:
            contact = _("Contact support")
            out.append(f'    <p><a href="mailto:{escape(support_email)}">{contact}</a></p>\n')
        if form.billing_needed:
            fill_in = _("Fill in your billing information")
            out.append(f'    <p><a href="{path_for("billing.page")}">{fill_in}</a></p>\n')
        out.append("  </div>\n")
    if quote is None or record is None or tax is None:
        pay = _("Pay")
        out.append(
            '  <button type="submit" id="pay-button" name="action" value="pay" disabled '
            f'aria-disabled="true">{pay}</button>\n</section>\n'
        )
        return Markup("".join(out))
    if quote.nothing_to_change:
        nothing = _("This is your current package: there is nothing to change or pay.")
        out.append(f"  <p>{nothing}</p>\n")
    else:
        out.append(change_list(record, t))
        table = summary_table(record, tax.treatment.value, tax.country, t)
        out.append(f'  <div class="overflow-auto">{table}</div>\n')
        if tax.treatment.value == "eu_consumer":
            charged = _(
                "VAT of %(country)s is charged because we have no VAT number of yours "
                "confirmed in VIES. With one, the reverse charge applies and no VAT is added.",
                country=countries.name(tax.country, t.language),
            )
            billing = _("Billing information")
            out.append(
                f"  <p><small>{charged}\n"
                f'    <a href="{path_for("billing.page")}">{billing}</a></small></p>\n'
            )
    if quote.payable and quote.total_due.minor:
        label = _("Pay %(amount)s", amount=t.amount(quote.total_due))
    elif quote.payable:
        label = _("Confirm the change")
    else:
        label = _("Pay")
    disabled = "" if quote.payable else ' disabled aria-disabled="true"'
    out.append(
        f'  <input type="hidden" name="quote_digest" value="{escape(digest)}">\n'
        f'  <input type="hidden" name="quoted_selection" value="{escape(quoted_selection)}">\n'
        f'  <button type="submit" id="pay-button" name="action" value="pay"{disabled}>'
        f"{label}</button>\n</section>\n"
    )
    return Markup("".join(out))


TEMPLATE_GLOBALS: dict[str, Callable[..., Markup]] = {
    "summary_table": summary_table,
    "change_list": change_list,
    "summary_live_region": live_region,
    "summary_section": summary_section,
}
