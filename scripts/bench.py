"""``make bench``: the portal's throughput and latency against a bare Flask app (issue 9).

For each database (PostgreSQL, then SQLite) it:

1. creates its own database (``pakiet_bench`` on PostgreSQL, a file in a temporary
   directory for SQLite), applies the migrations and seeds realistic data with bulk inserts:
   10,000 accounts with users, billing data, a paid subscription and a saved card (in the
   Stripe emulator), 100,000 paid orders and payments with their invoices and stored
   renderings (all copies of one invoice issued and rendered by the real code), one account
   with 120 of them;
2. starts the portal (``wsgi:app``) and the bare app (``scripts/bench_bare.py``) under the same
   gunicorn settings on free loopback ports, logs in as the 120-invoice account and drives
   both with a small Node.js load generator (16 connections): the live summary, My package,
   the invoices list and a stored PDF download, each also as a ratio to the bare app; and,
   under the same settings, the stack's floor (``scripts/bench_floor.py``): the same
   extensions, database and session cookie, one layer per route (the session, one round
   trip, the user load, the least PDF download, the least translated page), so each page's
   ratio can be read against the least the stack does for such a page;
3. times ``flask invoices-issue`` over settled payments without invoices (invoices per
   second, PDF included) and ``flask billing run`` over 10,000 due subscriptions charged
   through the Stripe emulator, with one runner and (PostgreSQL only: SQLite has a single
   writer and no ``SKIP LOCKED``) with two; and, as their floor, the Stripe charges alone
   (``scripts/bench_charges.py``: the plugin's own call, the same emulator, no database).

It prints one table per database and drops what it created. Options: ``--quick`` for a
small smoke run, ``--only pg|sqlite``, ``--parts web|jobs|renewals`` (``renewals``: step 3's
renewals alone, with ``flask billing run --subscriptions-only``, so that the invoices' PDFs
do not take most of an hour on a slow machine), ``--duration``, ``--connections``,
``--workers``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))

BIN = Path(sys.executable).parent
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "pakiet_bench"
SECRET_KEY = "bench-secret-" + "x" * 32
API_KEY = "sk_test_bench"
WEBHOOK_SECRET = "whsec_bench"
GOOD_CARD = "4242424242424242"
PASSWORD = "bench-password-2026"
HEAVY_EMAIL = "heavy@bench.example.com"
LIGHT_EMAIL = "user2@bench.example.com"  # the seed's accounts 2 and 3 (see seed's owner())
HUGE_EMAIL = "user3@bench.example.com"
TODAY = dt.date(2026, 11, 26)
PERIOD_END = dt.date(2026, 12, 1)  # every subscription renews on this day
RUN_AT = dt.datetime(2026, 12, 1, 2, 30, tzinfo=ZoneInfo("Europe/Warsaw")).astimezone(dt.UTC)
BATCH = 5000
USER_AGENT = "pakiet-bench/1.0"
SLOW_PROVIDER = 0.3  # seconds: how long a real Stripe takes to answer a charge
SLOW_RENEWALS = 500  # due subscriptions in the round with the slow provider


@dataclass(frozen=True)
class Sizes:
    accounts: int = 10_000
    invoices: int = 100_000
    heavy: int = 120
    light: int = 12  # the invoices list is also measured for an account with this many
    huge: int = 12_000  # and one with this many (each page shows at most one page of them)
    issue: int = 300
    renewals: int = 10_000
    duration: int = 10
    connections: int = 16
    workers: int = 2


QUICK = Sizes(accounts=300, invoices=3000, heavy=120, huge=1200, issue=30, renewals=300, duration=3)


@dataclass
class Row:
    name: str
    rps: float
    p50: float
    p99: float
    ratio: float | None = None
    errors: int = 0


@dataclass
class Results:
    backend: str
    rows: list[Row] = field(default_factory=list)
    jobs: list[tuple[str, str]] = field(default_factory=list)
    seed_seconds: float = 0.0


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.2)


@contextmanager
def gunicorn(app: str, env: dict[str, str], workers: int, probe: str) -> Iterator[str]:
    """``app`` under gunicorn's production settings on a free loopback port: its base URL."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--pythonpath",
        f"{ROOT},{ROOT / 'scripts'}",
        "--log-level",
        "warning",
        app,
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + probe)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def flask_command(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run ``flask --app wsgi ARGS``: (seconds, stdout)."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


# -- databases -------------------------------------------------------------------------------


def pg_admin(statement: str) -> None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def create_database(backend: str, workdir: Path) -> str:
    if backend == "postgresql":
        pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {PG_DATABASE}")
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
    path = workdir / "bench.sqlite3"
    path.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def drop_database(backend: str, workdir: Path) -> None:
    if backend == "postgresql":
        pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    else:
        (workdir / "bench.sqlite3").unlink(missing_ok=True)


def stripe_config(emulator: Any) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "api_base": emulator.base_url,
        "max_network_retries": 0,
        "timeout": 10,
    }


def environment(url: str, workdir: Path, emulator: Any) -> dict[str, str]:
    return {
        **os.environ,
        "PAKIET_DATABASE_URL": url,
        "PAKIET_SECRET_KEY": SECRET_KEY,
        "PAKIET_INSTANCE_PATH": str(workdir),
        "PAKIET_MAIL_BACKEND": "dummy",
        "PAKIET_PLUGIN_CONFIG": json.dumps({"stripe": stripe_config(emulator)}),
    }


