"""Flask-WTF's CSRF protection, its check on every form post made cheaper (issue 26).

Every POST (a live summary at each keystroke among them) is checked by Flask-WTF's
``before_request`` hook. The check itself is sound; its cost is in what it sets up each
time: a new ``URLSafeTimedSerializer`` (its key derived again), five configuration reads,
and the view's exemption worked out from its module and name. This subclass runs the same
check with the serializer kept per secret key and the exemption kept per endpoint; the
token, its format and the session key are Flask-WTF's, so ``csrf_token()`` in templates,
``FlaskForm`` and the error handler for :class:`flask_wtf.csrf.CSRFError` are unchanged.

The checks and their order are Flask-WTF's ``CSRFProtect.protect`` (Flask-WTF 1.2 and 1.3;
``pyproject.toml`` keeps it below 2):
exempt views and blueprints pass; a request whose method is not checked passes; the token
(from the form, a prefixed form field, or the ``X-CSRFToken``/``X-CSRF-Token`` header) must
be present, the session must hold its raw token, the signature must verify and not be older
than ``WTF_CSRF_TIME_LIMIT`` (``None``: no limit), the two must match; over HTTPS the
referrer must be the same origin.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Flask, current_app, g, request, session
from flask_wtf import csrf as flask_wtf_csrf
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

logger = logging.getLogger("flask_wtf.csrf")  # the messages go where Flask-WTF sends them


class CSRFProtect(flask_wtf_csrf.CSRFProtect):
    """Flask-WTF's ``CSRFProtect`` with a cheaper check on each request (see the module)."""

    def __init__(self, app: Flask | None = None) -> None:
        self._serializers: dict[Any, URLSafeTimedSerializer] = {}
        self._exempt_endpoints: dict[str, bool] = {}
        super().__init__(app)

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        hooks = app.before_request_funcs.setdefault(None, [])
        # Flask-WTF's hook (the last one it added) is replaced by the same check, cheaper.
        library_hook = hooks[-1]
        if getattr(library_hook, "__name__", "") != "csrf_protect":
            raise RuntimeError("Flask-WTF's CSRF hook was not found where it is expected")

        def check_csrf() -> None:
            config = app.config
            if config["WTF_CSRF_ENABLED"] and config["WTF_CSRF_CHECK_DEFAULT"]:
                self.protect(apply_exemptions=True)

        hooks[-1] = check_csrf

    def protect(self, apply_exemptions: bool = False) -> None:
        config = current_app.config
        if request.method not in config["WTF_CSRF_METHODS"]:
            return
        if apply_exemptions:
            endpoint = request.endpoint
            if not endpoint or self._endpoint_exempt(endpoint):
                return
        reason = self._reason_to_refuse(self._get_csrf_token(), config)
        if reason is not None:
            logger.info(reason)
            self._error_response(reason)
        if request.is_secure and config["WTF_CSRF_SSL_STRICT"]:
            if not request.referrer:
                self._error_response("The referrer header is missing.")
            good_referrer = f"https://{request.host}/"
            if not flask_wtf_csrf.same_origin(request.referrer, good_referrer):
                self._error_response("The referrer does not match the host.")
        g.csrf_valid = True  # FlaskForm does not check the token again

    def _endpoint_exempt(self, endpoint: str) -> bool:
        exempt = self._exempt_endpoints.get(endpoint)
        if exempt is None:
            exempt = self._exempt_endpoints[endpoint] = bool(self._is_exempt())
        return exempt

    def exempt(self, view: Any) -> Any:
        self._exempt_endpoints.clear()  # worked out again with the new exemption
        return super().exempt(view)

    def _reason_to_refuse(self, data: str | None, config: Any) -> str | None:
        """Flask-WTF's ``validate_csrf``, answering its reason instead of raising."""
        if not data:
            return "The CSRF token is missing."
        field_name = config["WTF_CSRF_FIELD_NAME"]
        if field_name not in session:
            return "The CSRF session token is missing."
        try:
            token = self._serializer(config).loads(data, max_age=config["WTF_CSRF_TIME_LIMIT"])
        except SignatureExpired:
            return "The CSRF token has expired."
        except BadData:
            return "The CSRF token is invalid."
        if not hmac.compare_digest(session[field_name], token):
            return "The CSRF tokens do not match."
        return None

    def _serializer(self, config: Any) -> URLSafeTimedSerializer:
        secret_key = config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
        if secret_key is None:
            raise RuntimeError("A secret key is required to use CSRF.")
        serializer = self._serializers.get(secret_key)
        if serializer is None:
            serializer = URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token")
            self._serializers = {secret_key: serializer}  # one key in use at a time
        return serializer
