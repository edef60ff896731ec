"""The renewal stage alone, for comparing two versions of it on one machine (issue 26).

``make bench`` times whole billing runs, whose invoices (a PDF each) take most of a run's
time; this times only what renews: the claims, the attempts, the charges through the Stripe
emulator (in a process of its own, as Stripe would be) and the outcomes, one runner and one
thread, the emulator answering at once (the runner's own cost).

    .venv/bin/python scripts/bench_renewals.py [--due 1000] [--rounds 3] [--batch N]

It seeds ``due`` accounts in a database of its own (``pakiet_bench_renewals`` on the
PostgreSQL at 127.0.0.1:5432, dropped at the end) with ``make bench``'s seed, then renews
them ``rounds`` times (each round a new period end, so new idempotency keys) and prints
each round's rate and the best. Run it on two commits to compare them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (scripts/bench.py: the seed and the database helpers)

DATABASE = "pakiet_bench_renewals"
URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"


def serve_emulator(queue: Any, accounts: int) -> None:
    """The Stripe emulator in a process of its own, with a card saved for each account."""
    from pakiet_stripe.emulator import StripeEmulator

    emulator = StripeEmulator(api_key=bench.API_KEY, webhook_secret=bench.WEBHOOK_SECRET)
    emulator.start()
    cards = [
        emulator.save_card(bench.GOOD_CARD, email=f"user{n}@bench.example.com")
        for n in range(accounts)
    ]
    queue.put((emulator.base_url, cards))
    while True:
        time.sleep(3600)


class Emulator:
    """What bench's helpers read of an emulator: its address."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--due", type=int, default=1000, help="due subscriptions (1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, help="RENEWAL_BATCH (default: the portal's)")
    args = parser.parse_args()

    queue: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve_emulator, args=(queue, args.due), daemon=True)
    server.start()
    base_url, cards = queue.get(timeout=300)
    emulator = Emulator(base_url)
    workdir = Path(tempfile.mkdtemp(prefix="pakiet-bench-renewals-"))
    bench.pg_admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    bench.pg_admin(f"CREATE DATABASE {DATABASE}")
    try:
        bench.flask_command(bench.environment(URL, workdir, emulator), "db", "upgrade")
        app = bench.make_app(URL, emulator)
        if args.batch:
            app.config["RENEWAL_BATCH"] = args.batch
        sizes = replace(bench.QUICK, accounts=args.due, invoices=args.due, heavy=1, huge=1, light=1)
        bench.seed(app, sizes, cards)
        marks = bench.table_marks(app)
        rates = [renew_round(app, marks, n, args.due) for n in range(args.rounds)]
        print(f"best: {max(rates):.1f} renewals/s (batch {batch_of(app)}, {bench.machine()})")
    finally:
        server.terminate()
        bench.pg_admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    return 0


def batch_of(app: Any) -> int:
    from portal.rules import lifecycle

    # (1 on a commit before the batches, which this script is also run on to compare)
    return int(getattr(lifecycle.settings_for(app), "renewal_batch", 1))


def renew_round(app: Any, marks: dict[str, int], number: int, due: int) -> float:
    """One round: every account due on a new period end, renewed by one thread."""
    from portal.infra.extensions import db
    from portal.rules import lifecycle

    bench.reset_renewals(app, marks, bench.PERIOD_END - dt.timedelta(days=number + 1), due)
    with app.app_context():
        deps = lifecycle.deps_for(app)
        report = lifecycle.Report()
        started = time.perf_counter()
        lifecycle._renew_due(bench.RUN_AT, deps, lifecycle._Budget(None), report)
        elapsed = time.perf_counter() - started
        db.session.remove()
    assert report.renewed == due and report.errors == 0, report.line()
    rate = report.renewed / elapsed
    print(f"round {number + 1}: {report.renewed} renewed in {elapsed:.1f} s, {rate:.1f}/s")
    return rate


if __name__ == "__main__":
    sys.exit(main())
