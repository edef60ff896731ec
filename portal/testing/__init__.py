"""The test kit for plugin authors: stand-ins for the web services a plugin asks.

A plugin that talks to a web service (a payment provider, a tax registry, a bank that
publishes exchange rates) ships an emulator of that service, so that its tests, the
portal's tests and the demo never reach the real one. This package holds what every such
emulator needs, written once:

:mod:`portal.testing.emulator`
    an HTTP server on a loopback port of its own (``port=0`` picks a free one) on a
    thread, a record of the requests it answered, faults on demand (an HTTP status, no
    answer, a garbage page, a slow or trickling reply) and the ``python -m ...`` command
    line that serves until interrupted. The built-in VIES, NBP and ČNB emulators are built
    on it; a third-party plugin can build its own the same way.
:mod:`portal.testing.rates`
    the calendar and deterministic rates of an emulated central bank (Easter, the
    number of a working day in its year, a rate that varies a little from day to day).

Nothing here is imported by the running portal; it is for tests, demos and emulators.
"""
