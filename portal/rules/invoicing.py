"""Issuing invoices: gapless numbers, immutable snapshots, stored renderings.

Every settled payment issues exactly one invoice (the database refuses a second one for
the same payment). The number comes from a counter per seller, series and year that is
incremented in the issuing transaction, so a rolled-back issue leaves no gap. The
document is rendered once and stored, never replaced; a note saved later goes on a
customer copy marked as such (set_note). Documents are in the account's language: the
buyer reads them, and Polish law accepts an invoice in a foreign language.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask_babel import force_locale, gettext, ngettext
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from portal.documents.invoice import (
    DocumentKind,
    DocumentLine,
    InvoiceDocument,
    Party,
    Totals,
    VatCategory,
    VatInPln,
)
from portal.infra.extensions import db
from portal.infra.models import (
    UNRENDERED,
    UNRENDERED_SQL,
    Account,
    BillingChange,
    Invoice,
    InvoiceKind,
    InvoiceRendering,
    InvoiceSequence,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    latest_pdf,
)
from portal.plugin_api.contracts import InvoiceIssued, ProviderError
from portal.rules import dates, periods
from portal.rules.money import Money
from portal.rules.tax import new_taxable_person

log = logging.getLogger(__name__)

#: Invoices, corrections and credit notes are numbered in series of their own.
SERIES_SUFFIX = {
    InvoiceKind.INVOICE: "",
    InvoiceKind.CORRECTION: "K",
    InvoiceKind.CREDIT_NOTE: "KN",
}
NOTE_LIMIT = 1000
#: The seller's own currency, in which a foreign-currency invoice also states its VAT.
NATIONAL_CURRENCY = {"PL": "PLN", "CZ": "CZK"}

Renderer = Callable[[InvoiceDocument], tuple[bytes, bytes]]  # -> (PDF with XML, XML)
CopyRenderer = Callable[[InvoiceDocument, bytes], bytes]  # (with a note, issued XML) -> PDF
RateSource = Callable[[str, str, dt.date], Any]  # get_exchange_rate(base, quote, on_date)
TaxOf = Callable[[Account, dt.date], tuple[str, Decimal]]  # (treatment, rate) on a sale date


class InvoiceRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# -- numbering ------------------------------------------------------------------------------


def next_number(seller_key: str, series: str, year: int) -> int:
    """The next number of the counter, inside the caller's transaction (gapless)."""
    for _ in range(2):
        stmt = (
            update(InvoiceSequence)
            .where(
                InvoiceSequence.seller_key == seller_key,
                InvoiceSequence.series == series,
                InvoiceSequence.year == year,
            )
            .values(last_value=InvoiceSequence.last_value + 1)
            .returning(InvoiceSequence.last_value)
        )
        value = db.session.scalar(stmt)
        if value is not None:
            return int(value)
        try:  # the first number of this counter
            with db.session.begin_nested():
                db.session.add(
                    InvoiceSequence(seller_key=seller_key, series=series, year=year, last_value=1)
                )
            return 1
        except IntegrityError:  # another issuer created the counter first: increment it
            continue
    raise RuntimeError("invoice counter could not be claimed")


def format_number(series: str, year: int, seq: int) -> str:
    return f"{series}/{year}/{seq:06d}"


# -- the document ---------------------------------------------------------------------------


def seller_party(seller: Mapping[str, str]) -> Party:
    return Party(
        name=seller["name"],
        street=seller.get("street"),
        postcode=seller.get("postcode"),
        city=seller.get("city"),
        country=seller["country"],
        vat_id=seller.get("vat_id"),
    )


def buyer_party(account: Account) -> Party:
    """The buyer as the invoice names them; InvoiceRefused without a country: no buyer is
    ever taken for a Polish one (payments require the country, so only data changed
    outside the portal's forms meet this, and the invoice waits for the next run)."""
    billing = account.billing_info
    country = billing.country
    if not country:
        raise InvoiceRefused("buyer_country_missing")
    vat_id = billing.vat_number
    if vat_id and not vat_id[:2].isalpha():
        vat_id = ("EL" if country == "GR" else country) + vat_id
    return Party(
        name=billing.company_name,
        street=billing.street,
        postcode=billing.postcode,
        city=billing.city,
        country=country,
        vat_id=vat_id,
        email=billing.invoice_email,
    )


CATEGORY = {
    "domestic": VatCategory.STANDARD,
    "eu_consumer": VatCategory.STANDARD,
    "reverse_charge": VatCategory.REVERSE_CHARGE,
    "outside_eu": VatCategory.OUTSIDE_SCOPE,
}


def _exemption(category: VatCategory) -> str | None:
    if category is VatCategory.REVERSE_CHARGE:
        return str(
            gettext(
                "Reverse charge: VAT to be accounted for by the recipient "
                "(Article 196 of Council Directive 2006/112/EC)."
            )
        )
    if category is VatCategory.OUTSIDE_SCOPE:
        return str(
            gettext(
                "Not subject to VAT in the EU: the place of supply is outside the EU "
                "(Article 44 of Council Directive 2006/112/EC)."
            )
        )
    return None