def make_app(url: str, emulator: Any) -> Any:
    from portal import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": SECRET_KEY,
            "MAIL_BACKEND": "dummy",
            "PLUGIN_CONFIG": {"stripe": stripe_config(emulator)},
        }
    )


# -- seeding ---------------------------------------------------------------------------------


def chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


def bulk(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], **values: Any) -> None:
    statement = sa.insert(table).values(**values) if values else sa.insert(table)
    for part in chunks(rows):
        conn.execute(statement, part)


def paid_subscription(n: int, period_end: dt.date = PERIOD_END) -> dict[str, Any]:
    agents = 1 + n % 5
    return {
        "package": "standard",
        "period": "month",
        "agents": agents,
        "conversations": 100,
        "currency": "PLN",
        "status": "active",
        "period_start": period_end - dt.timedelta(days=30),
        "period_end": period_end,
        "auto_renew": True,
        "period_net_minor": 8900 * agents,
        "credit_minor": 0,
        "renewal_attempts": 0,
        "version": 1,
    }


def seed(app: Any, sizes: Sizes, cards: list[tuple[str, str]]) -> None:
    """The data set: see the module docs. Account 1 is the 120-invoice account."""
    from werkzeug.security import generate_password_hash

    from portal.infra.extensions import db
    from portal.infra.models import (
        Account,
        BillingInfo,
        Invoice,
        InvoiceRendering,
        InvoiceSequence,
        Order,
        Payment,
        PaymentMethod,
        Subscription,
        User,
        utcnow,
    )
    from portal.rules import invoicing, lifecycle
    from portal.rules.orders import new_order

    now = utcnow()
    password_hash = generate_password_hash(PASSWORD)
    with app.app_context():
        # The template: one invoice issued and rendered by the real code.
        account = Account(name="Ciężarówka Sp. z o.o.", created_at=now)
        account.billing_info = BillingInfo(
            company_name=account.name,
            street="ul. Długa 1",
            postcode="00-238",
            city="Warszawa",
            country="PL",
            invoice_email=HEAVY_EMAIL,
            updated_at=now,
        )
        account.subscription = Subscription(**paid_subscription(0))
        user = User(
            account=account,
            email=HEAVY_EMAIL,
            password_hash=password_hash,
            language="pl",
            created_at=now,
            email_confirmed_at=now,
        )
        db.session.add_all([account, user])
        db.session.flush()
        method = PaymentMethod(
            account_id=account.id,
            provider="stripe",
            customer_ref=cards[0][0],
            provider_ref=cards[0][1],
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2034,
            is_default=True,
            created_at=now,
        )
        db.session.add(method)
        deps = lifecycle.deps_for(app)
        sub = account.subscription
        quote, decision = lifecycle._renewal_quote(sub, account, deps)
        order = new_order(
            account_id=account.id,
            public_id=secrets.token_hex(16),
            idempotency_key="bench-template",
            subscription_version=1,
            result=quote,
            decision=decision,
            now=now,
            lifetime=dt.timedelta(days=30),
        )
        order.status = "paid"
        db.session.add(order)
        db.session.flush()
        payment = Payment(
            public_id=secrets.token_hex(16),
            account_id=account.id,
            order_id=order.id,
            method_id=method.id,
            provider="stripe",
            provider_ref="pi_bench_template",
            charge_ref="pi_bench_template",
            idempotency_key="bench-template",
            status="paid",
            amount_minor=order.total_minor,
            currency="PLN",
            created_at=now,
            settled_at=now,
        )
        db.session.add(payment)
        db.session.commit()
        template = invoicing.issue_for_payment(
            payment_id=payment.id,
            seller=app.config["SELLER"],
            language="pl",
            render=invoicing.app_renderer(),
            rates=invoicing.app_rates(),
            now=now,
            today=TODAY,
        )
        assert template is not None
        heavy_id, template_id = account.id, template.id
        order_id, total = order.id, order.total_minor
        seller_key, net, vat = template.seller_key, template.net_minor, template.vat_minor
        db.session.commit()

        conn = db.session.connection()
        ids = range(heavy_id + 1, heavy_id + sizes.accounts)
        bulk(
            conn,
            Account.__table__,
            [{"id": i, "name": f"Firma {i} Sp. z o.o.", "created_at": now} for i in ids],
        )
        bulk(
            conn,
            User.__table__,
            [
                {
                    "account_id": i,
                    "email": f"user{i}@bench.example.com",
                    "password_hash": password_hash,
                    "role": "customer",
                    "language": "pl" if i % 3 else "en",
                    "created_at": now,
                    "email_confirmed_at": now,
                }
                for i in ids
            ],
        )
        bulk(
            conn,
            BillingInfo.__table__,
            [
                {
                    "account_id": i,
                    "company_name": f"Firma {i} Sp. z o.o.",
                    "street": f"ul. Polna {i}",
                    "postcode": "00-001",
                    "city": "Kraków",
                    "country": "PL",
                    "invoice_email": f"user{i}@bench.example.com",
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        bulk(conn, Subscription.__table__, [{"account_id": i, **paid_subscription(i)} for i in ids])
        bulk(
            conn,
            PaymentMethod.__table__,
            [
                {
                    "account_id": i,
                    "provider": "stripe",
                    "customer_ref": cards[n][0],
                    "provider_ref": cards[n][1],
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "is_default": True,
                    "created_at": now,
                }
                for n, i in enumerate(ids, start=1)
            ],
        )
        method_of = {
            account_id: method_id
            for account_id, method_id in conn.execute(
                sa.select(PaymentMethod.account_id, PaymentMethod.id)
            )
        }

        # 100,000 paid orders, payments and invoices (the template's content, XML and PDF).
        count = sizes.invoices - 1
        first = order_id + 1
        others = list(ids)

        # The heavy account (1) has ``heavy`` invoices, the next two ``light`` and ``huge``
        # (the list's cost against the data's size), the rest are spread over the others.
        light_end = sizes.heavy - 1 + sizes.light
        huge_end = light_end + sizes.huge

        def owner(k: int) -> int:
            if k < sizes.heavy - 1:
                return heavy_id
            if len(others) < 3:
                return others[k % len(others)] if others else heavy_id
            if k < light_end:
                return others[0]
            if k < huge_end:
                return others[1]
            return others[2 + k % (len(others) - 2)]

        def stamp(k: int) -> dt.datetime:
            return now - dt.timedelta(minutes=5 * (count - k))

        quote_of = sa.select(Order.quote).where(Order.id == order_id).scalar_subquery()
        bulk(
            conn,
            Order.__table__,
            [
                {
                    "id": first + k,
                    "public_id": secrets.token_hex(16),
                    "account_id": owner(k),
                    "idempotency_key": f"bench-{k}",
                    "status": "paid",
                    "subscription_version": 1,
                    "package": "standard",
                    "period": "month",
                    "agents": 1,
                    "conversations": 100,
                    "currency": "PLN",
                    "subtotal_minor": total - vat,
                    "net_minor": net,
                    "vat_minor": vat,
                    "total_minor": total,
                    "tax_treatment": "domestic",
                    "created_at": stamp(k),
                    "expires_at": stamp(k) + dt.timedelta(days=30),
                }
                for k in range(count)
            ],
            quote=quote_of,
        )
        first_payment = payment.id + 1
        bulk(
            conn,
            Payment.__table__,
            [
                {
                    "id": first_payment + k,
                    "public_id": secrets.token_hex(16),
                    "account_id": owner(k),
                    "order_id": first + k,
                    "method_id": method_of[owner(k)],
                    "provider": "stripe",
                    "provider_ref": f"pi_bench_{k}",
                    "charge_ref": f"pi_bench_{k}",
                    "idempotency_key": f"bench-{k}",
                    "status": "paid",
                    "amount_minor": total,
                    "currency": "PLN",
                    "refunded_minor": 0,
                    "created_at": stamp(k),
                    "settled_at": stamp(k),
                }
                for k in range(count)
            ],
        )
        content_of = sa.select(Invoice.content).where(Invoice.id == template_id).scalar_subquery()
        xml_of = sa.select(Invoice.xml).where(Invoice.id == template_id).scalar_subquery()
        bulk(
            conn,
            Invoice.__table__,
            [
                {
                    "id": template_id + 1 + k,
                    "public_id": secrets.token_hex(16),
                    "account_id": owner(k),
                    "seller_key": seller_key,
                    "series": "FV",
                    "year": 2025,
                    "seq": k + 1,
                    "number": invoicing.format_number("FV", 2025, k + 1),
                    "kind": "invoice",
                    "payment_id": first_payment + k,
                    "issue_date": stamp(k).date(),
                    "sale_date": stamp(k).date(),
                    "currency": "PLN",
                    "language": "pl",
                    "net_minor": net,
                    "vat_minor": vat,
                    "total_minor": total,
                    "created_at": stamp(k),
                }
                for k in range(count)
            ],
            content=content_of,
            xml=xml_of,
        )
        conn.execute(
            sa.insert(InvoiceSequence.__table__).values(
                seller_key=seller_key, series="FV", year=2025, last_value=count
            )
        )
        rendering = InvoiceRendering.__table__
        template_pdf = (
            sa.select(rendering.c.pdf)
            .where(rendering.c.invoice_id == template_id)
            .scalar_subquery()
        )
        invoice = Invoice.__table__
        conn.execute(
            sa.insert(rendering).from_select(
                ["invoice_id", "pdf", "rendered_at"],
                sa.select(invoice.c.id, template_pdf, invoice.c.created_at).where(
                    invoice.c.id > template_id
                ),
            )
        )
        db.session.commit()
        analyze(db.engine)


def analyze(engine: sa.Engine) -> None:
    """Sequences past the explicit ids (PostgreSQL), fresh planner statistics."""
    from portal.infra.extensions import db

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in db.metadata.sorted_tables:
                if "id" in table.c and table.c.id.primary_key:
                    conn.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"
                        )
                    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            # Vacuumed and written out now, so autovacuum and the checkpoint after the bulk
            # load do not run during the first measurements (the bare app's, which came out
            # a third lower than later in the run when they did).
            conn.execute(sa.text("VACUUM (ANALYZE)"))
            conn.execute(sa.text("CHECKPOINT"))
        else:
            conn.execute(sa.text("ANALYZE"))


def add_unbilled_payments(app: Any, count: int) -> None:
    """``count`` settled payments without their invoice: work for ``invoices-issue``."""
    from portal.infra.extensions import db
    from portal.infra.models import Order, Payment, PaymentMethod, utcnow

    with app.app_context():
        template = db.session.scalar(sa.select(Order).order_by(Order.id).limit(1))
        assert template is not None
        methods = db.session.execute(
            sa.select(PaymentMethod.account_id, PaymentMethod.id)
            .order_by(PaymentMethod.account_id)
            .limit(count)
        ).all()
        now = utcnow()
        for n, (account_id, method_id) in enumerate(methods):
            order = Order(
                public_id=secrets.token_hex(16),
                account_id=account_id,
                idempotency_key=f"bench-unbilled-{n}",
                status="paid",
                subscription_version=1,
                package=template.package,
                period=template.period,
                agents=template.agents,
                conversations=template.conversations,
                currency=template.currency,
                subtotal_minor=template.subtotal_minor,
                net_minor=template.net_minor,
                vat_minor=template.vat_minor,
                total_minor=template.total_minor,
                tax_treatment=template.tax_treatment,
                quote=template.quote,
                created_at=now,
                expires_at=now + dt.timedelta(days=30),
            )
            db.session.add(order)
            db.session.flush()
            db.session.add(
                Payment(
                    public_id=secrets.token_hex(16),
                    account_id=account_id,
                    order_id=order.id,
                    method_id=method_id,
                    provider="stripe",
                    provider_ref=f"pi_bench_unbilled_{n}",
                    charge_ref=f"pi_bench_unbilled_{n}",
                    idempotency_key=f"bench-unbilled-{n}",
                    status="paid",
                    amount_minor=template.total_minor,
                    currency=template.currency,
                    created_at=now,
                    settled_at=now,
                )
            )
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


# -- the web pages ---------------------------------------------------------------------------


class Browser:
    """A logged-in customer, as far as cookies and the CSRF token go."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        # Flask-Login's "strong" protection binds the session to the address and User-Agent.
        self.opener.addheaders = [("User-Agent", USER_AGENT)]

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as response:
            return str(response.read().decode())

    def post(self, path: str, data: dict[str, str], headers: dict[str, str] | None = None) -> str:
        body = urllib.parse.urlencode(data).encode()
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        with self.opener.open(request, timeout=30) as response:
            return str(response.read().decode())

    def csrf(self, path: str) -> str:
        match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', self.get(path))
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, email: str, password: str) -> None:
        token = self.csrf("/login")
        self.post("/login", {"csrf_token": token, "email": email, "password": password})
        assert "/logout" in self.get("/package"), "the benchmark user could not log in"

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


# A closed-loop load generator in Node.js (installed for the front-end assets anyway):
# ``connections`` clients, each sending one request per connection and waiting for the whole
# answer, as a reverse proxy talks to gunicorn's sync workers (they close every connection).
# Latency is from connect to the last byte; off-the-shelf tools that expect keep-alive
# (autocannon) report nonsense latencies against a server that closes each connection.
LOAD_JS = r"""
const net = require('net');
const spec = JSON.parse(process.argv[1]);
const head = [`${spec.method} ${spec.path} HTTP/1.1`, `Host: ${spec.host}:${spec.port}`];
for (const [k, v] of Object.entries(spec.headers)) head.push(`${k}: ${v}`);
const body = Buffer.from(spec.body || '');
if (body.length) head.push(`Content-Length: ${body.length}`);
head.push('Connection: close', '', '');
const request = Buffer.concat([Buffer.from(head.join('\r\n')), body]);
const latencies = [];
const statuses = {};
let errors = 0, active = spec.connections;
const started = process.hrtime.bigint();
const stopAt = Date.now() + spec.seconds * 1000;
function finish() {
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const pick = (q) => latencies.length ? latencies[Math.min(latencies.length - 1,
    Math.floor(q * latencies.length))] : 0;
  process.stdout.write(JSON.stringify({requests: latencies.length, seconds: elapsed,
    p50: pick(0.50), p99: pick(0.99), statuses, errors}));
}
function one() {
  if (Date.now() >= stopAt) { if (--active === 0) finish(); return; }
  const t0 = process.hrtime.bigint();
  const chunks = [];
  let failed = false;
  const socket = net.connect(spec.port, spec.host, () => socket.end(request));
  socket.on('data', (chunk) => chunks.push(chunk));
  socket.on('error', () => { failed = true; });
  socket.on('close', () => {
    const answer = Buffer.concat(chunks);
    if (failed || answer.length < 12) { errors++; } else {
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const status = answer.subarray(9, 12).toString();
      statuses[status] = (statuses[status] || 0) + 1;
    }
    setImmediate(one);
  });
}
for (let i = 0; i < spec.connections; i++) one();
"""


def load(
    url: str,
    sizes: Sizes,
    *,
    seconds: int,
    method: str = "GET",
    body: str = "",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    spec = {
        "host": parts.hostname,
        "port": parts.port,
        "path": parts.path,
        "method": method,
        "headers": headers or {},
        "body": body,
        "connections": sizes.connections,
        "seconds": seconds,
    }
    done = subprocess.run(
        ["node", "-e", LOAD_JS, json.dumps(spec)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(name: str, url: str, sizes: Sizes, **request: Any) -> Row:
    load(url, sizes, seconds=2, **request)  # warm-up: worker start, caches, pools
    result = load(url, sizes, seconds=sizes.duration, **request)
    statuses: dict[str, int] = result["statuses"]
    errors = int(result["errors"]) + sum(n for s, n in statuses.items() if s != "200")
    if errors:
        print(f"  {name}: statuses {statuses}, {result['errors']} connection errors", flush=True)
    return Row(
        name=name,
        rps=result["requests"] / result["seconds"],
        p50=float(result["p50"]),
        p99=float(result["p99"]),
        errors=errors,
    )


def bench_web(
    results: Results, sizes: Sizes, env: dict[str, str], invoice_id: str, one_account: bool = False
) -> None:
    """The pages and the floor, between two runs of the bare app; every ratio is to the mean
    of the two (the machine's speed drifts over a run)."""
    with gunicorn("bench_bare:app", env, sizes.workers, "/") as bare:
        before = measure("bare Flask app", bare + "/", sizes)
    results.rows.append(before)
    pages_and_floor(results, sizes, env, invoice_id, one_account)
    with gunicorn("bench_bare:app", env, sizes.workers, "/") as bare:
        after = measure("bare Flask app, again after the pages", bare + "/", sizes)
    results.rows.append(after)
    baseline = (before.rps + after.rps) / 2
    for row in results.rows:
        row.ratio = row.rps / baseline if baseline else None


def pages_and_floor(
    results: Results, sizes: Sizes, env: dict[str, str], invoice_id: str, one_account: bool
) -> None:
    """The pages and the floor. ``one_account``: a data set of a single account, where only
    My package and the summary are measured (their cost against the number of accounts)."""
    with gunicorn("wsgi:app", env, sizes.workers, "/login") as base:
        browser = Browser(base)
        browser.login(HEAVY_EMAIL, PASSWORD)
        cookie = browser.cookie()
        token = browser.csrf("/package/edit")
        form = {
            "csrf_token": token,
            "package": "standard",
            "period": "month",
            "agents": "3",
            "conversations": "100",
            "currency": "PLN",
        }
        htmx = {"HX-Request": "true", "Content-Type": "application/x-www-form-urlencoded"}
        assert 'id="summary"' in browser.post("/package/summary", form, htmx)
        assert invoice_id in browser.get("/invoices")
        lists = []  # the invoices list of the accounts with few and very many invoices
        if sizes.accounts >= 3 and not one_account:
            for email, count in ((LIGHT_EMAIL, sizes.light), (HUGE_EMAIL, sizes.huge)):
                other = Browser(base)
                other.login(email, PASSWORD)
                lists.append((f"invoices list ({count:,})", other.cookie()))
        bench_floor(results, sizes, env, cookie, invoice_id, one_account)
        suffix = " (1 account)" if one_account else ""
        pages = [
            ("live summary", "/package/summary", {"method": "POST", "body": form, "hx": True}),
            ("My package", "/package", {}),
        ]
        if not one_account:
            pages += [
                (f"invoices list ({sizes.heavy})", "/invoices", {}),
                ("invoice PDF download", f"/invoices/{invoice_id}.pdf", {}),
            ]
        for name, path, spec in pages:
            headers = {"Cookie": cookie, "User-Agent": USER_AGENT}
            request: dict[str, Any] = {}
            if spec.get("hx"):
                headers.update(htmx)
                request = {"method": "POST", "body": urllib.parse.urlencode(spec["body"])}
            row = measure(name + suffix, base + path, sizes, headers=headers, **request)
            results.rows.append(row)
        for name, other_cookie in lists:
            headers = {"Cookie": other_cookie, "User-Agent": USER_AGENT}
            results.rows.append(measure(name, base + "/invoices", sizes, headers=headers))


# The stack's floor (scripts/bench_floor.py): what each layer every signed-in page needs
# costs by itself, with the portal's extensions, database, session cookie and gunicorn
# settings, so the page ratios can be read against what the stack leaves.
# Each route with the pages it is the least version of (their targets are read against it).
FLOOR_PAGE = "floor: + small translated Jinja page"
FLOOR_PDF = "floor: + stored PDF query and bytes"
FLOOR: list[tuple[str, str]] = [
    ("floor: constant, extensions installed", "/"),
    ("floor: a stored PDF's bytes from memory", "/bytes/{invoice_id}"),
    ("floor: signed session read", "/session"),
    ("floor: + one database round trip (SELECT 1)", "/query"),
    ("floor: + Flask-Login user (ORM get)", "/user"),
    (FLOOR_PDF, "/pdf/{invoice_id}"),
    (FLOOR_PAGE, "/page"),
]


def bench_floor(
    results: Results,
    sizes: Sizes,
    env: dict[str, str],
    cookie: str,
    invoice_id: str,
    one_account: bool = False,
) -> None:
    with gunicorn("bench_floor:from_environment()", env, sizes.workers, "/") as base:
        for name, path in FLOOR:
            if one_account and name != FLOOR_PAGE:
                continue
            headers = {"Cookie": cookie, "User-Agent": USER_AGENT}
            url = base + path.format(invoice_id=invoice_id)
            suffix = " (1 account)" if one_account else ""
            results.rows.append(measure(name + suffix, url, sizes, headers=headers))


# -- the background jobs ---------------------------------------------------------------------


def bench_issue(results: Results, sizes: Sizes, app: Any, env: dict[str, str]) -> None:
    startup, _ = flask_command(env, "plugins")  # the app's start-up alone
    add_unbilled_payments(app, sizes.issue)
    elapsed, out = flask_command(env, "invoices-issue")
    issued = int(out.split("invoices: ")[1].split()[0])
    assert issued == sizes.issue, out
    rate = issued / max(elapsed - startup, 1e-9)
    results.jobs.append(
        (
            "invoices issued (with PDF), 1 process",
            f"{rate:.1f}/s  ({issued} in {elapsed:.1f} s, start-up {startup:.1f} s)",
        )
    )


def reset_renewals(app: Any, marks: dict[str, int], period_end: dt.date, due: int) -> None:
    """Undo a renewal round: its rows go, the first ``due`` subscriptions are due again on
    ``period_end`` (a new date, so the provider sees new idempotency keys); an earlier run
    has already scheduled the others' next look for later."""
    from portal.infra.extensions import db

    with app.app_context(), db.engine.begin() as conn:
        for table in ("invoice_rendering", "invoice", "provider_event", "payment"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE id > :m"), {"m": marks[table]})
        for table in ("checkout_order", "notice"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE id > :m"), {"m": marks[table]})
        conn.execute(sa.text("DELETE FROM invoice_sequence WHERE year = 2026"))
        conn.execute(
            sa.text(
                "INSERT INTO invoice_sequence (seller_key, series, year, last_value) "
                "SELECT seller_key, series, year, count(*) FROM invoice WHERE year = 2026 "
                "GROUP BY seller_key, series, year"
            )
        )
        conn.execute(
            sa.text(
                "UPDATE subscription SET period_start = :start, period_end = :end, "
                "status = 'active', next_check_at = NULL, renewal_attempts = 0, "
                "retry_at = NULL, auto_renew = :on, next_period = NULL, next_currency = NULL"
            ),
            {"start": period_end - dt.timedelta(days=30), "end": period_end, "on": True},
        )
        conn.execute(
            sa.text(
                "UPDATE subscription SET period_end = :later, next_check_at = :look "
                "WHERE account_id NOT IN (SELECT account_id FROM subscription "
                "ORDER BY account_id LIMIT :due)"
            ),
            {
                "later": period_end + dt.timedelta(days=20),
                "look": dt.datetime(2026, 12, 14, tzinfo=dt.UTC).replace(tzinfo=None),
                "due": due,
            },
        )
    with app.app_context():
        analyze(db.engine)
        db.engine.dispose()


def table_marks(app: Any) -> dict[str, int]:
    from portal.infra.extensions import db

    names = ("invoice_rendering", "invoice", "provider_event", "payment", "checkout_order")
    with app.app_context(), db.engine.connect() as conn:
        marks = {
            t: int(conn.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one())
            for t in (*names, "notice")
        }
        db.engine.dispose()
    return marks


def bench_renewals(
    results: Results,
    sizes: Sizes,
    app: Any,
    env: dict[str, str],
    runners: list[tuple[int, float]],
    emulator: Any,
    invoices_too: bool = True,
) -> None:
    """Rounds of ``flask billing run`` over the due subscriptions: (runners, the emulator's
    latency per call). With the emulator answering at once each runner renews one at a time
    (its own cost); with a latency it keeps RENEWAL_THREADS (8) charges in flight.
    ``invoices_too=False`` (``--parts renewals``): the runs renew only
    (``--subscriptions-only``), so the invoices' PDFs do not take most of the time."""
    from portal.infra.extensions import db

    now = RUN_AT.isoformat()
    startup, _ = flask_command(env, "plugins")  # the app's start-up alone
    marks = table_marks(app)
    rates: dict[int, float] = {}  # renewals per second by number of runners (no latency)
    for round_number, (count, latency) in enumerate(runners):
        due = sizes.renewals if not latency else min(sizes.renewals, SLOW_RENEWALS)
        reset_renewals(app, marks, PERIOD_END - dt.timedelta(days=round_number), due)
        emulator.latency = latency
        command = [str(BIN / "flask"), "--app", "wsgi", "billing", "run", "--now", now]
        if not latency:
            # The runner's own cost: one renewal at a time (the emulator answers at once,
            # so threads would only share the same CPUs).
            command += ["--threads", "1"]
        if not invoices_too:
            command.append("--subscriptions-only")
        started = time.perf_counter()
        processes = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(count)
        ]
        outputs = [p.communicate()[0] for p in processes]
        elapsed = time.perf_counter() - started
        if any(p.returncode for p in processes):
            raise RuntimeError(f"billing run failed: {outputs}")
        renewed = sum(int(o.split(" checked, ")[1].split(" renewed")[0]) for o in outputs)
        # Each runner reports how long its two stages took: renewals (charge, next period),
        # then the invoices (PDF) and e-mail; runners work in parallel, the slowest counts.
        stages = [
            re.search(r"subscriptions in ([\d.]+) s, invoices and e-mail (?:in ([\d.]+) s)?", o)
            for o in outputs
        ]
        assert all(stages), outputs
        renewing = max(float(m.group(1)) for m in stages if m)
        invoicing = max(float(m.group(2) or 0) for m in stages if m)
        with app.app_context():
            invoices = db.session.scalar(
                sa.text("SELECT count(*) FROM invoice WHERE id > :m"), {"m": marks["invoice"]}
            )
            db.session.remove()
            db.engine.dispose()
        emulator.latency = 0.0
        assert renewed == due and invoices == (renewed if invoices_too else 0), (
            renewed,
            invoices,
            outputs,
        )
        runners_text = f"{count} runner{'s' if count > 1 else ''}"
        if latency:
            runners_text += f", the provider answering in {latency * 1000:.0f} ms"
        rate = renewed / max(renewing, 1e-9)
        verdict = ""
        if latency:
            verdict = f"; target ≥ 20/s {'met' if rate >= 20 else 'MISSED'}"
        elif results.backend == "postgresql" and count == 1:
            verdict = f"; target ≥ 100/s {'met' if rate >= 100 else 'MISSED'}"
        elif results.backend == "postgresql" and 1 in rates:
            scale = rate / rates[1]
            verdict = (
                f"; {scale:.2f}× one runner, target ≥ 1.6× {'met' if scale >= 1.6 else 'MISSED'}"
            )
        if not latency:
            rates[count] = rate
        results.jobs.append(
            (
                f"subscriptions renewed (charged, next period on), {runners_text}",
                f"{rate:.1f}/s  ({renewed} in {renewing:.1f} s){verdict}",
            )
        )
        rows = 1
        if invoices_too:
            rows = 3
            results.jobs.append(
                (
                    f"their invoices issued (with PDF) and e-mailed, {runners_text}",
                    f"{invoices / max(invoicing, 1e-9):.1f}/s  ({invoices} in {invoicing:.1f} s)",
                )
            )
            results.jobs.append(
                (
                    f"the whole billing run, {runners_text}",
                    f"{renewed / max(elapsed - startup, 1e-9):.1f} subscriptions/s  "
                    f"({elapsed:.1f} s, start-up {startup:.1f} s)",
                )
            )
        for job in results.jobs[-rows:]:
            print(f"[{results.backend}] {job}", flush=True)


def bench_charges(
    results: Results, sizes: Sizes, env: dict[str, str], cards: list[tuple[str, str]], workdir: Path
) -> None:
    """The charges alone (scripts/bench_charges.py): the most one process can charge through
    the plugin and the emulator, the floor under one runner's renewals."""
    path = workdir / "cards.json"
    path.write_text(json.dumps(cards))
    count = min(sizes.renewals, 2000)
    done = subprocess.run(
        [str(BIN / "python"), str(ROOT / "scripts" / "bench_charges.py"), str(path), str(count)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = float(done.stdout.split(" in ")[1].split()[0])
    results.jobs.append(
        (
            "floor: the renewals' Stripe charges alone (no database), 1 process",
            f"{count / seconds:.1f}/s  ({count} in {seconds:.1f} s)",
        )
    )
    print(f"[{results.backend}] {results.jobs[-1]}", flush=True)


# -- one database ------------------------------------------------------------------------------


def first_invoice(app: Any) -> str:
    """The public id of the heavy account's newest invoice (the PDF the pages download; on
    the list's first page, which shows the newest 50)."""
    from portal.infra.extensions import db
    from portal.infra.models import Invoice

    with app.app_context():
        invoice_id = db.session.scalar(
            sa.select(Invoice.public_id)
            .where(Invoice.account_id == 1)
            .order_by(Invoice.id.desc())
            .limit(1)
        )
        db.session.remove()
        db.engine.dispose()
    assert invoice_id is not None
    return str(invoice_id)


def bench_one_account(
    results: Results, backend: str, sizes: Sizes, workdir: Path, emulator: Any
) -> None:
    """My package and the summary (and the floor page) on a database of one account with
    ``heavy`` invoices: the same pages as on 10,000 accounts, for their cost against the
    number of accounts. Ratios to the bare app measured in the main run."""
    small = replace(sizes, accounts=1, invoices=sizes.heavy)
    url = create_database(backend, workdir)
    env = environment(url, workdir, emulator)
    flask_command(env, "db", "upgrade")
    cards = [emulator.save_card(GOOD_CARD, email="user0@bench.example.com")]
    app = make_app(url, emulator)
    seed(app, small, cards)
    invoice_id = first_invoice(app)
    first = len(results.rows)
    pages_and_floor(results, small, env, invoice_id, one_account=True)
    bare = [row.rps for row in results.rows if row.name.startswith("bare Flask app")]
    for row in results.rows[first:]:
        row.ratio = row.rps / (sum(bare) / len(bare)) if bare else None


def run_backend(backend: str, sizes: Sizes, workdir: Path, parts: set[str]) -> Results:
    from pakiet_stripe.emulator import StripeEmulator
    from portal.infra.extensions import db

    results = Results(backend=backend)
    emulator = StripeEmulator(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET).start()
    url = create_database(backend, workdir)
    try:
        env = environment(url, workdir, emulator)
        flask_command(env, "db", "upgrade")
        started = time.perf_counter()
        cards = [
            emulator.save_card(GOOD_CARD, email=f"user{n}@bench.example.com")
            for n in range(sizes.accounts)
        ]
        app = make_app(url, emulator)
        seed(app, sizes, cards)
        results.seed_seconds = time.perf_counter() - started
        print(f"[{backend}] seeded in {results.seed_seconds:.0f} s", flush=True)
        invoice_id = first_invoice(app)
        if "web" in parts:
            bench_web(results, sizes, env, invoice_id)
            print(f"[{backend}] pages measured", flush=True)
        rounds = [(1, 0.0), (2, 0.0), (1, SLOW_PROVIDER)] if backend == "postgresql" else [(1, 0.0)]
        if "jobs" in parts:
            bench_issue(results, sizes, app, env)
            print(f"[{backend}] {results.jobs[-1]}", flush=True)
            bench_renewals(results, sizes, app, env, rounds, emulator)
            bench_charges(results, sizes, env, cards, workdir)
        elif "renewals" in parts:  # the renewals of "jobs" alone, without their invoices
            bench_renewals(results, sizes, app, env, rounds, emulator, invoices_too=False)
        with app.app_context():
            db.engine.dispose()
        if "web" in parts:
            drop_database(backend, workdir)
            bench_one_account(results, backend, sizes, workdir, emulator)
            print(f"[{backend}] pages measured with one account", flush=True)
    finally:
        emulator.stop()
        drop_database(backend, workdir)
    return results


# -- the report --------------------------------------------------------------------------------

# Each page's target: its req/s as a ratio to the floor measured in the same run (issue 26):
# the HTML pages to the least translated page, the PDF download to the least PDF download.
TARGETS: dict[str, tuple[str, float]] = {
    "live summary": (FLOOR_PAGE, 0.70),
    "My package": (FLOOR_PAGE, 0.60),
    "invoices list (120)": (FLOOR_PAGE, 0.50),
    "invoice PDF download": (FLOOR_PDF, 1.20),
}
P99_MS = 50
# Cost constant in data size: these rows' req/s within 20 % of each other.
SCALE_TOLERANCE = 0.20


def scale_groups(sizes: Sizes) -> list[tuple[str, list[str]]]:
    return [
        (
            f"invoices list at {sizes.light:,}, {sizes.heavy:,} and {sizes.huge:,} invoices",
            [
                f"invoices list ({sizes.light:,})",
                f"invoices list ({sizes.heavy})",
                f"invoices list ({sizes.huge:,})",
            ],
        ),
        (
            f"live summary at 1 and {sizes.accounts:,} accounts",
            ["live summary (1 account)", "live summary"],
        ),
        (
            f"My package at 1 and {sizes.accounts:,} accounts",
            ["My package (1 account)", "My package"],
        ),
    ]


def verdicts(results: Results, sizes: Sizes) -> list[str]:
    """The targets, judged on this run's numbers."""
    rows = {row.name: row for row in results.rows}
    lines = []
    for page, (floor, target) in TARGETS.items():
        row, under = rows.get(page), rows.get(floor)
        if row is None or under is None or not under.rps:
            continue
        ratio = row.rps / under.rps
        lines.append(
            f"- {page}: {ratio:.2f} of the floor's '{floor.removeprefix('floor: + ')}' "
            f"(target ≥ {target:.2f}) {'met' if ratio >= target else 'MISSED'}; "
            f"p99 {row.p99:.0f} ms (target < {P99_MS}) {'met' if row.p99 < P99_MS else 'MISSED'}"
        )
    for label, names in scale_groups(sizes):
        found = [rows[name] for name in names if name in rows]
        if len(found) < 2:
            continue
        low, high = min(r.rps for r in found), max(r.rps for r in found)
        spread = 1 - low / high if high else 0.0
        values = ", ".join(f"{r.rps:.0f}" for r in found)
        lines.append(
            f"- {label}: {values} req/s, spread {spread:.0%} (target ≤ "
            f"{SCALE_TOLERANCE:.0%}) {'met' if spread <= SCALE_TOLERANCE else 'MISSED'}"
        )
    return lines


def report(results: Results, sizes: Sizes) -> str:
    if not results.rows:  # no pages measured (--parts jobs or renewals)
        lines = [f"### {results.backend}"]
    else:
        lines = [
            f"### {results.backend}: {sizes.connections} connections, {sizes.workers} sync "
            f"workers, {sizes.duration} s per page",
            "",
            "| page | req/s | p50 ms | p99 ms | ratio to bare (mean of its two runs) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
    for row in results.rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "1"
        errors = f" ({row.errors} errors)" if row.errors else ""
        lines.append(
            f"| {row.name}{errors} | {row.rps:.0f} | {row.p50:.0f} | {row.p99:.0f} | {ratio} |"
        )
    judged = verdicts(results, sizes)
    if judged:
        lines += ["", "Verdicts (each page against the floor measured in this run):", "", *judged]
    if results.jobs:
        lines += ["", "| background job | rate |", "| --- | --- |"]
        lines += [f"| {name} | {rate} |" for name, rate in results.jobs]
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return f"{os.cpu_count()} CPUs ({cpu}), {memory} RAM, Python {sys.version.split()[0]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small data set, short runs")
    parser.add_argument("--only", choices=["postgresql", "sqlite"], action="append")
    parser.add_argument(
        "--parts",
        choices=["web", "jobs", "renewals"],
        action="append",
        help="web: the pages; jobs: invoices, renewals (with their invoices) and charges;"
        " renewals: the renewals alone (default: web and jobs)",
    )
    parser.add_argument("--duration", type=int, help="seconds per page")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--renewals", type=int, help="due subscriptions (default 10,000)")
    parser.add_argument("--issue", type=int, help="invoices to issue (default 300)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    overrides = {
        k: v
        for k, v in (
            ("duration", args.duration),
            ("connections", args.connections),
            ("workers", args.workers),
            ("renewals", args.renewals),
            ("issue", args.issue),
        )
        if v is not None
    }
    sizes = Sizes(**{**sizes.__dict__, **overrides})
    if shutil.which("node") is None:
        print("the load generator needs Node.js (as `make install` does)", file=sys.stderr)
        return 2
    backends = args.only or ["postgresql", "sqlite"]
    parts = set(args.parts or ["web", "jobs"])
    workdir = Path(tempfile.mkdtemp(prefix="pakiet-bench-"))
    os.environ["PAKIET_INSTANCE_PATH"] = str(workdir)  # no developer's pakiet.cfg
    print(
        f"Pakiet benchmark: {sizes.accounts} accounts, {sizes.invoices} invoices "
        f"(one account with {sizes.heavy}), on {machine()}",
        flush=True,
    )
    tables = []
    try:
        for backend in backends:
            tables.append(report(run_backend(backend, sizes, workdir, parts), sizes))
            print(tables[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n" + "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
