"""`make run`: the portal and the provider emulators in one process, on this machine.

The emulators (Stripe, PayPal, VIES, NBP, ČNB, KSeF) listen on fixed loopback ports (any free ones
with ``--free-ports``) and deliver their webhooks to the portal; the portal's plugins are
pointed at them through ``PLUGIN_CONFIG``. The background run (``flask billing run``:
renewals, notices, suspensions, retries) runs every minute, as cron would run it in
production. Nothing here talks to the internet. Stop everything with Ctrl-C (or SIGTERM).

At start the demo data is made true (``portal.demo.complete``: billing information, the
payment and invoice of each paid demo account's current period) and the Stripe emulator
is given the demo's saved cards and payments under their fixed ids, so renewals and refunds
of the demo accounts work; both are no-ops for a database without the demo accounts.

When everything listens, one line ``PAKIET_READY {json}`` gives the portal's URL, the
emulators' and the plugin configuration (for tests that start this script; ``--port 0``
takes a free port for the portal).

With real keys in ``instance/pakiet.cfg`` run the portal alone instead
(``flask --app wsgi run`` or gunicorn): the same plugin code talks to the real services.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from werkzeug.serving import make_server

from pakiet_cnb.emulator import CnbEmulator
from pakiet_ksef.emulator import KsefEmulator
from pakiet_nbp.emulator import NbpEmulator
from pakiet_paypal.emulator import PayPalEmulator
from pakiet_stripe.client import to_stripe_amount
from pakiet_stripe.emulator import StripeEmulator
from pakiet_vies.emulator import ViesEmulator

STRIPE_KEY = "sk_test_pakiet_demo"
STRIPE_SECRET = "whsec_pakiet_demo"
PAYPAL_ID, PAYPAL_SECRET, PAYPAL_WEBHOOK = "pakiet-demo-client", "pakiet-demo-secret", "WH-DEMO"
PORTS = {
    "stripe": 12111,
    "paypal": 12112,
    "vies": 12113,
    "nbp": 12114,
    "cnb": 12115,
    "ksef": 12116,
}
READY = "PAKIET_READY"

log = logging.getLogger("devserver")


def billing_every_minute(app: Any, stop: threading.Event, every: float = 60) -> None:
    """What cron does in production: ``flask --app wsgi billing run`` every minute."""
    from portal.rules import lifecycle

    while not stop.wait(every):
        with app.app_context():
            try:
                report = lifecycle.run_now()
            except Exception:
                log.exception("billing run failed")
                continue
            if report.checked or report.notices_sent:
                print(report.line(), flush=True)


def seed_demo(app: Any, stripe: StripeEmulator) -> int:
    """Make the demo data true and give the Stripe emulator what it names; returns how many
    demo accounts were changed in the database (0 on a second start)."""
    from portal import demo
    from portal.infra.extensions import db
    from portal.infra.models import utcnow
    from portal.rules.money import Money

    with app.app_context():
        changed = demo.complete(app.extensions["pakiet.catalogue"], now=utcnow())
        seeds = demo.stripe_seeds()
        db.session.remove()
    for seed in seeds:
        created = int(seed.created.timestamp()) if seed.created else None
        stripe.seed_card(
            customer_id=seed.card.customer_ref,
            method_id=seed.card.method_ref,
            card=seed.card.number,
            email=seed.email,
            name=seed.name,
            exp=f"{seed.card.exp_month:02d}/{seed.card.exp_year % 100:02d}",
            created=created,
        )
        if seed.payment_public_id is not None and created is not None:
            stripe.seed_payment(
                intent_id=seed.card.intent_ref,
                charge_id=seed.card.charge_ref,
                customer_id=seed.card.customer_ref,
                method_id=seed.card.method_ref,
                amount=to_stripe_amount(Money(seed.amount_minor, seed.currency)),
                currency=seed.currency,
                created=created,
                metadata={"payment_id": seed.payment_public_id},
                refunded=to_stripe_amount(Money(seed.refunded_minor, seed.currency)),
            )
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="0: any free port")
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help=f"put the emulators on free ports instead of {min(PORTS.values())}-"
        f"{max(PORTS.values())}",
    )
    args = parser.parse_args(argv)

    # The portal's socket first: the emulators' webhooks and the links in e-mails need its
    # address, which --port 0 leaves to the system. The app is plugged in once it exists.
    holder: dict[str, Any] = {}

    def portal_app(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    server = make_server(args.host, args.port, portal_app, threaded=True)
    portal = f"http://{args.host}:{server.server_port}"

    def port(name: str) -> int:
        return 0 if args.free_ports else PORTS[name]

    stripe = StripeEmulator(
        api_key=STRIPE_KEY,
        webhook_secret=STRIPE_SECRET,
        webhook_url=f"{portal}/webhooks/stripe",
        webhook_delay=1.0,  # as in life: the customer is usually back before the webhook
        port=port("stripe"),
    ).start()
    paypal = PayPalEmulator(
        client_id=PAYPAL_ID,
        client_secret=PAYPAL_SECRET,
        webhook_id=PAYPAL_WEBHOOK,
        webhook_url=f"{portal}/webhooks/paypal",
        webhook_delay=1.0,
        port=port("paypal"),
    ).start()
    vies = ViesEmulator(latency=0.3, port=port("vies")).start()
    nbp = NbpEmulator(port=port("nbp")).start()
    cnb = CnbEmulator(port=port("cnb")).start()
    # The demo's seller is Polish: its B2B invoices go through KSeF (the emulator).
    ksef = KsefEmulator(port=port("ksef")).start()
    emulators = {
        "stripe": stripe,
        "paypal": paypal,
        "vies": vies,
        "nbp": nbp,
        "cnb": cnb,
        "ksef": ksef,
    }
    plugin_config = {
        "stripe": {
            "api_key": STRIPE_KEY,
            "webhook_secret": STRIPE_SECRET,
            "api_base": stripe.base_url,
        },
        "paypal": {
            "client_id": PAYPAL_ID,
            "client_secret": PAYPAL_SECRET,
            "webhook_id": PAYPAL_WEBHOOK,
            "base_url": paypal.base_url,
        },
        "vies": {"base_url": vies.base_url},
        "nbp": {"base_url": nbp.base_url},
        "cnb": {"base_url": cnb.base_url},
        "ksef": {"base_url": ksef.base_url, "token": "pakiet-demo-ksef-token"},
    }
    os.environ.setdefault("PAKIET_PLUGIN_CONFIG", json.dumps(plugin_config))
    # A laptop: the shipped SECRET_KEY and per-process rate limits are fine (and the billing
    # runner it starts inherits this).
    os.environ.setdefault("PAKIET_DEVELOPMENT", "1")
    os.environ.setdefault("PAKIET_PUBLIC_URL", portal)

    from portal import create_app

    app = create_app()
    holder["app"] = app
    stop = threading.Event()
    try:
        seed_demo(app, stripe)
        print(
            f"Emulators: Stripe {stripe.base_url}, PayPal {paypal.base_url}, VIES {vies.base_url},"
        )
        print(f"  NBP {nbp.base_url}, ČNB {cnb.base_url}, KSeF {ksef.base_url}")
        print("Test cards: 4242 4242 4242 4242 Visa, 5555 5555 5555 4444 Mastercard,")
        print(
            "  4000 0000 0000 0002 declined, 3782 822463 10005 Amex, 4000 0025 0000 3155 3-D Secure"
        )
        print(f"Pakiet runs at {portal}/")
        ready = {
            "url": portal,
            "emulators": {name: e.base_url for name, e in emulators.items()},
            "plugin_config": json.loads(os.environ["PAKIET_PLUGIN_CONFIG"]),
            "public_url": app.config["PUBLIC_URL"],
            "pid": os.getpid(),
        }
        print(f"{READY} {json.dumps(ready)}", flush=True)
        threading.Thread(target=billing_every_minute, args=(app, stop), daemon=True).start()
        # SIGTERM stops as Ctrl-C does: the server, then the emulators.
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    finally:
        stop.set()
        server.server_close()
        for emulator in emulators.values():
            emulator.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