def _lines(order: Order, language: str) -> tuple[DocumentLine, ...]:
    record = order.quote
    cur = order.currency
    package = gettext(order.package.title())
    first = dt.date.fromisoformat(record["period_start"])
    last = periods.last_day(first, dt.date.fromisoformat(record["period_end"]))
    start, end = (dates.long_day(day, language) for day in (first, last))
    lines: list[DocumentLine] = []

    def add(description: str, quantity: int, unit_minor: int, net_minor: int) -> None:
        lines.append(
            DocumentLine(
                position=len(lines) + 1,
                description=description,
                quantity=Decimal(quantity),
                unit_price=Money(unit_minor, cur),
                net=Money(net_minor, cur),
            )
        )

    period = gettext("monthly") if order.period == "month" else gettext("yearly")
    for line in record["lines"]:
        if line["kind"] == "package":
            text = gettext(
                "%(package)s package (%(period)s), agents, %(start)s – %(end)s",
                package=package,
                period=period,
                start=start,
                end=end,
            )
        else:
            text = ngettext(
                "Extra chatbot conversations, pack of %(size)d a month, %(start)s – %(end)s",
                "Extra chatbot conversations, packs of %(size)d a month, %(start)s – %(end)s",
                line["quantity"],
                size=record["conversation_pack"],
                start=start,
                end=end,
            )
        add(text, line["quantity"], line["unit_price_minor"], line["amount_minor"])
    if record["unused_credit_minor"]:
        applied = min(record["unused_credit_minor"], record["subtotal_minor"])
        text = gettext(
            "Credit for unused time of the previous period (%(unused)d of %(days)d days)",
            unused=record["unused_days"],
            days=record["period_days"],
        )
        add(text, 1, -applied, -applied)
    if record["account_credit_used_minor"]:
        used = record["account_credit_used_minor"]
        add(gettext("Account credit used"), 1, -used, -used)
    return tuple(lines)


def build_document(
    *,
    number: str,
    kind: DocumentKind,
    order: Order,
    account: Account,
    seller: Mapping[str, str],
    issue_date: dt.date,
    language: str,
    rates: RateSource,
    paid: bool = True,
    note: str | None = None,
    corrects: tuple[str, dt.date] | None = None,
    reason: str | None = None,
    tax_point: dt.date | None = None,
) -> InvoiceDocument:
    """The invoice for a paid order, in ``language`` (raises ProviderError without a rate).
    ``tax_point`` is the day a renewal was paid when later than its period's start (a retry
    day): the sale date and the exchange rate's date then follow the payment (art. 19a
    ust. 8, art. 31a: a prepayment's tax point is the day it is received)."""
    record = order.quote
    category = CATEGORY[order.tax_treatment]
    cur = order.currency
    period_start = dt.date.fromisoformat(record["period_start"])
    sale_date = tax_point or period_start
    with force_locale(language):
        lines = _lines(order, language)
        exemption = _exemption(category)
    vat = Money(order.vat_minor, cur)
    vat_in_pln = None
    # Art. 106e ust. 11: the Polish VAT of a foreign-currency invoice, in PLN. Not where no
    # VAT is due (reverse charge, outside the EU: no "VAT in PLN: 0.00"), and not OSS VAT
    # (another member state's tax, declared in euro through OSS, not converted to PLN).
    if (
        seller["country"] == "PL"
        and cur != "PLN"
        and order.tax_treatment == "domestic"
        and vat.minor != 0
    ):
        rate = _rate_of(rates(cur, "PLN", sale_date))
        if rate is None:
            raise ProviderError(f"no PLN exchange rate for {cur} on {sale_date}", retryable=True)
        vat_in_pln = VatInPln(
            amount=Money(vat.minor, "PLN") * rate.rate,
            rate=rate.rate,
            table=rate.table or "",
            rate_date=rate.effective_date,
        )
    # § 4 odst. 5 ZDPH: a Czech seller's foreign-currency invoice states its Czech VAT in CZK
    # at the ČNB rate of the tax-point day. Not OSS VAT, nor where none is due.
    if (
        seller["country"] == "CZ"
        and cur != "CZK"
        and order.tax_treatment == "domestic"
        and vat.minor
    ):
        rate = _rate_of(rates(cur, "CZK", sale_date))
        if rate is None:
            raise ProviderError(f"no CZK exchange rate for {cur} on {sale_date}", retryable=True)
        vat_in_pln = VatInPln(
            amount=Money(vat.minor, "CZK") * rate.rate,
            rate=rate.rate,
            table=rate.table or "",
            rate_date=rate.effective_date,
        )
    total = Money(order.total_minor, cur)
    return InvoiceDocument(
        number=number,
        kind=kind,
        issue_date=issue_date,
        sale_date=sale_date,
        period_start=period_start,
        period_end=dt.date.fromisoformat(record["period_end"]),
        currency=cur,
        language=language,
        seller=seller_party(seller),
        buyer=buyer_party(account),
        lines=lines,
        vat_category=category,
        vat_rate=Decimal(record["vat_rate"]) if category is VatCategory.STANDARD else Decimal(0),
        net_total=Money(order.net_minor, cur),
        vat_total=vat,
        total=total,
        paid=total if paid else Money.zero(cur),
        exemption_reason=exemption,
        corrects=corrects,
        correction_reason=reason,
        note=note,
        vat_in_pln=vat_in_pln,
    )


def _rate_of(answer: Any) -> Any:
    """The rate of a source's answer (``registry.RateAnswer`` carries its plugin too)."""
    return getattr(answer, "rate", None) if hasattr(answer, "plugin") else answer


