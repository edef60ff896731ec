"""Sign up, log in, log out."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from portal.infra.extensions import db, limiter
from portal.infra.i18n import current_language, home_url, safe_next
from portal.infra.models import Account, User, utcnow
from portal.rules import accounts

bp = Blueprint("auth", __name__)

MIN_PASSWORD = 10
COMMON_PASSWORDS = frozenset(
    {"1234567890", "qwertyuiop", "password12", "password123", "haslo12345", "zaq12wsxcde"}
)
REQUIRED = lazy_gettext("This field is required.")

# Built once per process: building it with its loader options cost as much as running it.
USER_WITH_ACCOUNT = (
    select(User)
    .where(User.id == bindparam("user_id"))
    .options(
        joinedload(User.account).options(
            joinedload(Account.subscription), joinedload(Account.billing_info)
        )
    )
)


def strong_password(form: FlaskForm, field: PasswordField) -> None:
    value = field.data or ""
    email = (form.email.data or "").strip().lower()
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


def init_login(app: Flask, manager: LoginManager) -> None:
    manager.init_app(app)
    manager.login_view = "auth.login"
    manager.login_message = lazy_gettext("Please log in to see this page.")
    manager.session_protection = "strong"

    @manager.user_loader
    def load_user(user_id: str) -> User | None:
        # Every customer page needs the account, its package and billing data: one query.
        if not user_id.isdigit():
            return None
        user = db.session.scalar(USER_WITH_ACCOUNT, {"user_id": int(user_id)})
        return user if isinstance(user, User) else None


def _start_session(user: User) -> None:
    # A fresh session at log-in: nothing from before survives (no fixation).
    from flask import session

    session.clear()
    login_user(user)


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(home_url())
    form = SignupForm()
    if form.validate_on_submit():
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
            form.email.errors = [gettext("An account with this e-mail address already exists.")]
        else:
            _start_session(user)
            flash(gettext("Welcome to Pakiet! Your account is on the Free package."), "success")
            return redirect(url_for("account.package"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/signup.html", form=form), status


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(home_url())
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data or "", form.password.data or "")
        if user is not None:
            _start_session(user)
            return redirect(safe_next(request.args.get("next"), home_url()))
        error = gettext("Incorrect e-mail or password.")
    status = 400 if form.is_submitted() else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    logout_user()
    flash(gettext("You have been logged out."), "success")
    return redirect(url_for("auth.login"))
