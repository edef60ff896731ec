"""``make soak``: mixed traffic and the billing run at once, with zero errors (issue 10.5).

On PostgreSQL (its own database ``pakiet_soak``, created and dropped) it:

1. seeds the benchmark's data set with ``scripts/bench.py``: 10,000 accounts with users,
   billing data, a paid monthly Standard subscription due on 2026-12-01 and a card saved in
   the Stripe emulator, and 100,000 paid invoices with stored PDFs (one account with 120),
   plus 100 "shoppers" whose period ends later (they place orders and switch auto-renewal,
   which would change what the renewal run must do, so they are not among the due ones);
2. starts the portal under gunicorn (2 sync workers), logs in 200 customers of the due
   accounts and the 100 shoppers through the real form, and drives mixed traffic for
   5 minutes at 16 connections with a Node.js closed-loop generator: My package, the live
   summary (HTMX, varied packages, periods, agents and conversations, some refused with
   422), the invoices list, PDF downloads, billing data, support; and POSTs with the pages'
   CSRF tokens: an invoice note, saving billing data, the auto-renewal switch, and placing
   an order paid with the saved card through the Stripe emulator. Every answer is checked:
   a 5xx, a connection error, a timeout or any status but the expected one is an error;
3. at the same time runs ``flask billing run --now 2026-12-01T01:30Z`` in two processes over
   the 10,000 due subscriptions, charged through the Stripe emulator, waits for both, then
   runs once more (it must find nothing to renew);
4. checks by SQL and against the emulator that each due subscription was renewed exactly
   once: its period advanced once, one order, one paid payment, one invoice, one invoice
   e-mail, one charge at the provider per idempotency key, invoice numbers gapless; and the
   same for the shoppers' payments.

It prints the tables and exits 1 on any error or discrepancy. Options: ``--quick`` (a small
data set, 20 s of traffic), ``--accounts``, ``--subscriptions``, ``--duration``,
``--connections``, ``--shoppers``, ``--readers``, ``--database``, ``--server``, ``--json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (scripts/bench.py: seeding, gunicorn, emulator, log-in)

ROOT = bench.ROOT
BIN = bench.BIN
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DATABASE = "pakiet_soak"
PERIOD_END = bench.PERIOD_END  # every due subscription renews on this day
RENEWED_END = dt.date(2027, 1, 1)  # ... and, renewed once, ends here
RUN_AT = bench.RUN_AT


@dataclass(frozen=True)
class Soak:
    accounts: int = 10_000  # seeded as the benchmark does (account 1 has 120 invoices)
    subscriptions: int = 10_000  # of them due for renewal at RUN_AT (the first ones)
    shoppers: int = 100  # extra accounts, not due: orders and the auto-renewal switch
    readers: int = 200  # logged-in customers among the due accounts
    invoices: int = 100_000
    duration: int = 300
    connections: int = 16
    workers: int = 2
    runners: int = 2
    timeout: float = 30.0  # seconds a request may take before it counts as an error
    # Seconds the Stripe emulator takes per call during the traffic and the run, as a real
    # Stripe does (~300 ms): the runners keep charges in flight, and neither can renew
    # everything before the other has started.
    provider_latency: float = 0.3


QUICK = Soak(accounts=300, subscriptions=300, shoppers=16, readers=16, invoices=3000, duration=20)


@dataclass
class Outcome:
    traffic: dict[str, Any] = field(default_factory=dict)
    billing: dict[str, Any] = field(default_factory=dict)
    checks: list[tuple[str, int, int]] = field(default_factory=list)  # (what, expected, found)
    problems: list[str] = field(default_factory=list)

    def check(self, what: str, expected: int, found: int) -> None:
        self.checks.append((what, expected, found))
        if expected != found:
            self.problems.append(f"{what}: expected {expected}, found {found}")


# -- database --------------------------------------------------------------------------------


def pg_admin(server: str, statement: str) -> None:
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


@contextmanager
def database(server: str, name: str) -> Iterator[str]:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"not a plain database name: {name}")
    pg_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_admin(server, f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}"
    finally:
        pg_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class Layout:
    """Who is who in the seeded data (account ids are consecutive from 1)."""

    due: tuple[int, int]  # first and last account id with a subscription due at RUN_AT
    shoppers: list[int]
    readers: list[int]


def arrange(app: Any, soak: Soak) -> Layout:
    """After :func:`bench.seed`: only the first ``subscriptions`` accounts stay due; the
    others (and the shoppers) get a period around today's date that RUN_AT does not end."""
    from portal.infra.extensions import db

    with app.app_context(), db.engine.begin() as conn:
        ids = [int(i) for i in conn.scalars(sa.text("SELECT id FROM account ORDER BY id"))]
        assert len(ids) == soak.accounts + soak.shoppers, len(ids)
        due = ids[: soak.subscriptions]
        today = dt.date.today()
        start = min(today, PERIOD_END) - dt.timedelta(days=5)
        end = max(today, PERIOD_END) + dt.timedelta(days=25)
        conn.execute(
            sa.text(
                "UPDATE subscription SET period_start = :start, period_end = :end "
                "WHERE account_id > :last_due"
            ),
            {"start": start, "end": end, "last_due": due[-1]},
        )
    with app.app_context():
        bench.analyze(db.engine)
        db.engine.dispose()
    step = max(1, len(due) // max(1, soak.readers))
    readers = sorted({due[0], *due[::step]})[: soak.readers]
    return Layout(due=(due[0], due[-1]), shoppers=ids[soak.accounts :], readers=readers)


def marks(app: Any) -> dict[str, int]:
    """The highest id of each table the run and the traffic write: what is new is above."""
    from portal.infra.extensions import db

    tables = ("checkout_order", "payment", "invoice", "invoice_rendering", "notice")
    with app.app_context(), db.engine.connect() as conn:
        found = {
            t: int(conn.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one())
            for t in tables
        }
        db.engine.dispose()
    return found


# -- customers -------------------------------------------------------------------------------


def email_of(account_id: int) -> str:
    return bench.HEAVY_EMAIL if account_id == 1 else f"user{account_id}@bench.example.com"


def log_in_all(app: Any, base: str, layout: Layout) -> list[dict[str, Any]]:
    """Log every reader and shopper in through the form: their cookies and CSRF tokens."""
    from portal.infra.extensions import db

    wanted = [(i, "reader") for i in layout.readers] + [(i, "shopper") for i in layout.shoppers]
    ids = [i for i, _ in wanted]
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT account_id, public_id FROM ("
                " SELECT account_id, public_id, row_number() OVER "
                "  (PARTITION BY account_id ORDER BY id DESC) AS n FROM invoice"
                "  WHERE account_id = ANY(:ids)) AS newest WHERE n <= 5"
            ),
            {"ids": ids},
        ).all()
        agents: dict[int, int] = dict(
            conn.execute(
                sa.text("SELECT account_id, agents FROM subscription WHERE account_id = ANY(:ids)"),
                {"ids": ids},
            ).all()
        )
        db.engine.dispose()
    invoices: dict[int, list[str]] = {}
    for account_id, public_id in rows:
        invoices.setdefault(int(account_id), []).append(str(public_id))

    def one(item: tuple[int, str]) -> dict[str, Any]:
        account_id, kind = item
        browser = bench.Browser(base)
        browser.login(email_of(account_id), bench.PASSWORD)
        token = browser.csrf("/package/edit")
        return {
            "account": account_id,
            "kind": kind,
            "cookie": browser.cookie(),
            "csrf": token,
            "invoices": invoices.get(account_id, []),
            "agents": int(agents[account_id]),
            "email": email_of(account_id),
        }

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, wanted))


