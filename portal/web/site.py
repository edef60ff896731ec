"""The web layer put together: blueprints, template filters and globals, error pages and the
security headers of every response (called once by :func:`portal.create_app`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from flask import Flask, Request, Response, abort, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_babel import format_datetime, gettext
from flask_wtf.csrf import CSRFError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from portal.infra.i18n import current_language, template_translations
from portal.web.helpers import (
    CONTENT_SECURITY_POLICY,
    HANDS_OFF,
    ORDER_STATUS_NAMES,
    PACKAGE_NAMES,
    PERIOD_NAMES,
    STATUS_NAMES,
    SUPPORT_STATUS_NAMES,
    _day_filter,
    _last_day_filter,
    _minor_filter,
    _money_filter,
    _rate_filter,
    content_security_policy,
    format_moment,
    lifecycle_banner,
    path_for,
    render_error,
    render_error_safely,
    site_header,
)

# The largest id a table's integer key holds (PostgreSQL's integer): a larger one in a URL
# names nothing, so it does not match the route (404) instead of overflowing the query.
MAX_ID = 2**31 - 1

# A Host header: DNS labels (underscores tolerated, as some internal names have them), an
# IPv4 address or a bracketed IPv6 one, and an optional port.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
VALID_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
BAD_HOST = "pakiet.bad_host"


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` never beyond :data:`MAX_ID`."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


class KeptSerializerSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, the same cookie and the same checks, cheaper to open
    (issue 26): the serializer is made once per secret key (and its fallbacks), not at every
    request; and a cookie already verified in this process is not verified and decoded
    again (its HMAC, base64, zlib and tagged JSON were a sixth of a PDF download): its
    contents are kept with the time it was signed, by the exact cookie text, and handed out
    as a new session each time, as long as the cookie is younger than the session lifetime,
    as itsdangerous requires. Only sessions of plain values (text, numbers, booleans) are
    kept, so no request can change what another one gets."""

    KEPT = 1024  # cookies (the active sessions of a worker); all dropped when full

    def __init__(self) -> None:
        self._kept: tuple[Any, URLSafeTimedSerializer | None] = (None, None)
        self._opened: dict[str, tuple[dict[str, Any], int]] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        kept_keys, serializer = self._kept
        if kept_keys != keys or serializer is None:
            serializer = super().get_signing_serializer(app)
            self._kept = (keys, serializer)
            self._opened = {}  # verified with other keys
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        opened = self._opened
        known = opened.get(cookie)
        if known is not None:
            data, signed_at = known
            age = int(time.time()) - signed_at
            if 0 <= age <= max_age:  # itsdangerous' own limits (TimestampSigner.unsign)
                return self.session_class(data)
        try:
            data, signed = serializer.loads(cookie, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return self.session_class()
        if isinstance(data, dict) and all(type(v) in _PLAIN for v in data.values()):
            if len(opened) >= self.KEPT:
                opened.clear()
            opened[cookie] = (data, int(signed.timestamp()))
        return self.session_class(data)


_PLAIN = frozenset({str, int, float, bool, type(None)})


class HostCheck:
    """WSGI middleware: a malformed Host header (``a..b``) cannot even be routed (Werkzeug
    fails to encode it); it is replaced by a placeholder and the request answered 400."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if host is not None and not VALID_HOST.match(host):
            environ["HTTP_HOST"] = "invalid.host"
            environ[BAD_HOST] = True
        result: Iterable[bytes] = self.wsgi_app(environ, start_response)
        return result


def register(app: Flask) -> None:
    # Before any route is added: every <int:...> of the portal and the staff area.
    app.url_map.converters["int"] = BoundedIntConverter
    app.wsgi_app = HostCheck(app.wsgi_app)  # type: ignore[method-assign]
    app.session_interface = KeptSerializerSessions()

    def refuse_bad_host() -> None:
        if request.environ.get(BAD_HOST):
            abort(400)

    app.before_request_funcs.setdefault(None, []).insert(0, refuse_bad_host)

    from portal.infra import i18n
    from portal.rules import countries
    from portal.web import (
        account,
        assets,
        auth,
        billing,
        checkout,
        compression,
        entitlements,
        history,
        invoices,
        methods,
        order_lines,
        package_card,
        pay,
        portal_sessions,
        printing,
        refunds,
        support,
    )

    app.register_blueprint(assets.bp)
    app.register_blueprint(i18n.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(checkout.bp)
    app.register_blueprint(billing.bp)
    app.register_blueprint(pay.bp)
    app.register_blueprint(methods.bp)
    app.register_blueprint(invoices.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(refunds.bp)
    app.register_blueprint(entitlements.bp)
    app.register_blueprint(portal_sessions.bp)
    app.register_blueprint(support.bp)

    app.jinja_env.filters["money"] = _money_filter
    app.jinja_env.filters["day"] = _day_filter
    app.jinja_env.filters["last_day"] = _last_day_filter
    app.jinja_env.filters["minor"] = _minor_filter
    app.jinja_env.filters["rate"] = _rate_filter
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.filters["moment"] = format_moment
    app.jinja_env.filters["country_name"] = lambda code: countries.name(code, current_language())
    app.jinja_env.globals["describe_method"] = pay.describe
    app.jinja_env.globals["describe_saved_method"] = pay.describe_saved_method
    app.jinja_env.globals["payment_failure"] = pay.failure_message
    app.jinja_env.globals["accepted_methods"] = pay.accepted_methods
    app.jinja_env.globals["lifecycle_banner"] = lifecycle_banner
    app.jinja_env.globals["asset_url"] = assets.asset_url
    app.jinja_env.globals["path_for"] = path_for
    app.jinja_env.globals["site_header"] = site_header
    app.jinja_env.globals.update(order_lines.TEMPLATE_GLOBALS)
    app.jinja_env.globals["package_card"] = package_card.package_card
    app.jinja_env.globals["pager"] = printing.pager
    compression.init_app(app)

    @app.context_processor
    def template_globals() -> dict[str, Any]:
        return {
            **template_translations(),
            "current_language": current_language(),
            "languages": {"pl": "Polski", "en": "English"},
            "package_names": PACKAGE_NAMES,
            "period_names": PERIOD_NAMES,
            "status_names": STATUS_NAMES,
            "order_status_names": ORDER_STATUS_NAMES,
            "support_status_names": SUPPORT_STATUS_NAMES,
        }

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> ResponseReturnValue:
        return render_error(
            400, gettext("This form has expired. Please reload the page and try again.")
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        code = exc.code or 500
        if code < 400:
            return exc
        return render_error_safely(code)

    @app.errorhandler(500)
    def server_error(exc: Exception) -> ResponseReturnValue:
        return render_error_safely(500)

    from portal.plugin_api.registry import registry

    handing_off = content_security_policy(registry(app).hosted_origins)

    @app.after_request
    def security_headers(response: Response) -> Response:
        view = app.view_functions.get(request.endpoint or "")
        policy = handing_off if getattr(view, HANDS_OFF, False) else CONTENT_SECURITY_POLICY
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        # A signed-in person's pages are theirs alone: no cache (browser, proxy) keeps them.
        # Read from the session, not the database, so that it holds on error pages too.
        if response.mimetype == "text/html" and session.get("_user_id") is not None:
            response.headers["Cache-Control"] = "no-store"
        return response
