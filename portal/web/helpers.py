"""What every page shares: names of statuses, formatting filters, errors, the security policy."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from babel.numbers import format_percent
from flask import Response, current_app, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_date, format_time, lazy_gettext
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from portal.infra.i18n import current_language
from portal.infra.models import OrderStatus, SubscriptionStatus, SupportStatus
from portal.rules import dates, periods
from portal.rules.catalogue import PackageCode, Period
from portal.rules.money import Money

V = TypeVar("V", bound=Callable[..., Any])
log = logging.getLogger(__name__)

PACKAGE_NAMES = {
    PackageCode.FREE: lazy_gettext("Free"),
    PackageCode.STANDARD: lazy_gettext("Standard"),
    PackageCode.PRO: lazy_gettext("Pro"),
}
PERIOD_NAMES = {Period.MONTH: lazy_gettext("Monthly"), Period.YEAR: lazy_gettext("Yearly")}
STATUS_NAMES = {
    SubscriptionStatus.ACTIVE: lazy_gettext("Active"),
    SubscriptionStatus.PAST_DUE: lazy_gettext("Payment failed"),
    SubscriptionStatus.SUSPENDED: lazy_gettext("Suspended"),
}

SUPPORT_STATUS_NAMES = {
    SupportStatus.OPEN: lazy_gettext("Waiting for our answer"),
    SupportStatus.ANSWERED: lazy_gettext("Answered"),
    SupportStatus.CLOSED: lazy_gettext("Closed"),
}

ORDER_STATUS_NAMES = {
    OrderStatus.PENDING: lazy_gettext("Awaiting payment"),
    OrderStatus.PAID: lazy_gettext("Paid"),
    OrderStatus.FAILED: lazy_gettext("Payment failed"),
    OrderStatus.REFUNDED: lazy_gettext("Refunded"),
    OrderStatus.SUPERSEDED: lazy_gettext("Replaced by a new price"),
}

ERROR_MESSAGES = {
    400: lazy_gettext("The request could not be understood. Please check what you sent."),
    403: lazy_gettext("You do not have access to this page."),
    404: lazy_gettext("We could not find this page."),
    405: lazy_gettext("This address does not accept that kind of request."),
    413: lazy_gettext("What you sent is too large. Please send less and try again."),
    429: lazy_gettext("Too many attempts. Please wait a minute and try again."),
    500: lazy_gettext("Something went wrong on our side. Nothing was charged; please try again."),
}


def content_security_policy(form_origins: Iterable[str] = ()) -> str:
    """The pages' policy: everything from the portal itself. ``form_origins`` are the
    payment providers' hosted pages, allowed as ``form-action`` targets on the pages whose
    forms lead there (browsers apply ``form-action`` to the redirect that follows a POST)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            " ".join(["form-action 'self'", *form_origins]),
            "base-uri 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy()
HANDS_OFF = "_pakiet_hands_off_to_providers"


def hands_off_to_providers(view: V) -> V:
    """Mark a view whose page holds a form that may end at a payment provider's page
    (Pay, add a method): its policy allows the providers' origins as form targets."""
    setattr(view, HANDS_OFF, True)
    return view


def format_money(value: Money | None, language: str | None = None) -> str:
    return value.format(language or current_language()) if value is not None else "—"


def format_minor(minor: int, currency: str, language: str | None = None) -> str:
    return format_money(Money(int(minor), currency), language)


def format_rate(rate: Decimal | str, language: str | None = None) -> str:
    return _percent(str(rate), language or current_language())


@lru_cache(maxsize=256)
def _percent(rate: str, language: str) -> str:
    """Babel's percent formatting is slow and pure; a page shows few VAT rates."""
    return str(format_percent(Decimal(rate), "#,##0.##%", locale=language))


def format_day(value: dt.date | str | None, language: str | None = None) -> str:
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    if value is None:
        return "—"
    if type(value) is dt.date and language:  # a calendar day: no time zone to apply
        return _long_date(value, language)
    # A moment: Flask-Babel moves it into the user's time zone first, in the same format.
    return str(format_date(value, dates.FORMAT))


def format_moment(value: dt.datetime | None) -> str:
    """A moment written the one way of the language (the ``moment`` filter): its day as
    every page writes days, then the time, both in the user's time zone."""
    if value is None:
        return "—"
    return f"{format_date(value, dates.FORMAT)}, {format_time(value, 'HH:mm')}"


def _long_date(value: dt.date, language: str) -> str:
    return dates.long_day(value, language)


# The template filters take the language from the rendering's context (set once per
# rendering by ``template_globals``) instead of asking Flask-Babel for every value.


@pass_context
def _money_filter(context: Context, value: Money | None) -> str:
    return format_money(value, context.get("current_language"))


@pass_context
def _minor_filter(context: Context, minor: int, currency: str) -> str:
    return format_minor(minor, currency, context.get("current_language"))


@pass_context
def _rate_filter(context: Context, rate: Decimal | str) -> str:
    return format_rate(rate, context.get("current_language"))


def _last_day_filter(end: dt.date | str, start: dt.date | str) -> dt.date:
    """``end`` (exclusive, as stored) as the period's last day: ``end | last_day(start)``."""
    return periods.last_day(_as_date(start), _as_date(end))


def _as_date(value: dt.date | str) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


@pass_context
def _day_filter(context: Context, value: dt.date | str | None) -> str:
    return format_day(value, context.get("current_language"))


def echoed(value: str | None, limit: int) -> str:
    """A refused value as the form shows it again: what fits the field and a little more,
    never a whole 100 kB paste (the refusal says what is allowed)."""
    return (value or "")[: limit + 100]