# A closed-loop generator of mixed traffic in Node.js (as bench.py's LOAD_JS: one request per
# connection, as gunicorn's sync workers close each; latency from connect to the last byte).
# Each of ``connections`` loops owns a share of the logged-in customers and, one request at a
# time, picks a kind by weight and a customer of its share; state-changing kinds (order and
# pay, auto-renewal) only pick shoppers. Cookies follow Set-Cookie; redirects are followed
# with a GET, as a browser does. Every answer is checked against what that request must give.
MIXED_JS = r"""
const http = require('http');
const fs = require('fs');
const spec = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'));
const stats = {};
const failures = [];
const stat = (name) => stats[name] ||
  (stats[name] = {lat: [], statuses: {}, errors: 0, count: 0});
const rnd = (n) => Math.floor(Math.random() * n);
const pickOf = (list) => list[rnd(list.length)];

function cookieHeader(s) {
  return Object.entries(s.cookies).map(([k, v]) => `${k}=${v}`).join('; ');
}
function updateCookies(s, setCookie) {
  for (const line of setCookie || []) {
    const parts = line.split(';').map((p) => p.trim());
    const eq = parts[0].indexOf('=');
    const name = parts[0].slice(0, eq), value = parts[0].slice(eq + 1);
    const gone = !value || parts.some((p) => /^max-age=0$/i.test(p)) ||
      parts.some((p) => /^expires=.*1970/i.test(p));
    if (gone) delete s.cookies[name]; else s.cookies[name] = value;
  }
}
function send(s, method, path, form, hx) {
  return new Promise((resolve) => {
    const body = form ? new URLSearchParams(form).toString() : '';
    const headers = {'User-Agent': spec.user_agent, 'Cookie': cookieHeader(s),
                     'Connection': 'close'};
    if (hx) headers['HX-Request'] = 'true';
    if (form) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    const req = http.request({host: spec.host, port: spec.port, method, path, headers,
                              agent: false}, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (e) => resolve({error: String(e.message || e), ms: ms()}));
      res.on('end', () => {
        updateCookies(s, res.headers['set-cookie']);
        resolve({status: res.statusCode, headers: res.headers,
                 body: Buffer.concat(chunks), ms: ms()});
      });
    });
    req.setTimeout(spec.timeout_ms, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({error: String(e.message || e), ms: ms()}));
    req.end(body);
  });
}
// One request of kind ``name``: counted, and an error unless ``status`` and ``check`` hold.
async function call(name, s, method, path, {form = null, hx = false, status = 200,
                                             check = null} = {}) {
  const r = await send(s, method, path, form, hx);
  const st = stat(name);
  st.count++;
  let problem = null;
  if (r.error) problem = r.error;
  else {
    st.lat.push(r.ms);
    st.statuses[r.status] = (st.statuses[r.status] || 0) + 1;
    if (r.status !== status) problem = `status ${r.status}, expected ${status}`;
    else if (check) problem = check(r);
  }
  if (problem) {
    st.errors++;
    if (failures.length < 50) {
      const text = r.body ? r.body.toString('utf8', 0, 300).replace(/\s+/g, ' ') : '';
      failures.push({kind: name, account: s.account, path, problem, body: text});
    }
    return null;
  }
  return r;
}
const body = (r) => r.body.toString();
const has = (needle) => (r) => body(r).includes(needle) ? null : `no ${needle} in the answer`;
const to = (where) => (r) => (r.headers.location || '').replace(/^https?:\/\/[^/]+/, '')
  .split('?')[0] === where ? null : `redirected to ${r.headers.location}, expected ${where}`;

function summaryForm(s) {
  const pro = Math.random() < 0.4;
  const form = {csrf_token: s.csrf, package: pro ? 'pro' : 'standard',
    period: Math.random() < 0.7 ? 'month' : 'year', agents: String(1 + rnd(30)),
    conversations: String(pro ? 500 + 100 * rnd(16) : 100 + 100 * rnd(5)), currency: 'PLN'};
  const odd = Math.random();
  if (odd < 0.05) return [{...form, agents: '0'}, 422];  // refused: the reason is swapped in
  if (odd < 0.10) return [{...form, conversations: String(Number(form.conversations) + 50)},
                          422];
  return [form, 200];
}

const KINDS = {
  async package(s) { await call('My package', s, 'GET', '/package', {check: has('/logout')}); },
  async summary(s) {
    const [form, status] = summaryForm(s);
    await call('live summary (HTMX)', s, 'POST', '/package/summary',
               {form, hx: true, status, check: has('id="summary"')});
  },
  async invoices(s) {
    // An account with invoices sees their PDF links; one without, the list's empty page.
    await call('invoices list', s, 'GET', '/invoices',
               {check: has(s.invoices.length ? '.pdf' : 'id="main"')});
  },
  async pdf(s) {
    if (!s.invoices.length) return KINDS.package(s);
    await call('invoice PDF', s, 'GET', `/invoices/${pickOf(s.invoices)}.pdf`,
               {check: (r) => body(r).startsWith('%PDF') ? null : 'not a PDF'});
  },
  async billing(s) { await call('billing data page', s, 'GET', '/billing'); },
  async support(s) { await call('support page', s, 'GET', '/support'); },
  async note(s) {
    if (!s.invoices.length) return KINDS.package(s);
    s.n = (s.n || 0) + 1;
    await call('invoice note (POST, HTMX)', s, 'POST',
               `/invoices/${pickOf(s.invoices)}/note`,
               {form: {csrf_token: s.csrf, note: `Soak ${s.account}/${s.n}: PO ${rnd(1e6)}`},
                hx: true});
  },
  async save(s) {
    const form = {csrf_token: s.csrf, company_name: `Firma ${s.account} Sp. z o.o.`,
      street: `ul. Polna ${1 + rnd(200)}`, postcode: '00-001', city: 'Kraków', country: 'PL',
      vat_number: '', invoice_email: s.email};
    const r = await call('billing data save (POST)', s, 'POST', '/billing',
                         {form, status: 303, check: to('/billing')});
    if (r) await call('billing data page', s, 'GET', '/billing', {check: has('Kraków')});
  },
  async renew(s) {
    s.auto = s.auto === 'off' ? 'on' : 'off';
    await call('auto-renewal switch (POST, HTMX)', s, 'POST', '/payment-methods/auto-renew',
               {form: {csrf_token: s.csrf, auto_renew: s.auto}, hx: true});
  },
  async order(s) {
    if (s.agents >= 200) return KINDS.summary(s);
    const form = {csrf_token: s.csrf, package: 'standard', period: 'month',
                  agents: String(s.agents + 1), conversations: '100', currency: 'PLN'};
    const shown = await call('order: summary (HTMX)', s, 'POST', '/package/summary',
                             {form, hx: true, check: has('quote_digest')});
    if (!shown) return;
    const digest = (body(shown).match(/name="quote_digest" value="([^"]*)"/) || [])[1];
    const key = [...Array(32)].map(() => rnd(16).toString(16)).join('');
    const paid = await call('order: place and pay (POST)', s, 'POST', '/package/edit',
      {form: {...form, quote_digest: digest || '', idempotency_key: key, action: 'pay',
              provider: 'stripe'}, status: 303, check: to('/package')});
    if (!paid) return;
    s.agents += 1;
    s.paid = (s.paid || 0) + 1;
    await call('My package', s, 'GET', '/package', {check: has('/logout')});
  },
};

async function loop(own) {
  const readers = own, shoppers = own.filter((s) => s.kind === 'shopper');
  const table = spec.mix.filter(([kind]) => shoppers.length || !spec.shopping.includes(kind));
  const total = table.reduce((a, [, w]) => a + w, 0);
  let turn = 0;
  while (Date.now() < stopAt) {
    let x = Math.random() * total, kind = table[0][0];
    for (const [k, w] of table) { if ((x -= w) < 0) { kind = k; break; } }
    const pool = spec.shopping.includes(kind) ? shoppers : readers;
    await KINDS[kind](pool[turn++ % pool.length]);
  }
}

const sessions = spec.sessions.map((s) => ({...s, cookies: Object.fromEntries(
  s.cookie.split('; ').filter(Boolean).map((c) => [c.slice(0, c.indexOf('=')),
                                                   c.slice(c.indexOf('=') + 1)]))}));
const shares = [...Array(spec.connections)].map(() => []);
const readers = sessions.filter((s) => s.kind !== 'shopper');
const shoppers = sessions.filter((s) => s.kind === 'shopper');
readers.forEach((s, i) => shares[i % spec.connections].push(s));
shoppers.forEach((s, i) => shares[i % spec.connections].push(s));
const started = process.hrtime.bigint();
const stopAt = Date.now() + spec.seconds * 1000;
Promise.all(shares.filter((own) => own.length).map(loop)).then(() => {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const pick = (lat, q) => lat.length ? lat[Math.min(lat.length - 1,
    Math.floor(q * lat.length))] : 0;
  const kinds = {}, all = [];
  for (const [name, st] of Object.entries(stats)) {
    st.lat.sort((a, b) => a - b);
    all.push(...st.lat);
    kinds[name] = {requests: st.count, answered: st.lat.length, errors: st.errors,
                   statuses: st.statuses, p50: pick(st.lat, 0.5), p99: pick(st.lat, 0.99)};
  }
  all.sort((a, b) => a - b);
  const paid = {};
  for (const s of shoppers) if (s.paid) paid[s.account] = s.paid;
  process.stdout.write(JSON.stringify({seconds, kinds, failures, paid,
    p50: pick(all, 0.5), p99: pick(all, 0.99)}));
});
"""

