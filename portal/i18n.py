"""Language choice: the user's preference, else the switcher's cookie, else the browser."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_login import current_user

from portal.extensions import db

bp = Blueprint("i18n", __name__)


def supported(code: str | None) -> str | None:
    return code if code in current_app.config["LANGUAGES"] else None


def select_locale() -> str:
    languages: list[str] = current_app.config["LANGUAGES"]
    if current_user.is_authenticated and supported(current_user.language):
        return str(current_user.language)
    cookie = supported(request.cookies.get(current_app.config["LANGUAGE_COOKIE"]))
    if cookie:
        return cookie
    best = request.accept_languages.best_match(languages)
    return best or current_app.config["BABEL_DEFAULT_LOCALE"]


def current_language() -> str:
    return str(get_locale() or current_app.config["BABEL_DEFAULT_LOCALE"])


def safe_next(target: str | None, fallback: str) -> str:
    """Only same-site relative paths; anything else goes to ``fallback``."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


@bp.post("/language")
def set_language() -> ResponseReturnValue:
    """The language switcher: remembered on the user, and in a cookie for visitors."""
    code = supported(request.form.get("language"))
    response = redirect(safe_next(request.form.get("next"), url_for("account.package")))
    if code is None:  # an unknown code is ignored
        return response
    if current_user.is_authenticated:
        current_user.language = code
        db.session.commit()
    response.set_cookie(
        current_app.config["LANGUAGE_COOKIE"],
        code,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response
