"""Configuration: defaults here, then ``instance/pakiet.cfg``, then ``PAKIET_*`` variables.

``PAKIET_DATABASE_URL`` sets the database; every other ``PAKIET_NAME`` sets ``NAME``
(values are read as JSON when they parse, so ``PAKIET_PLUGINS_AUTOLOAD=false`` is a
boolean; ``PAKIET_SELLER__NAME`` sets one key of a dictionary).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from portal.rules.catalogue import DEFAULT_PATH as CATALOGUE_PATH
from portal.rules.tax import DEFAULT_PATH as VAT_RATES_PATH

#: The ``portal`` package's own folder, and the folder above it: the repository in a source
#: checkout (and so with an editable install), ``site-packages`` once the wheel is installed.
PACKAGE_DIR = Path(__file__).resolve().parent.parent
ROOT = PACKAGE_DIR.parent
#: What the wheel ships of the repository's other folders (setup.py's ``build_py``):
#: ``templates/``, ``translations/<lang>/LC_MESSAGES/messages.mo`` and, under ``static/``,
#: the front-end files installed from npm.
SHIPPED = PACKAGE_DIR / "_shipped"


def data_path(in_repository: str, shipped: str) -> Path:
    """Where the app reads what lives outside ``portal/`` in the repository (the page
    templates, the translations, the front-end files under ``node_modules``).

    In a source checkout (``ROOT`` holds ``pyproject.toml``), the repository's own
    ``in_repository`` when it exists, so an edit shows at once; otherwise (an installed
    wheel) the copy built into the package, ``portal/_shipped/<shipped>``.
    """
    repository = ROOT / in_repository
    if (ROOT / "pyproject.toml").is_file() and repository.exists():
        return repository
    return SHIPPED / shipped


TEMPLATES_DIR = data_path("templates", "templates")
TRANSLATIONS_DIR = data_path("translations", "translations")

#: The shipped key: only accepted in development mode (see :func:`check_production`).
DEV_SECRET_KEY = "dev-only-secret-change-me"
MIN_SECRET_KEY_BYTES = 32
#: Where rate-limit counters live when several workers share them (docs/operations.md).
SHARED_LIMITS_HINT = "redis://127.0.0.1:6379"

DEFAULTS: dict[str, Any] = {
    # Development mode (``make run``, scripts/devserver.py, the tests): the shipped secret key
    # and per-process rate limits are accepted. Production leaves it False.
    "DEVELOPMENT": False,
    # Only good for a laptop: production sets PAKIET_SECRET_KEY (create_app refuses this one).
    "SECRET_KEY": DEV_SECRET_KEY,
    # Behind a reverse proxy: how many proxies set X-Forwarded-For/-Proto/-Host in front of
    # the portal. 0: those headers are ignored (the client address is the socket's).
    "PROXY_HOPS": 0,
    "SQLALCHEMY_DATABASE_URI": "sqlite:///pakiet.sqlite3",
    # Pooled connections are checked before use (portal/infra/liveness.py), on PostgreSQL without
    # a round trip; set "pool_pre_ping" here to choose SQLAlchemy's SELECT 1 instead.
    "SQLALCHEMY_ENGINE_OPTIONS": {},
    "CATALOGUE_PATH": str(CATALOGUE_PATH),
    "LANGUAGES": ["pl", "en"],
    "BABEL_DEFAULT_LOCALE": "pl",
    # R18: what a browser asking for none of LANGUAGES reads.
    "FALLBACK_LANGUAGE": "en",
    "BABEL_DEFAULT_TIMEZONE": "Europe/Warsaw",
    "BABEL_TRANSLATION_DIRECTORIES": str(TRANSLATIONS_DIR),
    "LANGUAGE_COOKIE": "pakiet_lang",
    "PLUGINS_AUTOLOAD": True,
    "PLUGINS": [],
    "PLUGINS_ALLOW": None,
    "PLUGINS_BLOCK": [],
    "PLUGIN_CONFIG": {},
    "TRACE_PLUGINS": False,
    "LOGIN_RATE_LIMIT": "10 per minute",
    # Saving an invoice note renders a PDF: a person needs a few a minute, a script more.
    "NOTE_RATE_LIMIT": "20 per minute",
    # The PDFs customers download, kept per process by what decides their bytes
    # (portal/web/copy_cache.py); 0 switches the cache off.
    "PDF_CACHE_BYTES": 32 * 1024 * 1024,
    # Request bodies: forms are small; a provider's webhook may be larger (that route only).
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "WEBHOOK_MAX_CONTENT_LENGTH": 1024 * 1024,
    # memory:// counts per process: with several workers set a shared one (redis://...);
    # production start-up warns about memory://.
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_HEADERS_ENABLED": True,
    # Werkzeug's password hashing method; tests set a fast one.
    "PASSWORD_HASH_METHOD": "scrypt",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,
    "SUPPORT_EMAIL": "support@pakiet.test",
    # Where new support requests and customer replies are e-mailed, and in which language.
    "SUPPORT_STAFF_EMAIL": None,  # None: SUPPORT_EMAIL
    "STAFF_LANGUAGE": "en",
    # E-mail: printed to the console unless an SMTP server is configured
    # (MAIL_BACKEND = "smtp", MAIL_SERVER, MAIL_PORT, MAIL_USE_TLS, MAIL_USERNAME, ...).
    "MAIL_BACKEND": "console",
    "MAIL_DEFAULT_SENDER": "Pakiet <billing@pakiet.test>",
    "VAT_RATES_PATH": str(VAT_RATES_PATH),
    # Where customers reach the portal: the links in e-mails sent by the background run.
    "PUBLIC_URL": "http://127.0.0.1:5000",
    # Failed renewal charges are tried again this many days after the period end, then the
    # account is suspended; renewal notices go this many days ahead, per billing period.
    "RENEWAL_RETRY_DAYS": [1, 3, 5],
    "RENEWAL_NOTICE_DAYS": {"month": 7, "year": 30},
    # Renewals one `billing run` keeps in flight at once (threads; PostgreSQL only, SQLite
    # has a single writer): a provider takes ~300 ms to answer a charge, so 20 renewals a
    # second need 6 or more in flight. Each thread holds a database connection.
    "RENEWAL_THREADS": 8,
    # Subscriptions one claim takes together (portal/rules/lifecycle.py, _renew_batch): their
    # attempts written and committed at once, then charged, then applied at once. A batch's
    # charges together must stay well within the 5-minute lease (10 × a 10-second timeout).
    "RENEWAL_BATCH": 10,
    # Service tokens of the chat product for GET /api/v1/accounts/<id>/entitlements.
    "ENTITLEMENTS_TOKENS": [],
    # POST /api/v1/portal-sessions (docs/integration.md): where a link may send the customer
    # back ("https://chat.example.com/app": that origin, that path and below), how long a
    # link works, and the name of the "Back to ..." link (empty: "the chat product").
    "PORTAL_RETURN_URLS": [],
    "PORTAL_SESSION_MAX_AGE": 300,
    "CHAT_PRODUCT_NAME": "",
    # Webhooks to the chat product (docs/integration.md): the URLs every event goes to, the
    # HMAC-SHA256 secret of their signature (required with URLs), the timeout of one try in
    # seconds, the tries before giving up, and the backoff between tries (seconds, doubled
    # per try, at most WEBHOOK_RETRY_MAX).
    "WEBHOOK_URLS": [],
    "WEBHOOK_SECRET": "",
    "WEBHOOK_TIMEOUT": 10,
    "WEBHOOK_MAX_ATTEMPTS": 12,
    "WEBHOOK_RETRY_BASE": 60,
    "WEBHOOK_RETRY_MAX": 6 * 3600,
    "SELLER": {
        "name": "Pakiet Sp. z o.o.",
        "street": "ul. Przykładowa 1",
        "postcode": "00-001",
        "city": "Warszawa",
        "country": "PL",
        "vat_id": "PL5260250274",
        "invoice_series": "FV",
    },
}


class InsecureConfig(RuntimeError):
    """The configuration is not fit for production: create_app refuses to start."""


def check_production(app: Flask) -> None:
    """Refuse a known or short SECRET_KEY unless in development mode; warn about
    per-process rate limits (memory://) in production. Webhook URLs need a secret in every
    mode: the chat product must be able to tell the portal's events from anyone's."""
    if app.config.get("WEBHOOK_URLS") and not app.config.get("WEBHOOK_SECRET"):
        raise InsecureConfig(
            "WEBHOOK_URLS is set without WEBHOOK_SECRET: webhooks are signed with it. Set one, "
            "e.g. export PAKIET_WEBHOOK_SECRET=$(python -c 'import secrets; "
            "print(secrets.token_hex(32))')"
        )
    if app.config.get("DEVELOPMENT"):
        return
    key = app.config.get("SECRET_KEY") or ""
    size = len(key.encode() if isinstance(key, str) else bytes(key))
    if key == DEV_SECRET_KEY or size < MIN_SECRET_KEY_BYTES:
        why = "is the shipped development value" if key == DEV_SECRET_KEY else "is too short"
        raise InsecureConfig(
            f"SECRET_KEY {why}: production needs a secret of at least "
            f"{MIN_SECRET_KEY_BYTES} bytes. Set one, e.g.\n"
            "  export PAKIET_SECRET_KEY="
            "$(python -c 'import secrets; print(secrets.token_hex(32))')\n"
            "(or SECRET_KEY in instance/pakiet.cfg), or set PAKIET_DEVELOPMENT=1 on a laptop."
        )
    storage = str(app.config.get("RATELIMIT_STORAGE_URI") or "memory://")
    if storage.startswith("memory://"):
        app.logger.warning(
            "RATELIMIT_STORAGE_URI is %s: rate limits (log-in, sign-up, password reset) are "
            "counted per worker process, so N workers allow N times the limit. Set "
            "PAKIET_RATELIMIT_STORAGE_URI=%s (Redis) to share them.",
            storage,
            SHARED_LIMITS_HINT,
        )


def load_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config.from_pyfile("pakiet.cfg", silent=True)
        url = os.environ.get("PAKIET_DATABASE_URL")
        app.config.from_prefixed_env(prefix="PAKIET")
        if url:
            app.config["SQLALCHEMY_DATABASE_URI"] = url
        if os.environ.get("PAKIET_TRACE_PLUGINS") == "1":
            app.config["TRACE_PLUGINS"] = True
    else:
        app.config.from_mapping(test_config)
