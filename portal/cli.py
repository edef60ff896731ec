"""``flask --app wsgi …`` commands: plugins, demo data, and the background run."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask, current_app

from portal import demo
from portal.infra.models import utcnow
from portal.plugin_api.registry import registry
from portal.rules import invoicing, lifecycle, vat


def register_commands(app: Flask) -> None:
    @app.cli.command("plugins")
    def plugins_command() -> None:
        """List plugins, their versions, the hooks each implements and what it registered
        (providers, currencies, validators, rate sources); then the plugins that are off and
        why, and the warnings of the start-up."""
        reg = registry()
        for info in reg.plugins():
            version = info.version or "-"
            dist = f" ({info.distribution})" if info.distribution else ""
            click.echo(f"{info.name} {version}{dist}: {', '.join(info.hooks) or '-'}")
            registered = reg.registered(info.name)
            for kind, names in registered.items():
                click.echo(f"  {kind}: {', '.join(names)}")
            if not registered and any(h.startswith("register_") for h in info.hooks):
                click.echo("  registered nothing (not configured, or switched off in its settings)")
        for name, why in sorted(reg.off.items()):
            click.echo(f"off: {name}: {why}")
        for warning in reg.warnings:
            click.echo(f"warning: {warning}")

    @app.cli.command("demo-data")
    @click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
    def demo_data_command(today: dt.datetime | None) -> None:
        """Load the demo accounts (idempotent) and print their logins."""
        day = today.date() if today else dt.date.today()
        created = demo.load(current_app.extensions["pakiet.catalogue"], today=day)
        click.echo(f"demo data: {created} new account(s)")
        for login in demo.LOGINS:
            click.echo(f"  {login.email:<28} {demo.PASSWORD}   {login.description}")

    @app.cli.group("billing")
    def billing_group() -> None:
        """The background work of the billing portal."""

    @billing_group.command("run")
    @click.option(
        "--now",
        "now_text",
        default=None,
        help="ISO date-time to run as (default: now; for tests and demos); zone-less is UTC.",
    )
    @click.option(
        "--limit", default=None, type=click.IntRange(min=1), help="At most N subscriptions."
    )
    @click.option(
        "--threads",
        default=None,
        type=click.IntRange(min=1, max=32),
        help="Renewals in flight at once (default: RENEWAL_THREADS; SQLite: 1).",
    )
    @click.option(
        "--subscriptions-only",
        is_flag=True,
        help="Only the subscriptions' work (renewals, suspensions, notices queued); invoices,"
        " VAT checks, e-mail and webhooks wait for the next full run.",
    )
    def billing_run_command(
        now_text: str | None, limit: int | None, threads: int | None, subscriptions_only: bool
    ) -> None:
        """Do everything that is due: renewals, suspensions, notices, retries of failed
        charges and VAT checks, postponed invoices, queued e-mail. Idempotent; run it every
        minute from cron or a systemd timer, on any number of nodes at once."""
        report = lifecycle.run_now(
            _parse_now(now_text),
            limit=limit,
            threads=threads,
            follow_ups=not subscriptions_only,
        )
        click.echo(report.line())

    @app.cli.command("vat-recheck")
    @click.option(
        "--now",
        "now_text",
        default=None,
        help="ISO date-time to run as (default: now); a zone-less value is UTC.",
    )
    @click.option("--limit", default=200, show_default=True, type=click.IntRange(min=1))
    def vat_recheck_command(now_text: str | None, limit: int) -> None:
        """Check the VAT numbers that are due: pending ones (VIES was unavailable) on their
        backoff, valid ones periodically. Safe to run on many nodes at once."""
        now = _parse_now(now_text) or utcnow()
        report = vat.run_due_checks(now=now, limit=limit, settings=vat.settings_for(current_app))
        click.echo(
            f"VAT re-check: {report.checked} checked, {report.valid} valid, "
            f"{report.invalid} invalid, {report.pending} pending"
        )

    @app.cli.command("invoices-issue")
    def invoices_issue_command() -> None:
        """Issue the invoices of settled payments that have none yet (an exchange-rate
        source or the renderer was down when they settled), and store the documents of any
        whose issuer stopped before rendering them. Idempotent."""
        issued = 0
        for payment_id in invoicing.pending_payments():
            if invoicing.issue_now(payment_id, now=utcnow()) is not None:
                issued += 1
        invoicing.render_missing(now=utcnow())
        click.echo(f"invoices: {issued} issued")


def _parse_now(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        now = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO date-time: {text!r}") from None
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now