MIX = [
    ("package", 18),
    ("summary", 24),
    ("invoices", 10),
    ("pdf", 12),
    ("billing", 8),
    ("support", 8),
    ("note", 5),
    ("save", 5),
    ("renew", 5),
    ("order", 5),
]
SHOPPING = ["renew", "order"]


def start_traffic(base: str, soak: Soak, sessions: list[dict[str, Any]], workdir: Path) -> Any:
    port = int(base.rsplit(":", 1)[1])
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "seconds": soak.duration,
        "connections": soak.connections,
        "timeout_ms": int(soak.timeout * 1000),
        "user_agent": bench.USER_AGENT,
        "mix": MIX,
        "shopping": SHOPPING,
        "sessions": sessions,
    }
    path = workdir / "traffic.json"
    path.write_text(json.dumps(spec))
    return subprocess.Popen(
        ["node", "-e", MIXED_JS, str(path)], stdout=subprocess.PIPE, text=True, cwd=workdir
    )


# -- the billing run ---------------------------------------------------------------------------


def start_runner(env: dict[str, str]) -> subprocess.Popen[str]:
    command = [str(BIN / "flask"), "--app", "wsgi", "billing", "run", "--now", RUN_AT.isoformat()]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_line(out: str) -> dict[str, int]:
    """The counts of a ``billing run`` report line."""
    found = {}
    for name in ("checked", "renewed", "failed", "suspended", "postponed", "errors"):
        match = re.search(rf"(\d+) {name}", out)
        found[name] = int(match.group(1)) if match else -1
    return found


