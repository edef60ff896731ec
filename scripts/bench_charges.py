"""The renewals' floor in ``make bench``: the Stripe plugin's off-session charges alone.

A renewal is a database transaction around one charge of a saved card. This process makes
only the charges, one after another, exactly as the runner's plugin makes them (the same
``StripeProvider.charge_saved``, the same SDK and the same emulator in the benchmark's
process), so the renewals per second of one runner can be read against the most one
process can charge. Run as ``python scripts/bench_charges.py CARDS.json COUNT`` with the
portal's environment (``PAKIET_PLUGIN_CONFIG``); ``CARDS.json`` holds ``[customer, method]``
pairs saved in the emulator. Prints ``charges: COUNT in SECONDS s``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

from pakiet_stripe.client import StripeProvider
from portal.plugin_api.contracts import PaymentEventKind, PaymentRequest, SavedMethod
from portal.rules.money import Money


def main() -> int:
    cards = json.loads(Path(sys.argv[1]).read_text())
    count = int(sys.argv[2])
    provider = StripeProvider(json.loads(os.environ["PAKIET_PLUGIN_CONFIG"])["stripe"])
    run = uuid.uuid4().hex[:8]
    requests = []
    for n in range(count):
        customer, method = cards[n % len(cards)]
        request = PaymentRequest(
            payment_id=f"bench-{run}-{n}",
            idempotency_key=f"bench-{run}-{n}",
            amount=Money(21894, "PLN"),
            description="Standard, 1 month",
            customer_email=f"user{n}@bench.example.com",
            language="pl",
            return_url="http://127.0.0.1/return",
            cancel_url="http://127.0.0.1/cancel",
        )
        saved = SavedMethod(provider_ref=method, brand="visa", customer_ref=customer)
        requests.append((request, saved))
    started = time.perf_counter()
    for request, saved in requests:
        event = provider.charge_saved(request, saved)
        assert event.kind is PaymentEventKind.SUCCEEDED, event
        assert (event.payment_id, event.amount) == (request.payment_id, request.amount)
    elapsed = time.perf_counter() - started
    print(f"charges: {count} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