class _RecordingRates:
    """A rate source that remembers which plugin answered (``registry.RateAnswer``): the
    plugin of the rate printed on a document is stored with it, without asking again."""

    def __init__(self, rates: RateSource) -> None:
        self.rates = rates
        self.plugin: str | None = None

    def __call__(self, base: str, quote: str, on_date: dt.date) -> Any:
        answer = self.rates(base, quote, on_date)
        plugin = getattr(answer, "plugin", None)
        if isinstance(plugin, str):
            self.plugin = plugin[:100]
        return answer


def to_content(doc: InvoiceDocument) -> dict[str, Any]:
    """The document as JSON-safe data (money as minor units, decimals as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Money):
            return {"minor": value.minor, "currency": value.currency}
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in asdict(doc).items()}


def from_content(content: Mapping[str, Any], note: str | None) -> InvoiceDocument:
    def money(data: Mapping[str, Any]) -> Money:
        return Money(int(data["minor"]), str(data["currency"]))

    def day(text: str) -> dt.date:
        return dt.date.fromisoformat(text)

    pln = content.get("vat_in_pln")
    corrects = content.get("corrects")
    before = content.get("buyer_before")
    totals_before = content.get("totals_before")
    return InvoiceDocument(
        number=content["number"],
        kind=DocumentKind(content["kind"]),
        issue_date=day(content["issue_date"]),
        sale_date=day(content["sale_date"]),
        period_start=day(content["period_start"]),
        period_end=day(content["period_end"]),
        currency=content["currency"],
        language=content["language"],
        seller=Party(**content["seller"]),
        buyer=Party(**content["buyer"]),
        lines=tuple(
            DocumentLine(
                position=line["position"],
                description=line["description"],
                quantity=Decimal(line["quantity"]),
                unit_price=money(line["unit_price"]),
                net=money(line["net"]),
                unit_code=line["unit_code"],
            )
            for line in content["lines"]
        ),
        vat_category=VatCategory(content["vat_category"]),
        vat_rate=Decimal(content["vat_rate"]),
        net_total=money(content["net_total"]),
        vat_total=money(content["vat_total"]),
        total=money(content["total"]),
        paid=money(content["paid"]),
        exemption_reason=content.get("exemption_reason"),
        payment_means=content.get("payment_means"),
        corrects=(corrects[0], day(corrects[1])) if corrects else None,
        correction_reason=content.get("correction_reason"),
        note=note,
        vat_in_pln=VatInPln(
            amount=money(pln["amount"]),
            rate=Decimal(pln["rate"]),
            table=pln["table"],
            rate_date=day(pln["rate_date"]),
        )
        if pln
        else None,
        buyer_before=Party(**before) if before else None,
        totals_before=Totals(
            net=money(totals_before["net"]),
            vat=money(totals_before["vat"]),
            total=money(totals_before["total"]),
        )
        if totals_before
        else None,
    )


# -- issuing --------------------------------------------------------------------------------


def clean_note(text: str | None) -> str | None:
    """A note as printed: control characters dropped, trimmed; None when empty."""
    if text is None:
        return None
    cleaned = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    if len(cleaned) > NOTE_LIMIT:
        raise InvoiceRefused("note_too_long")
    return cleaned or None


def _tax_point(
    order: Order, payment_id: int, day_of: Callable[[dt.datetime], dt.date] | None
) -> dt.date | None:
    """The day a renewal was paid, when later than its period's start (a retry day)."""
    if day_of is None or not order.idempotency_key.startswith("renewal-"):
        return None
    settled = db.session.scalar(select(Payment.settled_at).where(Payment.id == payment_id))
    if settled is None:
        return None
    paid_on = day_of(settled)
    return paid_on if paid_on > dt.date.fromisoformat(order.quote["period_start"]) else None


def _rate_asked_first(
    payment_id: int,
    seller: Mapping[str, str],
    rates: RateSource,
    day_of: Callable[[dt.datetime], dt.date] | None = None,
) -> RateSource:
    """The rate source, asked before the payment's row is claimed: a rate source is an
    outside service, and no transaction stays open across its call (security issue,
    point 8). The invoice then takes the rate from this answer; a question it did not
    foresee is asked as before."""
    order = db.session.scalar(
        select(Order).join(Payment, Payment.order_id == Order.id).where(Payment.id == payment_id)
    )
    question = None
    national = NATIONAL_CURRENCY.get(seller["country"])
    if isinstance(order, Order) and national and order.currency != national:
        day = _tax_point(order, payment_id, day_of) or dt.date.fromisoformat(
            order.quote["period_start"]
        )
        question = (order.currency, national, day)
    db.session.rollback()  # nothing was written: the read ends before the call
    answers: dict[tuple[str, str, dt.date], Any] = {}
    if question is not None:
        answers[question] = rates(*question)

    def rate(base: str, quote: str, on_date: dt.date) -> Any:
        key = (base, quote, on_date)
        if key not in answers:
            answers[key] = rates(base, quote, on_date)
        return answers[key]

    return rate


