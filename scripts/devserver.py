"""`make run`: the portal and the provider emulators in one process, on this machine.

The emulators (Stripe, PayPal, VIES, NBP, ČNB) listen on fixed loopback ports and deliver their
webhooks to the portal; the portal's plugins are pointed at them through
``PLUGIN_CONFIG``. The background run (``flask billing run``: renewals, notices, suspensions,
retries) runs every minute, as cron would run it in production. Nothing here talks to the
internet. Stop everything with Ctrl-C.
With real keys in ``instance/pakiet.cfg`` run the portal alone instead
(``flask --app wsgi run`` or gunicorn): the same plugin code talks to the real services.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading

from pakiet_cnb.emulator import CnbEmulator
from pakiet_nbp.emulator import NbpEmulator
from pakiet_paypal.emulator import PayPalEmulator
from pakiet_stripe.emulator import StripeEmulator
from pakiet_vies.emulator import ViesEmulator

STRIPE_KEY = "sk_test_pakiet_demo"
STRIPE_SECRET = "whsec_pakiet_demo"
PAYPAL_ID, PAYPAL_SECRET, PAYPAL_WEBHOOK = "pakiet-demo-client", "pakiet-demo-secret", "WH-DEMO"


def billing_every_minute(app: object, stop: threading.Event) -> None:
    """What cron does in production: ``flask --app wsgi billing run`` every minute."""
    from portal import lifecycle

    while not stop.wait(60):
        with app.app_context():  # type: ignore[attr-defined]
            try:
                report = lifecycle.run_now()
            except Exception:
                logging.getLogger("devserver").exception("billing run failed")
                continue
            if report.checked or report.notices_sent:
                print(report.line(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    portal = f"http://{args.host}:{args.port}"

    stripe = StripeEmulator(
        api_key=STRIPE_KEY,
        webhook_secret=STRIPE_SECRET,
        webhook_url=f"{portal}/webhooks/stripe",
        webhook_delay=1.0,  # as in life: the customer is usually back before the webhook
        port=12111,
    ).start()
    paypal = PayPalEmulator(
        client_id=PAYPAL_ID,
        client_secret=PAYPAL_SECRET,
        webhook_id=PAYPAL_WEBHOOK,
        webhook_url=f"{portal}/webhooks/paypal",
        webhook_delay=1.0,
        port=12112,
    ).start()
    vies = ViesEmulator(latency=0.3, port=12113).start()
    nbp = NbpEmulator(port=12114).start()
    cnb = CnbEmulator(port=12115).start()
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
    }
    os.environ.setdefault("PAKIET_PLUGIN_CONFIG", json.dumps(plugin_config))

    from portal import create_app

    app = create_app()
    print(f"Emulators: Stripe {stripe.base_url}, PayPal {paypal.base_url}, VIES {vies.base_url},")
    print(f"  NBP {nbp.base_url}, ČNB {cnb.base_url}")
    print("Test cards: 4242 4242 4242 4242 Visa, 5555 5555 5555 4444 Mastercard,")
    print("  4000 0000 0000 0002 declined, 3782 822463 10005 Amex, 4000 0025 0000 3155 3-D Secure")
    print(f"Pakiet runs at {portal}/", flush=True)
    stop = threading.Event()
    threading.Thread(target=billing_every_minute, args=(app, stop), daemon=True).start()
    try:
        app.run(host=args.host, port=args.port, use_reloader=False)
    finally:
        stop.set()
        for emulator in (stripe, paypal, vies, nbp, cnb):
            emulator.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