def cap_echoed_fields(form: Any, limit: int = 300) -> None:
    """Cut the values of a WTForms form's refused text fields before they are shown again."""
    for field in form:
        if field.errors and isinstance(field.data, str) and len(field.data) > limit:
            field.data = echoed(field.data, limit)
            field.raw_data = [field.data]


PAGE_SIZE = 50
MAX_PAGE = 100_000


class ListPage(NamedTuple):
    """One page of a long list (invoices, payments): its number, from 1."""

    number: int = 1
    size: int = PAGE_SIZE
    refused: bool = False  # the ``page`` parameter was not a page number (then page 1)

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def list_page(args: Any, size: int = PAGE_SIZE) -> ListPage:
    """The page a list's ``page`` GET parameter asks for; anything but a whole number from
    1 to MAX_PAGE is refused and reads as page 1."""
    text = str(args.get("page", "") or "").strip()
    if not text:
        return ListPage(1, size)
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE:
        return ListPage(int(text), size)
    return ListPage(1, size, refused=True)


def render_error(code: int, message: str | None = None) -> ResponseReturnValue:
    text = message or str(ERROR_MESSAGES.get(code, ERROR_MESSAGES[400]))
    return render_template("error.html", code=code, message=text), code


def render_error_safely(code: int, message: str | None = None) -> ResponseReturnValue:
    """The error page even when the database is what failed: the session is rolled back
    first; if the page still cannot be rendered (the signed-in user, the banner or the
    language need the database), it is rendered as for a visitor, in the language of the
    cookie or the browser. Errors never cascade into an empty 500."""
    from flask import current_app, g

    from portal.infra.extensions import db

    _rollback(db)
    try:
        return render_error(code, message)
    except Exception:  # the page needs what failed: render it without the database
        log.exception("the error page %s failed; rendering it for a visitor", code)
    _rollback(db)
    g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined]
    try:
        return render_error(code, message)
    except Exception:
        log.exception("the error page %s failed again", code)
        text = message or str(ERROR_MESSAGES.get(code, ERROR_MESSAGES[400]))
        return Response(f"{code} {text}\n", status=code, mimetype="text/plain")


def _rollback(db: Any) -> None:
    try:
        db.session.rollback()
    except Exception:
        log.exception("rolling back after an error failed")


def lifecycle_banner() -> Any:
    """The R10 banner (a ``lifecycle.Banner``) for the customer's pages, or None."""
    from flask import current_app
    from flask_login import current_user

    from portal.infra.models import Subscription, utcnow
    from portal.rules import lifecycle

    if not current_user.is_authenticated or current_user.account_id is None:
        return None
    sub = current_user.subscription  # with the user's row (web/session_user.py)
    settings = lifecycle.settings_for(current_app)
    return lifecycle.banner(sub if isinstance(sub, Subscription) else None, utcnow(), settings)


_PATHS: dict[tuple[str, str, tuple[tuple[str, Any], ...]], str] = {}
_PATHS_MAX = 512  # endpoints and fixed values: a page's links, never its records'


def path_for(endpoint: str, **values: Any) -> str:
    """``url_for`` of a link every page carries (the header's, the front-end files), worked
    out once per process: a path depends only on the endpoint, its values and where the
    app is mounted (``request.script_root``), and ``url_for`` costs 3-4 µs, a dozen a page.
    Not for links to records (each would take a place in the cache): use ``url_for``."""
    key = (request.script_root, endpoint, tuple(sorted(values.items())))
    path = _PATHS.get(key)
    if path is None:
        path = url_for(endpoint, **values)
        if len(_PATHS) < _PATHS_MAX:
            _PATHS[key] = path
    return path


# The holes of a kept header: random per process, so no text a header shows can forge one.
_TOKEN_HOLE = "pakiettoken" + secrets.token_hex(8)
_NEXT_HOLE = "pakietnext" + secrets.token_hex(8)
_HEADERS_MAX = 256
HEADERS = "pakiet.site_headers"


@pass_context
def site_header(context: Context, token: str) -> Markup:
    """The page header of every portal page (``_site_header.html``: the navigation, the
    language switch, log-out), rendered once per process for each of what it depends on
    (issue 26: it was a third of a light page's rendering). The key is everything the
    template reads: the endpoint (the link marked current), the language, who is signed in
    (a customer, staff, an admin), where the chat product's link goes, and where the app is
    mounted. The CSRF token and the language switch's return path, different on every page,
    are filled into the kept HTML, escaped. Kept per app (its configuration names the chat
    product); not kept while templates reload (development)."""
    from flask_login import current_user

    person = current_user._get_current_object()
    signed_in = bool(person.is_authenticated)
    page = request._get_current_object()  # type: ignore[attr-defined]
    key = (
        page.script_root,
        page.endpoint,
        context.get("current_language") or current_language(),
        signed_in,
        signed_in and person.account_id is not None,
        person.role if signed_in else None,
        session.get("chat_return_url") if signed_in else None,
    )
    headers: dict[Any, str] = current_app.extensions.setdefault(HEADERS, {})
    kept = headers.get(key)
    if kept is None:
        kept = render_template("_site_header.html", token=_TOKEN_HOLE, next_path=_NEXT_HOLE).strip()
        if not current_app.jinja_env.auto_reload:
            if len(headers) >= _HEADERS_MAX:
                headers.clear()  # chat links differ per customer: start again, bounded
            headers[key] = kept
    next_path = page.full_path if page.method == "GET" else ""
    return Markup(kept.replace(_TOKEN_HOLE, escape(token)).replace(_NEXT_HOLE, escape(next_path)))