def issue_for_payment(
    *,
    payment_id: int,
    seller: Mapping[str, str],
    language: str,
    render: Renderer,
    rates: RateSource,
    now: dt.datetime,
    today: dt.date,
    day_of: Callable[[dt.datetime], dt.date] | None = None,
) -> Invoice | None:
    """Issue the invoice of a settled payment, once. ``None`` when it already exists or
    another issuer holds the payment (it is issuing this invoice now). ``day_of`` gives the
    calendar day of a moment (the portal's time zone): a renewal paid on a retry day takes
    its tax point from it."""
    rates = _rate_asked_first(payment_id, seller, rates, day_of)
    # The payment's row is the claim: many runners walk the same list of due invoices, and
    # each renders only those it holds (the unique payment_id would refuse a second one,
    # but only after its PDF was rendered in vain).
    payment = db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if payment is None or payment.order_id is None:
        db.session.rollback()  # the claim, if any, ends here
        return None
    existing = db.session.scalar(select(Invoice.id).where(Invoice.payment_id == payment.id))
    if existing is not None:
        db.session.rollback()
        return None
    order = db.session.get(Order, payment.order_id)
    account = db.session.get(Account, payment.account_id)
    assert order is not None and account is not None
    # Settled, or settled and refunded at the provider before the invoice was issued (a
    # refund webhook overtaking the payment's): the sale happened either way.
    refunded_sale = (
        payment.status == PaymentStatus.REFUNDED and order.status == OrderStatus.REFUNDED
    )
    if payment.status != PaymentStatus.PAID and not refunded_sale:
        db.session.rollback()
        return None
    series = seller.get("invoice_series", "FV")
    seller_key = seller.get("vat_id") or seller["name"]
    note = account.invoice_note
    asked = _RecordingRates(rates)
    doc = build_document(
        number="",
        kind=DocumentKind.INVOICE,
        order=order,
        account=account,
        seller=seller,
        issue_date=today,
        language=language,
        rates=asked,
        note=note,
        tax_point=_tax_point(order, payment.id, day_of),
    )
    # The counter's row stays locked until the commit (gapless numbers), so the number is
    # taken in a transaction of its own, with the invoice: no PDF is rendered under the
    # lock, and issuers on many runners render side by side.
    seq = next_number(seller_key, series, today.year)
    number = format_number(series, today.year, seq)
    doc = replace(doc, number=number)
    invoice = Invoice(
        public_id=secrets.token_hex(16),
        account_id=account.id,
        seller_key=seller_key,
        series=series,
        year=today.year,
        seq=seq,
        number=number,
        kind=InvoiceKind.INVOICE.value,
        payment_id=payment.id,
        issue_date=today,
        sale_date=doc.sale_date,
        currency=doc.currency,
        language=language,
        net_minor=doc.net_total.minor,
        vat_minor=doc.vat_total.minor,
        total_minor=doc.total.minor,
        content=to_content(doc),
        xml=UNRENDERED,
        note=note,
        created_at=now,
        rate_plugin=asked.plugin if doc.vat_in_pln is not None else None,
    )
    try:
        db.session.add(invoice)
        db.session.commit()
    except IntegrityError:  # issued concurrently for the same payment: keep theirs
        db.session.rollback()
        return None
    # Then its documents. Should this process stop here, the next run stores them
    # (render_missing); a customer's download meanwhile renders them without storing
    # (documents), a staff download, resend or a note stores them (ensure_rendered).
    _store_documents(invoice.id, doc, render, now)
    return invoice


