"""Contact support (R17): paid accounts write to staff; Free accounts are told it comes with
a paid package. Works with HTMX (the thread or the list is swapped) and without JS."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import current_user, login_required

from portal.infra.extensions import htmx
from portal.infra.models import Account, utcnow
from portal.rules import support
from portal.web import htmx_util
from portal.web.helpers import echoed
from portal.web.session_user import current_account

bp = Blueprint("support", __name__, url_prefix="/support")

REFUSALS = {
    "free_package": lazy_gettext(
        "Customer support is available on paid packages. Buy a package to contact us."
    ),
    "empty": lazy_gettext("Please write your message."),
    "too_long": lazy_gettext(
        "This is too long: a subject can have at most 200 characters and a message at most 5,000."
    ),
}


def _staff_email() -> str:
    config = current_app.config
    return str(config.get("SUPPORT_STAFF_EMAIL") or config["SUPPORT_EMAIL"])


def _list(account: Account, status: int = 200, **extra: Any) -> ResponseReturnValue:
    context: dict[str, Any] = {
        "account": account,
        "available": support.available(account),
        "threads": support.threads(account.id),
        "subject_limit": support.SUBJECT_LIMIT,
        "body_limit": support.BODY_LIMIT,
        "form": {"subject": "", "body": ""},
        "error": None,
        "sent": None,
    }
    context.update(extra)
    return htmx_util.render("support/page.html", "support/_support.html", status, **context)


@bp.get("")
@login_required
def page() -> ResponseReturnValue:
    return _list(current_account())


@bp.post("")
@login_required
def open_request() -> ResponseReturnValue:
    account = current_account()
    form = {"subject": request.form.get("subject", ""), "body": request.form.get("body", "")}
    try:
        thread = support.open_thread(
            account=account,
            user=current_user,
            subject=form["subject"],
            body=form["body"],
            staff_email=_staff_email(),
            now=utcnow(),
        )
    except support.SupportRefused as refused:
        status = 403 if refused.code == "free_package" else 422
        shown = {
            "subject": echoed(form["subject"], support.SUBJECT_LIMIT),
            "body": echoed(form["body"], support.BODY_LIMIT),
        }
        return _list(account, status, form=shown, error=str(REFUSALS[refused.code]))
    if not htmx:
        return redirect(url_for("support.thread", public_id=thread.public_id), 303)
    return _list(account, sent=gettext("Thank you. We will answer here and by e-mail."))


def _thread(public_id: str) -> tuple[Account, Any]:
    account = current_account()
    found = support.find(account.id, public_id)
    if found is None:
        abort(404)
    return account, found


def _show(account: Account, thread: Any, status: int = 200, **extra: Any) -> ResponseReturnValue:
    context: dict[str, Any] = {
        "account": account,
        "thread": thread,
        "available": support.available(account),
        "body_limit": support.BODY_LIMIT,
        "body": "",
        "error": None,
    }
    context.update(extra)
    return htmx_util.render("support/thread.html", "support/_thread.html", status, **context)


@bp.get("/<public_id>")
@login_required
def thread(public_id: str) -> ResponseReturnValue:
    account, found = _thread(public_id)
    return _show(account, found)


@bp.post("/<public_id>")
@login_required
def reply(public_id: str) -> ResponseReturnValue:
    account, found = _thread(public_id)
    body = request.form.get("body", "")
    try:
        support.customer_reply(
            thread=found, user=current_user, body=body, staff_email=_staff_email(), now=utcnow()
        )
    except support.SupportRefused as refused:
        status = 403 if refused.code == "free_package" else 422
        shown = echoed(body, support.BODY_LIMIT)
        return _show(account, found, status, body=shown, error=str(REFUSALS[refused.code]))
    if not htmx:
        return redirect(url_for("support.thread", public_id=found.public_id), 303)
    return _show(account, found)
