"""Pakiet: the self-service billing portal. ``create_app`` builds the Flask application."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from portal.infra.config import ROOT, TEMPLATES_DIR, check_production, load_config


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration, extensions, plugins, catalogue, blueprints."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("PAKIET_INSTANCE_PATH", str(ROOT / "instance")),
        instance_relative_config=True,
        template_folder=str(TEMPLATES_DIR),
        static_folder=None,
    )
    load_config(app, test_config)
    check_production(app)
    hops = int(app.config["PROXY_HOPS"])
    if hops > 0:  # behind reverse proxies: trust that many X-Forwarded-* entries, no more
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    os.makedirs(app.instance_path, exist_ok=True)

    from portal.cli import register_commands
    from portal.infra import liveness
    from portal.infra.extensions import (
        babel,
        csrf,
        db,
        htmx,
        limit_only_limited_views,
        limiter,
        login_manager,
        mail,
        migrate,
        sqlite_foreign_keys,
    )
    from portal.infra.i18n import select_locale
    from portal.plugin_api.registry import PluginError, init_plugins
    from portal.rules import (
        einvoicing,
        webhooks,  # noqa: F401  (its listener writes the outbox)
    )
    from portal.rules.catalogue import load_catalogue
    from portal.rules.tax import load_vat_rates
    from portal.web import auth, read_only, site

    liveness.configure(app)
    db.init_app(app)
    with app.app_context():
        sqlite_foreign_keys(app)
        liveness.install(app, db.engine)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"))
    csrf.init_app(app)
    htmx.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
    limit_only_limited_views(app)
    babel.init_app(app, locale_selector=select_locale)
    auth.init_login(app, login_manager)
    read_only.init_app(app)

    registry = init_plugins(app)
    catalogue = load_catalogue(app.config["CATALOGUE_PATH"])
    missing = [c for c in catalogue.currencies if c not in registry.currencies]
    if missing:
        raise PluginError(f"no currency plugin provides {', '.join(missing)} from the catalogue")
    for code in sorted(set(registry.currencies) - set(catalogue.currencies)):
        plugin = registry.owner("currency", code)
        registry.warn(
            f"currency {code} of plugin {plugin!r} has no prices in the catalogue: it is not sold"
        )
    app.extensions["pakiet.catalogue"] = catalogue
    app.extensions["pakiet.vat_rates"] = load_vat_rates(app.config["VAT_RATES_PATH"])
    # Issued documents to KSeF, and the PDF a customer downloads or is e-mailed with KSeF's
    # number or offline mode (portal.rules.einvoicing; invoicing and mail call them here).
    app.extensions["pakiet.after_issue"] = einvoicing.after_issue
    app.extensions["pakiet.customer_copy"] = einvoicing.customer_copy

    site.register(app)
    from portal.staff.admin import init_admin

    init_admin(app)  # the staff area, after the customer's pages
    register_commands(app)
    return app