def _store_documents(
    invoice_id: int, doc: InvoiceDocument | None, render: Renderer, now: dt.datetime
) -> bool:
    """Render and store the PDF and XML of an invoice issued without them, and queue its
    e-mail in the same transaction (R11: no invoice stays unsent). The invoice's row is
    held meanwhile, so it is rendered once: False if another process stored them (or the
    invoice is gone). Commits."""
    from portal.infra import mail

    invoice = db.session.scalar(
        select(Invoice)
        .where(Invoice.id == invoice_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if invoice is None or bytes(invoice.xml) != UNRENDERED:  # stored while we waited
        db.session.rollback()
        return False
    note = issued_note(invoice)  # as issued, whatever note was saved since
    pdf, xml = render(doc or from_content(invoice.content, note))
    invoice.xml = xml
    db.session.add(InvoiceRendering(invoice_id=invoice.id, pdf=pdf, note=note, rendered_at=now))
    mail.queue(
        invoice.account_id, "invoice", key=f"invoice-{invoice.id}", now=now, invoice_id=invoice.id
    )
    db.session.commit()
    return True


def ensure_rendered(invoice: Invoice, *, now: dt.datetime) -> None:
    """Store the documents of an invoice its issuer left without them (a download asks for
    them before the next run): ``invoice`` is refreshed. Commits if it renders."""
    if bytes(invoice.xml) != UNRENDERED:
        return
    _store_documents(invoice.id, None, app_renderer(), now)
    db.session.refresh(invoice)


def documents(invoice: Invoice) -> tuple[bytes, bytes]:
    """(PDF, XML) of an invoice as stored; for one whose documents are not stored yet, the
    same documents rendered now (only the PDF's own timestamps differ from the copy the run
    stores), without writing anything: a download never waits for the run."""
    if bytes(invoice.xml) == UNRENDERED:
        return app_renderer()(from_content(invoice.content, issued_note(invoice)))
    pdf = latest_pdf(invoice.id)
    assert pdf is not None, f"invoice {invoice.id} has its XML but no PDF"
    return pdf, bytes(invoice.xml)


def unrendered() -> list[int]:
    """Invoices whose number is taken but whose documents are not stored (their issuer
    stopped between the two steps)."""
    stmt = select(Invoice.id).where(text(UNRENDERED_SQL)).order_by(Invoice.id)
    return list(db.session.scalars(stmt))


def render_missing(*, now: dt.datetime) -> int:
    """Render, store and e-mail what :func:`unrendered` names; the number rendered. Safe
    on many runners (each invoice is rendered under its row's lock, once)."""
    from portal.infra import mail

    done = 0
    for invoice_id in unrendered():
        # Skip one another runner is rendering now; a later run looks again.
        held = db.session.scalar(
            select(Invoice.id).where(Invoice.id == invoice_id).with_for_update(skip_locked=True)
        )
        db.session.rollback()
        if held is None:
            continue
        if _store_documents(invoice_id, None, app_renderer(), now):
            done += 1
            mail.deliver_pending(now=now, key=f"invoice-{invoice_id}")
    return done


def set_note(
    *, invoice: Invoice, note: str | None, render_copy: CopyRenderer, now: dt.datetime
) -> Invoice:
    """Print a note on the customer's copy of the invoice; the issued document never changes.

    The issued PDF (the first rendering) and XML stay byte for byte as they were issued and
    sent (DESIGN.md section 2). A note saved after issue goes on a customer copy, marked as
    such, that carries the issued XML: the download gives that copy (R11), and the original
    stays downloadable. A note entered before issue (carried over from an earlier invoice)
    is printed on the invoice itself. Two renderings at most are kept: the issued one and
    the latest copy, which a new note replaces (with a new row: a stored rendering never
    changes); a note set back to the issued one (or removed, when the invoice had none)
    drops the copy.
    """
    cleaned = clean_note(note)
    ensure_rendered(invoice, now=now)  # the issued rendering, and its e-mail, come first
    if cleaned == invoice.note:
        return invoice
    renderings = list(
        db.session.scalars(
            select(InvoiceRendering)
            .where(InvoiceRendering.invoice_id == invoice.id)
            .order_by(InvoiceRendering.id)
        )
    )
    invoice.note = cleaned
    copies = renderings[1:]
    if cleaned == issued_note(invoice):  # what was issued is what the customer wants again
        for copy in copies:
            db.session.delete(copy)
    else:
        pdf = render_copy(from_content(invoice.content, cleaned), bytes(invoice.xml))
        # A new row replaces the copy (and any left by earlier versions, which kept every
        # one): a stored rendering never changes, so its id names its bytes (the download
        # cache, portal/web/copy_cache.py, relies on it).
        for copy in copies:
            db.session.delete(copy)
        db.session.add(
            InvoiceRendering(invoice_id=invoice.id, pdf=pdf, note=cleaned, rendered_at=now)
        )
    db.session.commit()
    return invoice


def issued_note(invoice: Invoice) -> str | None:
    """The note printed on the invoice as issued (None for most)."""
    note = invoice.content.get("note")
    return str(note) if note else None


def issued_pdf(invoice: Invoice) -> bytes:
    """The PDF as issued (the first rendering), never a customer copy with a note."""
    if bytes(invoice.xml) == UNRENDERED:
        return app_renderer()(from_content(invoice.content, issued_note(invoice)))[0]
    pdf = db.session.scalar(
        select(InvoiceRendering.pdf)
        .where(InvoiceRendering.invoice_id == invoice.id)
        .order_by(InvoiceRendering.id)
        .limit(1)
    )
    assert pdf is not None, f"invoice {invoice.id} has its XML but no PDF"
    return bytes(pdf)


def issued_event(invoice: Invoice) -> InvoiceIssued:
    return InvoiceIssued(
        account_id=invoice.account_id,
        invoice_id=invoice.id,
        number=invoice.number,
        total=invoice.total,
        issued_at=invoice.created_at,
    )


# -- composition: what the app uses -----------------------------------------------------------


def app_renderer() -> Renderer:
    from portal.documents.pdf import render

    return render


def app_copy_renderer() -> CopyRenderer:
    from portal.documents.pdf import render_customer_copy

    return render_customer_copy


def app_rates() -> RateSource:
    from portal.plugin_api.registry import exchange_rate, registry

    reg = registry()

    def rate(base: str, quote: str, on_date: dt.date) -> Any:
        return exchange_rate(reg, base, quote, on_date)

    return rate


def _after_issue(invoice_id: int, now: dt.datetime) -> None:
    """The issued invoice to its national e-invoicing channel (``portal.rules.einvoicing
    .after_issue``, which the app hands over: that module reads invoices through this one)."""
    from flask import current_app

    after_issue = current_app.extensions.get("pakiet.after_issue")
    if after_issue is not None:
        after_issue(invoice_id, now=now)


def local_today(now: dt.datetime) -> dt.date:
    """The calendar day of ``now`` in the portal's time zone (invoice dates)."""
    from zoneinfo import ZoneInfo

    from flask import current_app

    return now.astimezone(ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])).date()


def issue_now(payment_id: int, *, now: dt.datetime) -> Invoice | None:
    """Issue and e-mail the invoice of a settled payment; failures are retried later."""

    from flask import current_app

    from portal.infra import mail
    from portal.plugin_api.registry import registry

    payment = db.session.get(Payment, payment_id)
    if payment is None:
        return None
    account = db.session.get(Account, payment.account_id)
    assert account is not None
    try:
        invoice = issue_for_payment(
            payment_id=payment_id,
            seller=current_app.config["SELLER"],
            language=mail.account_language(account),
            render=app_renderer(),
            rates=app_rates(),
            now=now,
            today=local_today(now),
            day_of=local_today,
        )
    except (ProviderError, InvoiceRefused) as exc:
        db.session.rollback()
        log.warning("invoice for payment %s postponed: %s", payment_id, exc)
        return None
    if invoice is None:
        return None
    registry().hook.invoice_issued(event=issued_event(invoice))
    # Through KSeF (or another country's channel) before its e-mail leaves, so the copy
    # attached names its national number, or says it was issued in offline mode.
    _after_issue(invoice.id, now)
    # Its e-mail was queued with it (issue_for_payment): send it now, or a later run will.
    mail.deliver_pending(now=now, key=f"invoice-{invoice.id}")
    return invoice


