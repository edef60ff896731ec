"""A pooled connection is checked before each use, without a round trip on PostgreSQL.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` whenever a request takes a connection from
the pool: one more round trip to the database on every page. With psycopg the check is local.
The pool holds only idle connections, and PostgreSQL sends an idle connection nothing unless
it is closing it (a restart, ``pg_terminate_backend``, ``idle_session_timeout``): its last
message and the end of the stream then wait in the socket. So a connection whose socket has
something to read, or that psycopg knows to be closed, is discarded and the pool opens a new
one (a ``DisconnectionError`` raised by a checkout listener is SQLAlchemy's way to say so).
As with the pre-ping, a server that vanishes without closing its connections (a host lost
mid-network) is noticed only when a statement times out.

SQLite's connections are files opened in this process: nothing to check. Any other driver
keeps SQLAlchemy's pre-ping, and an explicit ``pool_pre_ping`` in
``SQLALCHEMY_ENGINE_OPTIONS`` is kept as it is.
"""

from __future__ import annotations

import select
from typing import Any

from flask import Flask
from sqlalchemy import Engine, event, exc
from sqlalchemy.engine import make_url


def configure(app: Flask) -> None:
    """Before the engine is made: the pre-ping only where there is no cheaper check."""
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if "pool_pre_ping" not in options:
        url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
        local = url.get_backend_name() == "sqlite" or url.get_driver_name() == "psycopg"
        options["pool_pre_ping"] = not local
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def install(app: Flask, engine: Engine) -> None:
    """After the engine is made: the local check for psycopg without the pre-ping."""
    pre_ping = app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping")
    if engine.dialect.driver == "psycopg" and not pre_ping:
        event.listen(engine, "checkout", _check_psycopg)


def _check_psycopg(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if dbapi_connection.closed or _readable(dbapi_connection.fileno()):
        raise exc.DisconnectionError("the database closed this connection")


def _readable(fd: int) -> bool:
    """Whether ``fd`` has data, an end of stream or an error waiting (without waiting)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
