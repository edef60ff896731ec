"""Flask extension objects, bound to an app in :func:`portal.create_app`."""

from __future__ import annotations

from typing import Any

from flask_babel import Babel
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mailman import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from portal.infra.csrf import CSRFProtect

# Stable constraint names, so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
htmx = HTMX()
mail = Mail()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def sqlite_foreign_keys(app: object) -> None:
    """SQLite ignores foreign keys unless asked on every connection."""
    from sqlalchemy import event

    engine = db.engine
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()


def limit_only_limited_views(app: Any) -> None:
    """Run Flask-Limiter's check only for the views that have a limit.

    Flask-Limiter checks every request in a ``before_request`` hook, resolving the view's
    limits each time although only the views decorated with ``@limiter.limit`` have any (no
    default or application-wide limits are set). With no limits to apply it does nothing but
    cost time on every page, so the hook is replaced by one that calls it for a decorated
    view only (whether a view is decorated is looked up once per endpoint). Should default
    or application-wide limits ever be configured, every request is checked as before.
    """
    from flask import request
    from flask_limiter.util import get_qualified_name

    manager = limiter.limit_manager
    if manager.default_limits or manager.application_limits:
        return
    check = limiter._check_request_limit
    hooks = app.before_request_funcs.setdefault(None, [])
    if check not in hooks:
        return
    marked: set[str] = limiter._marked_for_limiting  # names of the decorated views
    limited: dict[str | None, bool] = {}

    def check_limited_view() -> None:
        endpoint = request.endpoint
        if endpoint not in limited:
            view = app.view_functions.get(endpoint or "")
            limited[endpoint] = view is not None and (
                get_qualified_name(view) in marked or manager.has_hints(endpoint or "")
            )
        if limited[endpoint]:
            check()

    hooks[hooks.index(check)] = check_limited_view

    # Its two hooks after the view (rate-limit headers, the request's state released) have
    # something to do only where the check ran: elsewhere they are skipped too.
    def only_where_limited(hook: Any) -> Any:
        def hook_where_limited(value: Any) -> Any:
            if limited.get(request.endpoint):
                return hook(value)
            return value

        return hook_where_limited

    for registry in (app.after_request_funcs, app.teardown_request_funcs):
        hooks = registry.get(None, [])
        for index, hook in enumerate(hooks):
            if getattr(hook, "__self__", None) is limiter or (
                getattr(hook, "args", ())[:1] == (limiter,)  # functools.partial(f, limiter)
            ):
                hooks[index] = only_where_limited(hook)