def renewed_so_far(app: Any, layout: Layout, mark: int) -> int:
    from portal.infra.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        count = conn.execute(
            sa.text(
                "SELECT count(*) FROM payment WHERE id > :mark AND status = 'paid' "
                "AND account_id BETWEEN :lo AND :hi"
            ),
            {"mark": mark, "lo": layout.due[0], "hi": layout.due[1]},
        ).scalar_one()
        db.engine.dispose()
    return int(count)


# -- the checks --------------------------------------------------------------------------------


def verify(app: Any, emulator: Any, layout: Layout, mark: dict[str, int], outcome: Outcome) -> None:
    """Each due subscription renewed exactly once; each shopper's payment settled once."""
    from portal.infra.extensions import db

    lo, hi = layout.due
    due = hi - lo + 1
    args = {"lo": lo, "hi": hi, "pay": mark["payment"], "ord": mark["checkout_order"]}
    args |= {"inv": mark["invoice"], "note": mark["notice"]}

    def one(sql: str, **more: Any) -> int:
        return int(conn.execute(sa.text(sql), {**args, **more}).scalar_one())

    with app.app_context(), db.engine.connect() as conn:
        outcome.check(
            "due subscriptions renewed once (active, period 2026-12-01 to 2027-01-01)",
            due,
            one(
                "SELECT count(*) FROM subscription WHERE account_id BETWEEN :lo AND :hi "
                "AND status = 'active' AND period_start = :start AND period_end = :end",
                start=PERIOD_END,
                end=RENEWED_END,
            ),
        )
        renewal = "FROM payment p WHERE p.id > :pay AND p.account_id BETWEEN :lo AND :hi"
        outcome.check("renewal payments, all paid", due, one(f"SELECT count(*) {renewal}"))
        outcome.check(
            "renewal payments paid", due, one(f"SELECT count(*) {renewal} AND status = 'paid'")
        )
        outcome.check(
            "due accounts with exactly one renewal payment",
            due,
            one(
                "SELECT count(*) FROM (SELECT account_id FROM payment WHERE id > :pay "
                "AND account_id BETWEEN :lo AND :hi GROUP BY account_id "
                "HAVING count(*) = 1) AS once"
            ),
        )
        outcome.check(
            "renewal orders (one per due account, paid, the payment's)",
            due,
            one(
                "SELECT count(*) FROM checkout_order o JOIN payment p ON p.order_id = o.id "
                "WHERE o.id > :ord AND o.account_id BETWEEN :lo AND :hi AND o.status = 'paid' "
                "AND p.id > :pay AND p.amount_minor = o.total_minor"
            ),
        )
        outcome.check(
            "orders of due accounts created by the run",
            due,
            one(
                "SELECT count(*) FROM checkout_order WHERE id > :ord "
                "AND account_id BETWEEN :lo AND :hi"
            ),
        )
        outcome.check(
            "renewal invoices (one per renewal payment, same total)",
            due,
            one(
                "SELECT count(DISTINCT i.payment_id) FROM invoice i JOIN payment p "
                "ON p.id = i.payment_id WHERE p.id > :pay AND p.account_id BETWEEN :lo AND :hi "
                "AND i.kind = 'invoice' AND i.total_minor = p.amount_minor"
            ),
        )
        outcome.check(
            "invoices of due accounts issued during the soak",
            due,
            one("SELECT count(*) FROM invoice WHERE id > :inv AND account_id BETWEEN :lo AND :hi"),
        )
        outcome.check(
            "renewal invoices with exactly one invoice e-mail queued",
            due,
            one(
                "SELECT count(*) FROM invoice i WHERE i.id > :inv "
                "AND i.account_id BETWEEN :lo AND :hi AND (SELECT count(*) FROM notice n "
                "WHERE n.template = 'invoice' AND n.context->>'invoice_id' = i.id::text) = 1"
            ),
        )
        outcome.check(
            "invoice e-mails queued for due accounts",
            due,
            one(
                "SELECT count(*) FROM notice WHERE id > :note AND template = 'invoice' "
                "AND account_id BETWEEN :lo AND :hi"
            ),
        )
        outcome.check(
            "failure or suspension notices for due accounts",
            0,
            one(
                "SELECT count(*) FROM notice WHERE id > :note AND account_id BETWEEN :lo AND :hi "
                "AND template IN ('renewal_failed', 'suspended', 'payment_action')"
            ),
        )
        # The shoppers' orders paid in the traffic: each payment settled once, invoiced once.
        shop = "p.id > :pay AND NOT (p.account_id BETWEEN :lo AND :hi)"
        shop_payments = one(f"SELECT count(*) FROM payment p WHERE {shop}")
        outcome.billing["shopper_payments"] = shop_payments
        outcome.check(
            "shoppers' payments paid",
            shop_payments,
            one(f"SELECT count(*) FROM payment p WHERE {shop} AND p.status = 'paid'"),
        )
        outcome.check(
            "shoppers' payments paid, as the traffic saw them",
            int(sum(outcome.traffic.get("paid", {}).values())),
            shop_payments,
        )
        outcome.check(
            "shoppers' payments with one paid order each",
            shop_payments,
            one(
                "SELECT count(DISTINCT o.id) FROM payment p JOIN checkout_order o "
                f"ON o.id = p.order_id WHERE {shop} AND o.status = 'paid'"
            ),
        )
        outcome.check(
            "shoppers' payments with one invoice and one invoice e-mail each",
            shop_payments,
            one(
                "SELECT count(*) FROM payment p JOIN invoice i ON i.payment_id = p.id "
                f"WHERE {shop} AND (SELECT count(*) FROM notice n WHERE n.template = "
                "'invoice' AND n.context->>'invoice_id' = i.id::text) = 1"
            ),
        )
        outcome.check(
            "invoice e-mails queued twice for one invoice",
            0,
            one(
                "SELECT count(*) FROM (SELECT context->>'invoice_id' FROM notice "
                "WHERE template = 'invoice' GROUP BY 1 HAVING count(*) > 1) AS twice"
            ),
        )
        # Gapless numbering in every series the soak wrote to.
        counters = conn.execute(
            sa.text(
                "SELECT i.seller_key, i.series, i.year, count(*), count(DISTINCT i.seq), "
                "min(i.seq), max(i.seq), max(s.last_value) FROM invoice i "
                "LEFT JOIN invoice_sequence s ON (s.seller_key, s.series, s.year) = "
                "(i.seller_key, i.series, i.year) WHERE (i.seller_key, i.series, i.year) IN "
                "(SELECT seller_key, series, year FROM invoice WHERE id > :inv) "
                "GROUP BY 1, 2, 3"
            ),
            args,
        ).all()
        for key, series, year, count, distinct, low, high, last in counters:
            name = f"invoice numbers {series}/{year} ({key[:8]}): 1..n without gap or repeat"
            outcome.check(name + ", count", int(high), int(count))
            outcome.check(name + ", distinct", int(count), int(distinct))
            outcome.check(name + ", first", 1, int(low))
            outcome.check(name + ", counter", int(high), int(last or 0))
        payments = conn.execute(
            sa.text(
                "SELECT p.account_id, p.public_id, p.charge_ref, p.idempotency_key, "
                "p.amount_minor, m.customer_ref FROM payment p "
                "JOIN payment_method m ON m.id = p.method_id WHERE p.id > :pay"
            ),
            args,
        ).all()
        due_customers = {
            str(ref)
            for (ref,) in conn.execute(
                sa.text(
                    "SELECT customer_ref FROM payment_method WHERE account_id BETWEEN :lo AND :hi"
                ),
                args,
            )
        }
        db.engine.dispose()

    # Against the provider: one charge per payment and idempotency key, none for anyone else.
    intents = emulator.objects("payment_intent")
    succeeded = [i for i in intents if i["status"] == "succeeded"]
    by_payment = Counter(str(i["metadata"].get("payment_id")) for i in succeeded)
    by_customer = Counter(str(i["customer"]) for i in succeeded if i["customer"] in due_customers)
    intent_of = {str(i["metadata"].get("payment_id")): i for i in succeeded}
    creations = Counter(
        c.idempotency_key
        for c in emulator.api_calls
        if c.method == "POST" and c.path == "/v1/payment_intents" and not c.replayed
    )
    replays = sum(
        1
        for c in emulator.api_calls
        if c.method == "POST" and c.path == "/v1/payment_intents" and c.replayed
    )
    renewals = [p for p in payments if lo <= p.account_id <= hi]
    outcome.check(
        "renewal payments charged exactly once at the emulator (by payment id)",
        len(renewals),
        sum(1 for p in renewals if by_payment[p.public_id] == 1),
    )
    outcome.check(
        "renewal charges at the emulator matching the payment (intent id, amount)",
        len(renewals),
        sum(
            1
            for p in renewals
            if p.public_id in intent_of
            and intent_of[p.public_id]["id"] == p.charge_ref
            and intent_of[p.public_id]["amount"] == p.amount_minor
        ),
    )
    outcome.check(
        "idempotency keys of the renewals executed exactly once at the emulator",
        len(renewals),
        sum(1 for p in renewals if creations[p.idempotency_key] == 1),
    )
    outcome.check(
        "due customers charged exactly once at the emulator",
        due,
        sum(1 for ref in due_customers if by_customer[ref] == 1),
    )
    outcome.check(
        "successful charges at the emulator for due customers",
        due,
        sum(by_customer.values()),
    )
    bought = [p for p in payments if not lo <= p.account_id <= hi]
    outcome.check(
        "shoppers' payments charged exactly once at the emulator",
        len(bought),
        sum(1 for p in bought if by_payment[p.public_id] == 1),
    )
    outcome.check(
        "successful charges at the emulator in all",
        len(payments),
        len(succeeded),
    )
    outcome.billing["emulator_replays"] = replays


