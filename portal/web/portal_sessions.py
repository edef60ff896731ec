"""The link of a portal session: the chat product's customer arrives signed in.

``GET /portal-session/<token>`` shows a page with a button; only its POST (with CSRF) uses
the link, so a mail or chat scanner that follows every link does not spend it (as the
sign-up confirmation in ``auth.py``). The POST marks the link used, once, starts a fresh
session for the account's user (as a log-in does: bound to the browser, revocable) and
lands on the page the chat product chose. The return URL, when given, is kept in the
session for the "Back to ..." link of every page (``base.html``).
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, session, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm

from portal.infra.models import utcnow
from portal.rules import portal_sessions
from portal.rules.portal_sessions import Unusable
from portal.web.auth import _start_session

bp = Blueprint("portal_sessions", __name__)

#: The session key of the chat product's return URL (``base.html`` reads it).
RETURN_URL = "chat_return_url"

LANDING = {"package": "account.package", "checkout": "checkout.edit", "invoices": "invoices.page"}


def _unusable(reason: Unusable) -> ResponseReturnValue:
    status = 404 if reason == Unusable.UNKNOWN else 410
    response = render_template("portal_sessions/invalid.html", reason=reason.value)
    return response, status, {"Cache-Control": "no-store"}


@bp.route("/portal-session/<token>", methods=["GET", "POST"])
def open_link(token: str) -> ResponseReturnValue:
    row, user, reason = portal_sessions.find(token[:200], utcnow())
    if reason is not None or row is None or user is None:
        return _unusable(reason or Unusable.UNKNOWN)
    form = FlaskForm()
    if form.validate_on_submit():
        if not portal_sessions.use(row, utcnow()):
            return _unusable(Unusable.USED)  # another click, a moment earlier
        page, return_url = row.page, row.return_url
        _start_session(user)
        if return_url:
            session[RETURN_URL] = return_url
        return redirect(url_for(LANDING.get(page, "account.package")))
    return (
        render_template("portal_sessions/open.html", form=form, email=user.email),
        200,
        {"Cache-Control": "no-store"},
    )