def send(invoice: Invoice, *, now: dt.datetime) -> None:
    """E-mail the invoice with its PDF to the invoice e-mail (R11), through the outbox:
    queued once per invoice, sent now if the SMTP server answers, else by a later run."""
    from portal.infra import mail

    key = f"invoice-{invoice.id}"
    mail.queue(invoice.account_id, "invoice", key=key, now=now, invoice_id=invoice.id)
    db.session.commit()
    mail.deliver_pending(now=now, key=key)


def pending_payments() -> list[int]:
    """Settled payments still without their invoice (a rate or renderer was down)."""
    stmt = (
        select(Payment.id)
        .outerjoin(Invoice, Invoice.payment_id == Payment.id)
        .join(Order, Order.id == Payment.order_id)
        .where(
            (Payment.status == PaymentStatus.PAID)
            | ((Payment.status == PaymentStatus.REFUNDED) & (Order.status == OrderStatus.REFUNDED)),
            Invoice.id.is_(None),
        )
        .order_by(Payment.id)
    )
    return list(db.session.scalars(stmt))


# -- corrections ------------------------------------------------------------------------------


def correct_buyer(
    *,
    change_id: int,
    seller: Mapping[str, str],
    render: Renderer,
    now: dt.datetime,
    today: dt.date,
    tax: TaxOf | None = None,
    national_rate: Any = None,
) -> Invoice | None:
    """R12: the last invoice gets a correcting invoice with the new buyer data.

    The original never changes; the correction is a new document in its own series,
    linked to it, with the same amounts and the reason. Earlier invoices stay as issued.
    Another country or VAT number is another taxable person or tax treatment, not a data
    correction (issue 23, point 4): the last invoice is corrected to zero by a credit note
    and a new invoice is issued to the new buyer (:func:`_reissue`); ``tax`` decides its
    VAT, ``national_rate`` (asked before, outside any transaction) the rate of its VAT in the
    seller's currency when the original had none. Answers the last document issued.
    """
    change = db.session.get(BillingChange, change_id, with_for_update=True, populate_existing=True)
    if change is None or change.applied_at is not None or not change.apply_to_last_invoice:
        return None
    last = db.session.scalar(
        select(Invoice)
        .where(Invoice.account_id == change.account_id, Invoice.kind == InvoiceKind.INVOICE)
        .order_by(Invoice.id.desc())
        .limit(1)
    )
    change.applied_at = now
    if not isinstance(last, Invoice):  # nothing issued yet: the new data simply applies
        db.session.commit()
        return None
    account = db.session.get(Account, change.account_id)
    assert account is not None
    if new_taxable_person(change.before, change.after):
        if tax is None:
            raise ValueError("a change of the taxable person needs the tax decision")
        return _reissue(
            last,
            account,
            seller=seller,
            render=render,
            now=now,
            today=today,
            tax=tax,
            national_rate=national_rate,
        )
    return _issue_linked(
        last,
        InvoiceKind.CORRECTION,
        seller=seller,
        render=render,
        now=now,
        today=today,
        reason=lambda: gettext("Change of the buyer's data at the buyer's request."),
        buyer=buyer_party(account),
    )


def _issue_linked(
    original_row: Invoice,
    kind: InvoiceKind,
    *,
    seller: Mapping[str, str],
    render: Renderer,
    now: dt.datetime,
    today: dt.date,
    reason: Callable[[], str],
    amounts: tuple[int, int, int] | None = None,
    commit: bool = True,
    **changes: Any,
) -> Invoice:
    """A new document in ``kind``'s own series, linked to the original, with its amounts
    (and ``changes`` to the snapshot); ``reason`` is worded in the invoice's language.
    Commits with whatever the caller has pending in the session."""
    original = from_content(original_row.content, None)
    if kind is InvoiceKind.CORRECTION and "buyer" in changes:
        changes.setdefault("buyer_before", original.buyer)  # art. 106j ust. 2: before, after
    if kind is InvoiceKind.CREDIT_NOTE:  # art. 106j: the amounts before and after, per rate
        changes.setdefault(
            "totals_before", Totals(original.net_total, original.vat_total, original.total)
        )
    series = seller.get("invoice_series", "FV") + SERIES_SUFFIX[kind]
    seq = next_number(original_row.seller_key, series, today.year)
    number = format_number(series, today.year, seq)
    with force_locale(original.language):
        text = str(reason())
    doc = replace(
        original,
        number=number,
        kind=DocumentKind(kind.value),
        issue_date=today,
        corrects=(original_row.number, original_row.issue_date),
        correction_reason=text,
        note=None,
        **changes,
    )
    pdf, xml = render(doc)
    linked = Invoice(
        public_id=secrets.token_hex(16),
        account_id=original_row.account_id,
        seller_key=original_row.seller_key,
        series=series,
        year=today.year,
        seq=seq,
        number=number,
        kind=kind.value,
        corrects_id=original_row.id,
        rate_plugin=original_row.rate_plugin,  # the original's rate, printed again
        issue_date=today,
        sale_date=original_row.sale_date,
        currency=original_row.currency,
        language=original_row.language,
        net_minor=amounts[0] if amounts else original_row.net_minor,
        vat_minor=amounts[1] if amounts else original_row.vat_minor,
        total_minor=amounts[2] if amounts else original_row.total_minor,
        content=to_content(doc),
        xml=xml,
        reason=text,
        created_at=now,
    )
    db.session.add(linked)
    db.session.flush()
    db.session.add(InvoiceRendering(invoice_id=linked.id, pdf=pdf, rendered_at=now))
    if commit:
        db.session.commit()
    return linked


