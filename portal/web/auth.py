"""Sign up, log in, log out; forgotten and changed passwords.

Sessions can be revoked: the session keeps the user's ``session_version`` with the id
(:meth:`User.get_id`) and the user loader refuses one that no longer matches. Logging out
bumps the version (so every session of the user ends, on every device), as do a new
password (every session but the one that set it) and staff revoking the account's sessions.

Password-reset links are signed (itsdangerous, SECRET_KEY) and carry the user's id, the time
they were issued and a fingerprint of the current password hash: they expire after
``PASSWORD_RESET_MAX_AGE`` seconds and stop working once the password has changed, so each
link works once. No table is needed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeSerializer
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from portal.infra import mail
from portal.infra.extensions import db, limiter
from portal.infra.i18n import current_language, home_url, safe_next
from portal.infra.models import User, utcnow
from portal.rules import accounts
from portal.web import session_user

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

#: How long a password-reset link works.
RESET_MAX_AGE = dt.timedelta(hours=1)

MIN_PASSWORD = 10
COMMON_PASSWORDS = frozenset(
    {"1234567890", "qwertyuiop", "password12", "password123", "haslo12345", "zaq12wsxcde"}
)
REQUIRED = lazy_gettext("This field is required.")


def strong_password(form: FlaskForm, field: PasswordField) -> None:
    value = field.data or ""
    email_field = getattr(form, "email", None)
    email = (email_field.data if email_field is not None else None) or getattr(
        form, "user_email", ""
    )
    email = (email or "").strip().lower()
    if (
        len(value) < MIN_PASSWORD
        or value.lower() in COMMON_PASSWORDS
        or len(set(value)) < 4
        or (email and value.lower() == email)
    ):
        raise ValidationError(
            gettext(
                "Choose a password of at least %(num)d characters that is not easy to guess.",
                num=MIN_PASSWORD,
            )
        )


class SignupForm(FlaskForm):
    company = StringField(
        lazy_gettext("Company name"),
        validators=[
            DataRequired(message=REQUIRED),
            Length(max=200, message=lazy_gettext("At most %(max)d characters.")),
        ],
    )
    email = EmailField(
        lazy_gettext("E-mail"),
        validators=[
            DataRequired(message=REQUIRED),
            Length(max=254, message=lazy_gettext("At most %(max)d characters.")),
            Email(
                message=lazy_gettext("Enter a valid e-mail address."), check_deliverability=False
            ),
        ],
    )
    password = PasswordField(
        lazy_gettext("Password"), validators=[DataRequired(message=REQUIRED), strong_password]
    )
    confirm = PasswordField(
        lazy_gettext("Repeat the password"),
        validators=[
            DataRequired(message=REQUIRED),
            EqualTo("password", message=lazy_gettext("The passwords do not match.")),
        ],
    )


class LoginForm(FlaskForm):
    email = EmailField(lazy_gettext("E-mail"), validators=[DataRequired(message=REQUIRED)])
    password = PasswordField(lazy_gettext("Password"), validators=[DataRequired(message=REQUIRED)])


class ForgotForm(FlaskForm):
    email = EmailField(
        lazy_gettext("E-mail"),
        validators=[
            DataRequired(message=REQUIRED),
            Length(max=254, message=lazy_gettext("At most %(max)d characters.")),
            Email(
                message=lazy_gettext("Enter a valid e-mail address."), check_deliverability=False
            ),
        ],
    )


class NewPasswordForm(FlaskForm):
    user_email = ""  # the password may not be the address (strong_password)
    password = PasswordField(
        lazy_gettext("New password"), validators=[DataRequired(message=REQUIRED), strong_password]
    )
    confirm = PasswordField(
        lazy_gettext("Repeat the new password"),
        validators=[
            DataRequired(message=REQUIRED),
            EqualTo("password", message=lazy_gettext("The passwords do not match.")),
        ],
    )


class ResendForm(ForgotForm):
    """The address a new confirmation link goes to."""


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField(
        lazy_gettext("Current password"), validators=[DataRequired(message=REQUIRED)]
    )


def init_login(app: Flask, manager: LoginManager) -> None:
    manager.init_app(app)
    manager.login_view = "auth.login"
    manager.login_message = lazy_gettext("Please log in to see this page.")
    manager.session_protection = "strong"
    # Flask-Login's own identifier trusts X-Forwarded-For from anyone; this one takes the
    # client address Werkzeug gives, which is the proxy's view only with PROXY_HOPS > 0.
    manager._session_identifier_generator = session_identifier

    # One narrow row per request, with the session checks (portal/web/session_user.py).
    manager.user_loader(session_user.load)


def session_identifier() -> str:
    """The browser a session belongs to ("strong" session protection): the client's
    address (as the socket or, behind PROXY_HOPS proxies, ProxyFix sees it) and agent."""
    base = f"{request.remote_addr}|{request.headers.get('User-Agent')}"
    return hashlib.sha512(base.encode("utf-8", errors="replace")).hexdigest()


def _start_session(user: User) -> None:
    # A fresh session at log-in: nothing from before survives (no fixation).
    session.clear()
    login_user(user)


CONFIRM_MAX_AGE = dt.timedelta(hours=24)


def _signup_limit() -> str:
    return str(
        current_app.config.get("SIGNUP_RATE_LIMIT") or current_app.config["LOGIN_RATE_LIMIT"]
    )


def _signup_address_limit() -> str:
    """Per address as well as per client: one address cannot be flooded with e-mails
    from many clients."""
    return _signup_limit()


def _submitted_address() -> str:
    return accounts.normalise_email(str(request.form.get("email", "")))[:254] or "-"


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_signup_limit, methods=["POST"])
@limiter.limit(_signup_address_limit, methods=["POST"], key_func=_submitted_address)
def signup() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(home_url())
    form = SignupForm()
    if form.validate_on_submit():
        # The answer is the same whether the address is registered or not (a page that
        # told would let anyone test addresses): both get an e-mail, only the owner of the
        # address learns which.
        try:
            user = accounts.register_account(
                catalogue=current_app.extensions["pakiet.catalogue"],
                company=form.company.data or "",
                email=form.email.data or "",
                password=form.password.data or "",
                language=current_language(),
                now=utcnow(),
            )
        except accounts.EmailTaken:
            owner = accounts.find_user(form.email.data or "")
            if owner is not None:
                _send(
                    owner.email,
                    "account_exists",
                    _language_of(owner),
                    link=_reset_link(owner),
                    login_link=_public(url_for("auth.login")),
                )
        else:
            _send_confirmation(user)
        return redirect(url_for("auth.signup_sent"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/signup.html", form=form), status


@bp.get("/signup/sent")
def signup_sent() -> ResponseReturnValue:
    return render_template("auth/signup_sent.html", form=ResendForm())


CONFIRM_SALT = "pakiet-email-confirm"


def confirm_token(user: User, now: dt.datetime) -> str:
    """The link of the sign-up e-mail: signed, for 24 hours, tied to the password (a new
    password ends it) and single-use (a confirmed address is not confirmed again)."""
    return _user_token(CONFIRM_SALT, user, now)


def user_to_confirm(token: str, now: dt.datetime) -> User | None:
    user = _user_of_token(CONFIRM_SALT, token, now, CONFIRM_MAX_AGE)
    return user if user is not None and user.email_confirmed_at is None else None


def confirm_path(user: User) -> str:
    """The path of the link the sign-up e-mail carries (the test kit follows it too)."""
    return url_for("auth.confirm_email", token=confirm_token(user, utcnow()))


def confirm_link(user: User) -> str:
    return _public(confirm_path(user))


def _send_confirmation(user: User) -> None:
    _send(user.email, "confirm_email", _language_of(user), link=confirm_link(user))


@bp.route("/signup/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(_signup_limit, methods=["POST"])
def confirm_email(token: str) -> ResponseReturnValue:
    # The link opens a page with a button: a mail scanner that follows every link (GET)
    # does not confirm the address for its owner.
    user = user_to_confirm(token, utcnow())
    if user is None:
        return render_template("auth/confirm_invalid.html", form=ResendForm()), 400
    form = FlaskForm()
    if form.validate_on_submit():
        accounts.confirm_email(user, utcnow())
        db.session.commit()
        _start_session(user)
        flash(gettext("Welcome to Pakiet! Your account is on the Free package."), "success")
        return redirect(url_for("account.package"))
    return render_template("auth/confirm.html", form=form, email=user.email)


@bp.post("/signup/resend")
@limiter.limit(_signup_limit)
@limiter.limit(_signup_address_limit, key_func=_submitted_address)
def resend_confirmation() -> ResponseReturnValue:
    form = ResendForm()
    if not form.validate_on_submit():
        return render_template("auth/signup_sent.html", form=form), 400
    user = accounts.find_user(form.email.data or "")
    if user is not None and user.email_confirmed_at is None:
        _send_confirmation(user)
    # The same answer for every address.
    return redirect(url_for("auth.signup_sent"))


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(home_url())
    form = LoginForm()
    error = None
    unconfirmed = False
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data or "", form.password.data or "")
        if user is not None and user.email_confirmed_at is None:
            # Only someone who knows the password learns that the address is registered.
            unconfirmed = True
            error = gettext(
                "Confirm your e-mail address first: open the link we sent you when you "
                "signed up. It works for 24 hours."
            )
        elif user is not None:
            _start_session(user)
            return redirect(safe_next(request.args.get("next"), home_url()))
        else:
            error = gettext("Incorrect e-mail or password.")
    status = 400 if form.is_submitted() else 200
    resend = ResendForm(formdata=None, email=form.email.data) if unconfirmed else None
    return render_template("auth/login.html", form=form, error=error, resend=resend), status


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    # The cookie is worthless from now on, copies of it included: this ends the user's
    # sessions on other devices too.
    accounts.revoke_sessions(user_id=current_user.id)
    db.session.commit()
    logout_user()
    session.clear()
    flash(gettext("You have been logged out."), "success")
    return redirect(url_for("auth.login"))


# -- passwords ---------------------------------------------------------------------------------


RESET_SALT = "pakiet-password-reset"


def _fingerprint(user: User) -> str:
    """Changes whenever the password does: a link stops working once it has been used."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def _user_token(salt: str, user: User, now: dt.datetime) -> str:
    """A signed token naming the user, when it was made, and a fingerprint of the password
    (a link of an e-mail: reset, confirmation; ``salt`` keeps one kind from passing as the
    other). No table is needed."""
    serializer = URLSafeSerializer(current_app.config["SECRET_KEY"], salt=salt)
    return str(serializer.dumps({"u": user.id, "p": _fingerprint(user), "t": int(now.timestamp())}))


