"""``flask --app wsgi …`` commands: plugins, demo data."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask, current_app

from portal import demo
from portal.plugins import registry


def register_commands(app: Flask) -> None:
    @app.cli.command("plugins")
    def plugins_command() -> None:
        """List plugins, their versions and the hooks each implements."""
        for info in registry().plugins():
            version = info.version or "-"
            dist = f" ({info.distribution})" if info.distribution else ""
            click.echo(f"{info.name} {version}{dist}: {', '.join(info.hooks) or '-'}")

    @app.cli.command("demo-data")
    @click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
    def demo_data_command(today: dt.datetime | None) -> None:
        """Load the demo accounts (idempotent) and print their logins."""
        day = today.date() if today else dt.date.today()
        created = demo.load(current_app.extensions["pakiet.catalogue"], today=day)
        click.echo(f"demo data: {created} new account(s)")
        for login in demo.LOGINS:
            click.echo(f"  {login.email:<28} {demo.PASSWORD}   {login.description}")