def _reissue(
    last: Invoice,
    account: Account,
    *,
    seller: Mapping[str, str],
    render: Renderer,
    now: dt.datetime,
    today: dt.date,
    tax: TaxOf,
    national_rate: Any = None,
) -> Invoice:
    """The last invoice corrected to zero (a credit note of all of it) and issued again,
    under the next number of the invoice series, to the buyer as the billing data now name
    them, with the VAT their data decide on the original sale date. The price paid stays
    what it was: the gross amount is split again at the new rate when the rate differs.
    Both documents and both numbers are committed together (gapless). The new invoice
    points at the one it replaces (``corrects_id``, kind ``invoice``)."""
    original = from_content(last.content, None)
    buyer = buyer_party(account)
    treatment, rate = tax(account, original.sale_date)
    category = CATEGORY[treatment]
    rate = rate if category is VatCategory.STANDARD else Decimal(0)
    series = seller.get("invoice_series", "FV") + SERIES_SUFFIX[InvoiceKind.INVOICE]
    seq = next_number(last.seller_key, series, today.year)
    number = format_number(series, today.year, seq)
    same_rate = category is original.vat_category and rate == original.vat_rate
    cur = original.currency
    lines, net, vat = original.lines, original.net_total, original.vat_total
    with force_locale(original.language):
        exemption = _exemption(category)
        if not same_rate:  # the price paid, split again at the new rate, on one line
            try:
                net_minor, vat_minor = split_gross(original.total.minor, rate)
            except SplitRefused:
                net_minor = int(
                    (Decimal(original.total.minor) / (1 + rate)).to_integral_value(ROUND_HALF_UP)
                )
                vat_minor = original.total.minor - net_minor
            net, vat = Money(net_minor, cur), Money(vat_minor, cur)
            description = "; ".join(
                line.description for line in original.lines if line.net.minor > 0
            )
            lines = (
                DocumentLine(
                    position=1,
                    description=description,
                    quantity=Decimal(1),
                    unit_price=net,
                    net=net,
                ),
            )
        reason = str(
            gettext(
                "Invoice issued to another buyer (another country or VAT number): corrected to "
                "zero and issued again as invoice %(number)s to the buyer's new data.",
                number=number,
            )
        )
    # The VAT in the seller's currency (art. 106e ust. 11, § 4 odst. 5 ZDPH) only where the
    # seller's own VAT is due in another currency, at the rate of the original sale date.
    pln = None
    rate_plugin = None
    national = NATIONAL_CURRENCY.get(seller["country"])
    if treatment == "domestic" and vat.minor and national and cur != national:
        if original.vat_in_pln is not None:
            known = original.vat_in_pln
            pln = replace(known, amount=Money(vat.minor, national) * known.rate)
            rate_plugin = last.rate_plugin  # the original's rate, printed again
        elif _rate_of(national_rate) is not None:
            known_rate = _rate_of(national_rate)
            pln = VatInPln(
                amount=Money(vat.minor, national) * known_rate.rate,
                rate=known_rate.rate,
                table=known_rate.table or "",
                rate_date=known_rate.effective_date,
            )
            rate_plugin = getattr(national_rate, "plugin", None)
    _issue_linked(
        last,
        InvoiceKind.CREDIT_NOTE,
        seller=seller,
        render=render,
        now=now,
        today=today,
        reason=lambda: reason,
        commit=False,
    )
    doc = replace(
        original,
        number=number,
        kind=DocumentKind.INVOICE,
        issue_date=today,
        buyer=buyer,
        lines=lines,
        vat_category=category,
        vat_rate=rate,
        net_total=net,
        vat_total=vat,
        total=original.total,
        paid=original.total,
        exemption_reason=exemption,
        corrects=None,
        correction_reason=None,
        note=None,
        vat_in_pln=pln,
        buyer_before=None,
        totals_before=None,
    )
    pdf, xml = render(doc)
    reissued = Invoice(
        public_id=secrets.token_hex(16),
        account_id=last.account_id,
        rate_plugin=rate_plugin[:100] if isinstance(rate_plugin, str) else None,
        seller_key=last.seller_key,
        series=series,
        year=today.year,
        seq=seq,
        number=number,
        kind=InvoiceKind.INVOICE.value,
        corrects_id=last.id,  # issued again for it: a refund of the payment credits this one
        issue_date=today,
        sale_date=last.sale_date,
        currency=cur,
        language=last.language,
        net_minor=net.minor,
        vat_minor=vat.minor,
        total_minor=original.total.minor,
        content=to_content(doc),
        xml=xml,
        created_at=now,
    )
    db.session.add(reissued)
    db.session.flush()
    db.session.add(InvoiceRendering(invoice_id=reissued.id, pdf=pdf, rendered_at=now))
    db.session.commit()
    return reissued