def _user_of_token(salt: str, token: str, now: dt.datetime, max_age: dt.timedelta) -> User | None:
    """The user a token of ``_user_token`` is for, or ``None`` when it is forged, older
    than ``max_age`` or its password has changed since."""
    serializer = URLSafeSerializer(current_app.config["SECRET_KEY"], salt=salt)
    try:
        data: Any = serializer.loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    user_id, fingerprint, issued = data.get("u"), data.get("p"), data.get("t")
    if not isinstance(user_id, int) or not isinstance(issued, int):
        return None
    age = now - dt.datetime.fromtimestamp(issued, dt.UTC)
    if age < dt.timedelta(0) or age > max_age:
        return None
    user = db.session.get(User, user_id)
    if user is None or not hmac.compare_digest(str(fingerprint), _fingerprint(user)):
        return None
    return user


def reset_token(user: User, now: dt.datetime) -> str:
    return _user_token(RESET_SALT, user, now)


def user_for_token(token: str, now: dt.datetime) -> User | None:
    """The user a reset link is for, or ``None`` when it is forged, expired or used."""
    return _user_of_token(RESET_SALT, token, now, RESET_MAX_AGE)


def _language_of(user: User) -> str:
    return str(user.language or current_language())


def _send(to: str, name: str, language: str, **context: Any) -> None:
    """At once, like the support e-mails; a mail server that is down is logged, and the
    page answers the same (the customer can ask again)."""
    try:
        mail.send_to_address(to, name, language, **context)
    except OSError as exc:
        log.warning("%s e-mail not sent: %s", name, exc)


