"""KSeF, Poland's national e-invoicing system, for a Polish seller's B2B documents.

FA(3) XML (``fa3``), checked against the official schema shipped by ``ksef-client``.
"""

from __future__ import annotations

__version__ = "1.0.0"