# -- the report --------------------------------------------------------------------------------


def traffic_table(traffic: dict[str, Any], soak: Soak) -> str:
    seconds = float(traffic["seconds"])
    lines = [
        f"### Mixed traffic: {seconds:.0f} s, {soak.connections} connections, "
        f"{soak.workers} sync workers, {traffic['customers']} logged-in customers",
        "",
        "| request | count | req/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    kinds = traffic["kinds"]
    for name in sorted(kinds, key=lambda n: -kinds[n]["requests"]):
        row = kinds[name]
        lines.append(
            f"| {name} | {row['requests']} | {row['requests'] / seconds:.1f} | "
            f"{row['p50']:.0f} | {row['p99']:.0f} | {row['errors']} |"
        )
    lines.append(
        f"| **all** | {traffic['requests']} | {traffic['requests'] / seconds:.1f} | "
        f"{traffic['p50']:.0f} | {traffic['p99']:.0f} | {traffic['errors']} |"
    )
    return "\n".join(lines)


def billing_table(outcome: Outcome, soak: Soak) -> str:
    billing = outcome.billing
    shares = " + ".join(str(r["renewed"]) for r in billing["runners"])
    lines = [
        f"### Billing run: {billing['due']} due subscriptions, {soak.runners} runners "
        "started with the traffic",
        "",
        "| | |",
        "| --- | --- |",
        f"| renewed (per runner) | {billing['renewed']} ({shares}) |",
        f"| renewed while the traffic ran | {billing['during_traffic']} |",
        f"| wall time | {billing['seconds']:.0f} s ({billing['rate']:.1f}/s) |",
        f"| failed, postponed, errors (runners) | {billing['failed']}, {billing['postponed']}, "
        f"{billing['errors']} |",
        f"| catch-up run afterwards | {billing['catch_up']['renewed']} renewed, "
        f"{billing['catch_up']['errors']} errors |",
        f"| shoppers' payments during the traffic | {billing.get('shopper_payments', 0)} |",
        f"| idempotent replays at the emulator | {billing.get('emulator_replays', 0)} |",
        "",
        "| check | expected | found |",
        "| --- | ---: | ---: |",
    ]
    for what, expected, found in outcome.checks:
        mark = "" if expected == found else " **MISMATCH**"
        lines.append(f"| {what}{mark} | {expected} | {found} |")
    return "\n".join(lines)


def summarise_traffic(raw: dict[str, Any], customers: int) -> dict[str, Any]:
    kinds = raw["kinds"].values()
    return {
        **raw,
        "customers": customers,
        "requests": sum(int(row["requests"]) for row in kinds),
        "errors": sum(int(row["errors"]) for row in kinds),
    }


# -- main --------------------------------------------------------------------------------------


def soak_run(soak: Soak, server: str, name: str, workdir: Path) -> Outcome:
    from pakiet_stripe.emulator import StripeEmulator

    outcome = Outcome()
    emulator = StripeEmulator(api_key=bench.API_KEY, webhook_secret=bench.WEBHOOK_SECRET).start()
    processes: list[subprocess.Popen[str]] = []
    try:
        with database(server, name) as url:
            env = bench.environment(url, workdir, emulator)
            # Every customer here comes from 127.0.0.1: the per-address limits of log-in and
            # of the billing form (VIES protection) would refuse all but a few of them.
            env["PAKIET_LOGIN_RATE_LIMIT"] = "100000 per minute"
            env["PAKIET_VAT_CHECK_RATE_LIMIT"] = "100000 per minute"
            env["PAKIET_NOTE_RATE_LIMIT"] = "100000 per minute"
            bench.flask_command(env, "db", "upgrade")
            started = time.perf_counter()
            total = soak.accounts + soak.shoppers
            cards = [
                emulator.save_card(bench.GOOD_CARD, email=email_of(n + 1)) for n in range(total)
            ]
            app = bench.make_app(url, emulator)
            sizes = bench.Sizes(accounts=total, invoices=soak.invoices, heavy=120)
            bench.seed(app, sizes, cards)
            layout = arrange(app, soak)
            mark = marks(app)
            print(
                f"seeded {total} accounts ({soak.subscriptions} due, {soak.shoppers} shoppers) "
                f"and {soak.invoices} invoices in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            with bench.gunicorn("wsgi:app", env, soak.workers, "/login") as base:
                started = time.perf_counter()
                sessions = log_in_all(app, base, layout)
                print(
                    f"{len(sessions)} customers logged in ({len(layout.readers)} of the due "
                    f"accounts, {len(layout.shoppers)} shoppers) in "
                    f"{time.perf_counter() - started:.0f} s; traffic for {soak.duration} s "
                    f"and {soak.runners} billing runners start now",
                    flush=True,
                )
                emulator.latency = soak.provider_latency
                traffic = start_traffic(base, soak, sessions, workdir)
                processes.append(traffic)
                billing_started = time.perf_counter()
                runners = [start_runner(env) for _ in range(soak.runners)]
                processes += runners
                out, _ = traffic.communicate()
                if traffic.returncode != 0:
                    raise RuntimeError("the traffic generator failed")
                outcome.traffic = summarise_traffic(json.loads(out), len(sessions))
                during = renewed_so_far(app, layout, mark["payment"])
            print(
                f"traffic done: {outcome.traffic['requests']} requests, "
                f"{outcome.traffic['errors']} errors; {during} renewed meanwhile",
                flush=True,
            )
            outputs = []
            for runner in runners:
                stdout, stderr = runner.communicate()
                if runner.returncode != 0:
                    outcome.problems.append(f"a billing runner failed: {stderr[-2000:]}")
                outputs.append(run_line(stdout))
            seconds = time.perf_counter() - billing_started
            _, catch_up_out = bench.flask_command(
                env, "billing", "run", "--now", RUN_AT.isoformat()
            )
            catch_up = run_line(catch_up_out)
            due = soak.subscriptions
            renewed = sum(o["renewed"] for o in outputs)
            outcome.billing = {
                "due": due,
                "runners": outputs,
                "renewed": renewed,
                "during_traffic": during,
                "seconds": seconds,
                "rate": renewed / seconds if seconds else 0.0,
                "failed": sum(o["failed"] for o in outputs),
                "postponed": sum(o["postponed"] for o in outputs),
                "errors": sum(o["errors"] for o in outputs),
                "catch_up": catch_up,
            }
            print(f"billing done: {renewed} renewed in {seconds:.0f} s", flush=True)
            outcome.check("renewed, as the runners report", due, renewed)
            outcome.check(
                "failed charges, postponed or errors in the runners",
                0,
                outcome.billing["failed"]
                + outcome.billing["postponed"]
                + outcome.billing["errors"],
            )
            outcome.check("renewed by the catch-up run", 0, catch_up["renewed"])
            verify(app, emulator, layout, mark, outcome)
            from portal.infra.extensions import db

            with app.app_context():
                db.engine.dispose()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        emulator.stop()
    if outcome.traffic.get("errors"):
        outcome.problems.append(f"{outcome.traffic['errors']} traffic errors")
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small data set, 20 s")
    parser.add_argument("--accounts", type=int, help="accounts seeded (default 10,000)")
    parser.add_argument("--subscriptions", type=int, help="of them due (default: all)")
    parser.add_argument("--shoppers", type=int, help="accounts placing orders (default 100)")
    parser.add_argument("--readers", type=int, help="due accounts logged in (default 200)")
    parser.add_argument("--invoices", type=int, help="invoices seeded (default 100,000)")
    parser.add_argument("--duration", type=int, help="seconds of traffic (default 300)")
    parser.add_argument("--connections", type=int, help="default 16")
    parser.add_argument("--workers", type=int, help="gunicorn sync workers (default 2)")
    parser.add_argument(
        "--provider-latency", type=float, help="seconds per Stripe call (default 0.3)"
    )
    parser.add_argument("--server", default=SERVER, help=f"PostgreSQL server (default {SERVER})")
    parser.add_argument("--database", default=DATABASE, help="created and dropped")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    soak = QUICK if args.quick else Soak()
    overrides = {
        k: getattr(args, k)
        for k in (
            "accounts",
            "subscriptions",
            "shoppers",
            "readers",
            "invoices",
            "duration",
            "connections",
            "workers",
            "provider_latency",
        )
        if getattr(args, k) is not None
    }
    if "accounts" in overrides and "subscriptions" not in overrides:
        overrides["subscriptions"] = overrides["accounts"]
    soak = Soak(**{**asdict(soak), **overrides})
    if not 0 < soak.subscriptions <= soak.accounts or soak.shoppers < 1:
        parser.error("need 0 < subscriptions <= accounts and at least one shopper")
    if shutil.which("node") is None:
        print("the load generator needs Node.js (as `make install` does)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="pakiet-soak-"))
    os.environ["PAKIET_INSTANCE_PATH"] = str(workdir)  # no developer's pakiet.cfg
    print(f"Pakiet soak on {bench.machine()}", flush=True)
    try:
        outcome = soak_run(soak, args.server.rstrip("/"), args.database, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(traffic_table(outcome.traffic, soak))
    print()
    print(billing_table(outcome, soak))
    for failure in outcome.traffic.get("failures", [])[:20]:
        print(f"  traffic error: {failure}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "traffic": outcome.traffic,
                    "billing": outcome.billing,
                    "checks": outcome.checks,
                    "problems": outcome.problems,
                },
                default=str,
            )
        )
    if outcome.problems:
        print("\nSOAK FAILED:\n  " + "\n  ".join(outcome.problems))
        return 1
    print("\nsoak passed: zero errors, zero double effects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