def correct_buyer_now(change_id: int, *, now: dt.datetime) -> Invoice | None:
    """The app's call after a billing change: issue, announce and send the correction (or
    the credit note to zero and the invoice issued again, for another taxable person)."""

    from flask import current_app

    from portal.plugin_api.registry import registry
    from portal.rules import orders

    pricing = orders.current_pricing()

    def tax(account: Account, on: dt.date) -> tuple[str, Decimal]:
        decision = orders.tax_decision(pricing, account.billing_info, on)
        return decision.treatment.value, decision.rate

    seller = current_app.config["SELLER"]
    national_rate = None
    national = NATIONAL_CURRENCY.get(seller["country"])
    change = db.session.get(BillingChange, change_id)
    last = (
        db.session.execute(
            select(Invoice.currency, Invoice.sale_date)
            .where(Invoice.account_id == change.account_id, Invoice.kind == InvoiceKind.INVOICE)
            .order_by(Invoice.id.desc())
            .limit(1)
        ).first()
        if change is not None and new_taxable_person(change.before, change.after)
        else None
    )
    before = db.session.scalar(select(func.max(Invoice.id)))
    db.session.rollback()  # the reads end before the rate source is asked
    if last is not None and national and last.currency != national:
        try:
            national_rate = app_rates()(last.currency, national, last.sale_date)
        except ProviderError as exc:  # the invoice issued again then lacks the line
            log.warning("no %s rate for the invoice issued again: %s", national, exc)
    latest = correct_buyer(
        change_id=change_id,
        seller=seller,
        render=app_renderer(),
        now=now,
        today=local_today(now),
        tax=tax,
        national_rate=national_rate,
    )
    if latest is not None:
        issued = db.session.scalars(
            select(Invoice)
            .where(Invoice.account_id == latest.account_id, Invoice.id > (before or 0))
            .order_by(Invoice.id)
        ).all()
        for document in issued:
            registry().hook.invoice_issued(event=issued_event(document))
            _after_issue(document.id, now)
            send(document, now=now)
    return latest


def issue_credit_note(
    *,
    invoice_id: int,
    seller: Mapping[str, str],
    render: Renderer,
    now: dt.datetime,
    today: dt.date,
) -> Invoice:
    """R14: the credit note (code 381) for a refunded invoice, in its own series.

    A new document linked to the original (``corrects_id``), with the original's lines
    and totals as they stand: positive amounts, since the type code carries the sign.
    The reason is in the invoice's language. Committed with whatever the caller has
    pending in the session (the refund's return to Free), so both happen or neither.
    """
    original_row = db.session.get(Invoice, invoice_id)
    assert original_row is not None
    return _issue_linked(
        original_row,
        InvoiceKind.CREDIT_NOTE,
        seller=seller,
        render=render,
        now=now,
        today=today,
        reason=lambda: gettext(
            "Full refund of the first payment for the package, at the buyer's request "
            "within 15 days of the payment."
        ),
    )


class SplitRefused(Exception):
    """A gross amount that no net amount plus its rounded VAT adds up to."""

    def __init__(self, nearest: tuple[int, int]) -> None:
        super().__init__(nearest)
        self.nearest = nearest


def split_gross(gross_minor: int, rate: Decimal) -> tuple[int, int]:
    """(net, VAT) in minor units with net + round_half_up(net x rate) == gross exactly, as
    EN 16931 wants the VAT of a line total; SplitRefused names the nearest amounts."""
    guess = int((Decimal(gross_minor) / (1 + rate)).to_integral_value(ROUND_HALF_UP))

    def vat_of(net: int) -> int:
        return int((Decimal(net) * rate).to_integral_value(ROUND_HALF_UP))

    for net in range(max(guess - 3, 0), guess + 4):
        if net + vat_of(net) == gross_minor:
            return net, vat_of(net)
    reachable = sorted({n + vat_of(n) for n in range(max(guess - 4, 0), guess + 5)})
    below = max((g for g in reachable if g < gross_minor), default=0)
    above = min((g for g in reachable if g > gross_minor), default=gross_minor + 1)
    raise SplitRefused((below, above))


def issue_partial_credit_note(
    *,
    invoice_id: int,
    gross_minor: int,
    reason: str,
    seller: Mapping[str, str],
    render: Renderer,
    now: dt.datetime,
    today: dt.date,
) -> Invoice:
    """A credit note for part of an invoice (a staff refund): one line with the refunded
    net amount and its VAT at the invoice's rate. Commits with the caller's pending work."""
    original_row = db.session.get(Invoice, invoice_id)
    assert original_row is not None
    original = from_content(original_row.content, None)
    net_minor, vat_minor = split_gross(gross_minor, original.vat_rate)
    currency = original.currency
    net = Money(net_minor, currency)
    vat = Money(vat_minor, currency)
    total = net + vat
    with force_locale(original.language):
        description = str(gettext("Partial refund of invoice %(number)s", number=original.number))
    line = DocumentLine(
        position=1, description=description, quantity=Decimal(1), unit_price=net, net=net
    )
    pln = original.vat_in_pln
    if pln is not None:
        pln = replace(pln, amount=Money(vat_minor, "PLN") * pln.rate)
    return _issue_linked(
        original_row,
        InvoiceKind.CREDIT_NOTE,
        seller=seller,
        render=render,
        now=now,
        today=today,
        reason=lambda: reason,
        amounts=(net_minor, vat_minor, total.minor),
        lines=(line,),
        net_total=net,
        vat_total=vat,
        total=total,
        paid=total,
        vat_in_pln=pln,
    )