def _public(path: str) -> str:
    """A link for an e-mail on PUBLIC_URL, never on the request's Host header (which a
    client chooses: a reset link on the attacker's host would hand over the token)."""
    return str(current_app.config["PUBLIC_URL"]).rstrip("/") + path


def _reset_link(user: User) -> str:
    return _public(url_for("auth.reset_password", token=reset_token(user, utcnow())))


def _password_limit() -> str:
    return str(
        current_app.config.get("PASSWORD_RATE_LIMIT") or current_app.config["LOGIN_RATE_LIMIT"]
    )


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_password_limit, methods=["POST"])
def forgot_password() -> ResponseReturnValue:
    form = ForgotForm()
    if form.validate_on_submit():
        user = accounts.find_user(form.email.data or "")
        if user is not None:
            _send(user.email, "password_reset", _language_of(user), link=_reset_link(user))
        # The same answer whether the address is known or not.
        flash(
            gettext(
                "If an account uses this address, we have sent it a link to set a new "
                "password. The link works for one hour."
            ),
            "success",
        )
        return redirect(url_for("auth.login"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/forgot.html", form=form), status


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(_password_limit, methods=["POST"])
def reset_password(token: str) -> ResponseReturnValue:
    user = user_for_token(token, utcnow())
    if user is None:
        return render_template("auth/reset_invalid.html"), 400
    form = NewPasswordForm()
    form.user_email = user.email
    if form.validate_on_submit():
        user.password_hash = accounts.hash_password(form.password.data or "")
        user.session_version += 1  # every session of the user ends
        db.session.commit()
        if current_user.is_authenticated:
            logout_user()
        session.clear()
        flash(gettext("Your password has been changed. Log in with the new one."), "success")
        return redirect(url_for("auth.login"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/reset.html", form=form), status


@bp.route("/password", methods=["GET", "POST"])
@login_required
@limiter.limit(_password_limit, methods=["POST"])
def change_password() -> ResponseReturnValue:
    form = ChangePasswordForm()
    form.user_email = current_user.email
    if form.validate_on_submit():
        user = db.session.get(User, current_user.id)
        assert user is not None
        if not accounts.check_password(user, form.current.data or ""):
            form.current.errors = [gettext("The current password is not correct.")]
        else:
            user.password_hash = accounts.hash_password(form.password.data or "")
            user.session_version += 1  # other sessions end; this one goes on below
            db.session.commit()
            session["_user_id"] = user.get_id()
            flash(
                gettext(
                    "Your password has been changed. Other devices signed in to your account "
                    "have been logged out."
                ),
                "success",
            )
            return redirect(url_for("auth.change_password"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/change_password.html", form=form), status
