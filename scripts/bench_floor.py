"""The stack's floor in ``make bench``: the cheapest signed-in answers this stack can give.

The page targets are ratios to a bare Flask app. This app says how much of a page's cost
the stack itself takes before the portal does anything of its own: each route adds one
layer of what every signed-in portal page needs, with the same extensions, the same
database, the same session cookie and the same gunicorn settings as the portal:

- ``/`` answers a constant, as the bare app does (the extensions are installed, unused);
- ``/bytes/<public_id>`` answers with the bytes of a stored invoice PDF held in memory;
- ``/session`` reads the signed session cookie;
- ``/query`` reads the session and makes one round trip to the database (``SELECT 1``);
- ``/user`` loads the signed-in user through Flask-Login (an ORM get by primary key, with
  the portal's "strong" session protection) and answers a constant;
- ``/pdf/<public_id>`` is ``/user`` plus the portal's own query for a stored invoice PDF
  (``invoices.LATEST_PDF``) and its bytes as the answer: the least a PDF download can do;
- ``/page`` is ``/user`` plus a small page rendered by Jinja with five strings translated by
  Flask-Babel: the least an HTML page can do.

Served as ``gunicorn 'bench_floor:from_environment()'`` with the portal's environment
(``PAKIET_DATABASE_URL``, ``PAKIET_SECRET_KEY``).
"""

from __future__ import annotations

import hashlib
import os

from flask import Blueprint, Flask, Response, abort, render_template, request, session
from flask_babel import Babel
from flask_login import LoginManager, current_user, login_required
from jinja2 import DictLoader
from sqlalchemy import bindparam, select, text

from portal.infra.config import ROOT
from portal.infra.extensions import db
from portal.infra.models import Invoice, InvoiceRendering, User
from portal.web.auth import session_identifier
from portal.web.invoices import LATEST_PDF

bp = Blueprint("floor", __name__)

PAGE = """<!doctype html>
<html lang="pl"><head><meta charset="utf-8"><title>{{ _("My package") }}</title></head>
<body><main><h1>{{ _("My package") }}</h1><p>{{ email }}</p>
<a href="/invoices">{{ _("Invoices") }}</a> <a href="/package/edit">{{ _("Change package") }}</a>
<a href="/logout">{{ _("Log out") }}</a></main></body></html>"""


def create_app(secret_key: str, database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        SQLALCHEMY_DATABASE_URI=database_url,
        BABEL_TRANSLATION_DIRECTORIES=str(ROOT / "translations"),
        # Every route only reads: no BEGIN and ROLLBACK around it, as the portal's read-only
        # pages run on PostgreSQL (portal/web/read_only.py).
        SQLALCHEMY_ENGINE_OPTIONS=(
            {"isolation_level": "AUTOCOMMIT"} if database_url.startswith("postgresql") else {}
        ),
    )
    app.jinja_loader = DictLoader({"floor.html": PAGE})  # compiled once, cached like a file's
    db.init_app(app)
    Babel(app, locale_selector=lambda: "pl")
    login = LoginManager(app)
    login.session_protection = "strong"  # as the portal's, with its identifier
    login._session_identifier_generator = session_identifier
    login.user_loader(load_user)
    app.register_blueprint(bp)
    return app


def from_environment() -> Flask:
    """The app for gunicorn (``bench_floor:from_environment()``), set up as the portal is."""
    return create_app(os.environ["PAKIET_SECRET_KEY"], os.environ["PAKIET_DATABASE_URL"])


def load_user(session_id: str) -> User | None:
    """As the portal's: the session carries the user's id and session version."""
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.session_version == int(version) else None


@bp.get("/")
def index() -> str:
    return "ok"


# The newest rendering of an invoice, whoever's: for /bytes only.
ANY_PDF = (
    select(InvoiceRendering.pdf)
    .join(Invoice, InvoiceRendering.invoice_id == Invoice.id)
    .where(Invoice.public_id == bindparam("public_id"))
    .order_by(InvoiceRendering.id.desc())
    .limit(1)
)
_bodies: dict[str, bytes] = {}


@bp.get("/bytes/<public_id>")
def pdf_bytes(public_id: str) -> Response:
    """The same PDF, held in memory: what answering with its bytes costs, no session, no
    database (read once per worker)."""
    if public_id not in _bodies:
        body = db.session.scalar(ANY_PDF, {"public_id": public_id})
        if body is None:
            abort(404)
        _bodies[public_id] = bytes(body)
    return Response(_bodies[public_id], mimetype="application/pdf")


@bp.get("/session")
def signed_session() -> str:
    if "_user_id" not in session:
        abort(401)
    return "ok"


@bp.get("/query")
def query() -> str:
    if "_user_id" not in session:
        abort(401)
    db.session.execute(text("SELECT 1"))
    return "ok"


@bp.get("/user")
@login_required
def user() -> str:
    return "ok"


@bp.get("/pdf/<public_id>")
@login_required
def pdf(public_id: str) -> Response:
    row = db.session.execute(
        LATEST_PDF, {"public_id": public_id, "account_id": current_user.account_id}
    ).one_or_none()
    if row is None:
        abort(404)
    number, body = row
    response = Response(bytes(body), mimetype="application/pdf")
    filename = number.replace("/", "-") + ".pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-cache"
    response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:32])
    response.make_conditional(request)
    return response


@bp.get("/page")
@login_required
def page() -> str:
    return render_template("floor.html", email=current_user.email)
