"""Loaded at start-up (``PYTHONPATH=tests/faketime``) by the processes that run under
libfaketime with ``FAKETIME_DONT_FAKE_MONOTONIC=1``: ``.ci/run``'s pass a year ahead and the
journeys' portal restarted on a later day.

With the monotonic clock faked, waits with a timeout (``threading.Event.wait``, queues,
sockets' timeouts) never end; with it left alone, Debian's libfaketime answers
``time.sleep`` (an absolute ``clock_nanosleep`` on that clock) with EINVAL. So the monotonic
clock is left alone and ``time.sleep`` waits on an event instead, which works.
"""

from __future__ import annotations

import os
import threading
import time

if os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") == "1" and "faketime" in os.environ.get(
    "LD_PRELOAD", ""
):
    _real_sleep = time.sleep

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            _real_sleep(seconds)  # the same ValueError as time.sleep
        threading.Event().wait(seconds)

    time.sleep = _sleep
