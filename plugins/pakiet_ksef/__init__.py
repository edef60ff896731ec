"""KSeF, Poland's national e-invoicing system, for a Polish seller's B2B documents.

Issued invoices and corrections that KSeF covers (domestic B2B, reverse charge to an EU
business, exports; not B2C, OSS or a seller without a Polish NIP) become FA(3) XML
(:mod:`pakiet_ksef.fa3`, checked against the official schema) and go through the KSeF
API 2.0 (:mod:`pakiet_ksef.client`, on ``ksef-client``); :mod:`pakiet_ksef.emulator`
stands in for KSeF in the tests and the demo.

Settings (``PLUGIN_CONFIG["ksef"]``): ``base_url`` (``https://api.ksef.mf.gov.pl``, the
``-test``/``-demo`` ones, or the emulator's), ``token`` (the seller's KSeF token: required
with a real KSeF, start-up stops naming it otherwise), ``offline_certificate`` (``serial``
and ``private_key`` PEM or ``private_key_file``, optional ``password``: the seller's KSeF
offline certificate, which signs the QR code KOD II of an invoice issued while KSeF is down;
required with a real KSeF), ``qr_base_url`` (derived from
``base_url``), ``timeout`` in seconds (10) and ``enabled``. Without a ``base_url`` and a
``token`` the channel is not installed (a seller outside Poland needs none).
"""

from __future__ import annotations

from pakiet_ksef.client import KsefChannel, KsefConfigError
from portal.plugin_api.contracts import EInvoicingChannel, PluginConfig
from portal.plugin_api.hookspecs import hookimpl

__version__ = "1.0.0"
PAKIET_API = (1, 2)
__all__ = ["KsefChannel", "KsefConfigError", "register_einvoicing_channels"]


@hookimpl
def register_einvoicing_channels(plugin_config: PluginConfig) -> list[EInvoicingChannel]:
    config = plugin_config("ksef")
    if config.get("enabled") is False or not (config.get("base_url") or config.get("token")):
        return []
    return [KsefChannel(config)]
