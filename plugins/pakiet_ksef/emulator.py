"""A KSeF API 2.0 emulator for the tests, the browser tests and the demo.

It speaks the calls the plugin makes, with KSeF's paths, JSON field names, status codes
and cryptography: the Ministry's public-key certificates (its own RSA key, made at start),
the authentication by KSeF token (challenge, the token encrypted with RSA-OAEP, status,
redeem), an online session whose AES-256 key comes encrypted with that public key, the
send of an AES-256-CBC encrypted invoice (hashes checked, the XML checked against the
FA(3) schema), the invoice's status and its UPO. KSeF's answers are there too: 200 with
the KSeF number, 100/150 while processing (``delay_status``), 440 for a duplicate (same
seller NIP, kind and number: with the first one's KSeF number in ``extensions``), 450 for
a document that fails the schema, and an outage (``set_down``: every call answers 503).

In Python::

    with KsefEmulator() as ksef:
        PLUGIN_CONFIG = {"ksef": {"base_url": ksef.base_url, "token": "any"}}
        ksef.delay_status(2)          # the next two status reads answer 150
        ksef.reject_next(450)         # the next invoice fails semantic checks
        ksef.set_down(True)           # KSeF is down (503) until set_down(False)

From a shell: ``python -m pakiet_ksef.emulator --port 12116``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID
from lxml import etree

from pakiet_ksef import fa3
from portal.testing.emulator import (
    Emulator,
    EmulatorHandler,
    EmulatorState,
    run_from_command_line,
)

DUPLICATE = 440
SEMANTICS = 450
ERRORS = {
    DUPLICATE: "Duplikat faktury",
    SEMANTICS: "Błąd weryfikacji semantyki dokumentu faktury",
    415: "Błąd odszyfrowania dostarczonego klucza",
    430: "Błąd weryfikacji pliku faktury",
    435: "Błąd odszyfrowania pliku",
}


def crc8(data: bytes) -> int:
    """CRC-8, polynomial 0x07, initial 0x00: the KSeF number's check digits."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def ksef_number(nip: str, day: dt.date, serial: int) -> str:
    data = f"{nip}-{day:%Y%m%d}-{serial:012X}"
    return f"{data}-{crc8(data.encode()):02X}"


def _reference(kind: str, day: dt.date) -> str:
    # 36 characters, as KSeF's reference numbers: 20250626-SO-2F14610000-242991F8C9-B4
    parts = (secrets.token_hex(5), secrets.token_hex(5), secrets.token_hex(1))
    return f"{day:%Y%m%d}-{kind}-" + "-".join(parts).upper()


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "KSeF emulator")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class _Invoice:
    reference: str
    session: str
    ordinal: int
    number: str | None
    invoice_hash: str
    received: dt.datetime
    code: int = 200
    ksef_number: str | None = None
    details: list[str] = field(default_factory=list)
    extensions: dict[str, str] | None = None
    offline: bool = False


@dataclass(kw_only=True)
class _State(EmulatorState):
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    certificate: bytes = b""
    tokens: set[str] | None = None  # None: any token is accepted
    challenges: dict[str, int] = field(default_factory=dict)
    auth: dict[str, dict[str, Any]] = field(default_factory=dict)  # by reference
    access: set[str] = field(default_factory=set)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, _Invoice] = field(default_factory=dict)  # by reference
    registered: dict[tuple[str, str, str], _Invoice] = field(default_factory=dict)
    # The technical part of KSeF numbers: random, so an emulator started again over the
    # same database (make run, the journeys) never gives a number twice.
    serial: int = field(default_factory=lambda: secrets.randbits(44) << 4)
    pending_delays: int = 0
    rejections: list[int] = field(default_factory=list)
    down: bool = False
    today: dt.date | None = None  # the day KSeF numbers are dated; None: today (UTC)


_PATHS = [
    ("POST", re.compile(r"/v2/auth/challenge"), "challenge"),
    ("POST", re.compile(r"/v2/auth/ksef-token"), "ksef_token"),
    ("POST", re.compile(r"/v2/auth/token/redeem"), "redeem"),
    ("GET", re.compile(r"/v2/auth/(?P<ref>[^/]+)"), "auth_status"),
    ("GET", re.compile(r"/v2/security/public-key-certificates"), "certificates"),
    ("POST", re.compile(r"/v2/sessions/online"), "open_session"),
    ("POST", re.compile(r"/v2/sessions/online/(?P<ref>[^/]+)/invoices"), "send"),
    ("POST", re.compile(r"/v2/sessions/online/(?P<ref>[^/]+)/close"), "close"),
    (
        "GET",
        re.compile(r"/v2/sessions/(?P<ref>[^/]+)/invoices/ksef/(?P<number>[^/]+)/upo"),
        "upo",
    ),
    ("GET", re.compile(r"/v2/sessions/(?P<ref>[^/]+)/invoices/(?P<inv>[^/]+)"), "status"),
]


class _Handler(EmulatorHandler[_State]):
    def fault_text(self, status: int) -> str:
        return json.dumps(
            {"exception": {"exceptionDetailList": [{"exceptionCode": 21000 + status}]}}
        )

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw.strip().startswith(b"{") else None
        if self.begin(body):
            return
        if self.state.down:
            self.send_json(503, {"title": "Service Unavailable", "status": 503})
            return
        path = self.path.split("?", 1)[0]
        for verb, pattern, name in _PATHS:
            match = pattern.fullmatch(path)
            if verb == method and match:
                needs_token = name not in ("challenge", "ksef_token", "certificates")
                if needs_token and not self._authorised(name):
                    self.send_json(401, {"title": "Unauthorized", "status": 401})
                    return
                with self.state.lock:
                    getattr(self, "_" + name)(body or {}, **match.groupdict())
                return
        self.send_json(404, {"title": "Not Found", "status": 404})

    def _authorised(self, name: str) -> bool:
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if name in ("redeem", "auth_status"):
            return any(a["token"] == token for a in self.state.auth.values())
        return token in self.state.access

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def _day(self) -> dt.date:
        return self.state.today or self._now().date()

    # -- security and authentication --------------------------------------------------------

    def _certificates(self, body: dict[str, Any]) -> None:
        now = self._now()
        self.send_json(
            200,
            [
                {
                    "certificate": base64.b64encode(self.state.certificate).decode(),
                    "certificateId": "emulator",
                    "publicKeyId": "emulator",
                    "validFrom": (now - dt.timedelta(days=1)).isoformat(),
                    "validTo": (now + dt.timedelta(days=3650)).isoformat(),
                    "usage": ["KsefTokenEncryption", "SymmetricKeyEncryption"],
                }
            ],
        )

    def _challenge(self, body: dict[str, Any]) -> None:
        now = self._now()
        challenge = _reference("CR", now.date())
        millis = int(now.timestamp() * 1000)
        self.state.challenges[challenge] = millis
        self.send_json(
            200,
            {
                "challenge": challenge,
                "timestamp": now.isoformat(),
                "timestampMs": millis,
                "clientIp": "127.0.0.1",
            },
        )

    def _decrypt(self, text: str) -> bytes:
        return self.state.key.decrypt(
            base64.b64decode(text),
            rsa_padding.OAEP(
                mgf=rsa_padding.MGF1(algorithm=hashes.SHA256()),
                algorithm=hashes.SHA256(),
                label=None,
            ),
        )

    def _ksef_token(self, body: dict[str, Any]) -> None:
        code, description = 200, "Uwierzytelnianie zakończone sukcesem"
        try:
            token, _, millis = self._decrypt(body["encryptedToken"]).decode().rpartition("|")
            expected = self.state.challenges.pop(body["challenge"])
        except (KeyError, ValueError):
            token, millis, expected = "", "", -1
        if str(expected) != millis:
            code, description = 450, "Nieprawidłowe wyzwanie autoryzacyjne"
        elif self.state.tokens is not None and token not in self.state.tokens:
            code, description = 450, "Nieprawidłowy token"
        reference = _reference("AU", self._day())
        auth_token = secrets.token_urlsafe(24)
        self.state.auth[reference] = {"token": auth_token, "code": code, "description": description}
        valid = (self._now() + dt.timedelta(minutes=15)).isoformat()
        self.send_json(
            202,
            {
                "referenceNumber": reference,
                "authenticationToken": {"token": auth_token, "validUntil": valid},
            },
        )

    def _auth_status(self, body: dict[str, Any], ref: str) -> None:
        auth = self.state.auth.get(ref)
        if auth is None:
            self.send_json(404, {"title": "Not Found", "status": 404})
            return
        details = None if auth["code"] == 200 else [auth["description"]]
        description = (
            auth["description"]
            if auth["code"] == 200
            else "Uwierzytelnianie zakończone niepowodzeniem z powodu błędnego tokenu"
        )
        self.send_json(
            200,
            {
                "startDate": self._now().isoformat(),
                "authenticationMethod": "Token",
                "authenticationMethodInfo": {
                    "category": "Token",
                    "code": "token.ksef",
                    "displayName": "Token KSeF",
                },
                "status": {"code": auth["code"], "description": description, "details": details},
            },
        )

    def _redeem(self, body: dict[str, Any]) -> None:
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        auth = next(a for a in self.state.auth.values() if a["token"] == token)
        if auth["code"] != 200 or auth.get("redeemed"):
            self.send_json(400, {"title": "Bad Request", "status": 400})
            return
        auth["redeemed"] = True
        access = secrets.token_urlsafe(24)
        self.state.access.add(access)
        valid = (self._now() + dt.timedelta(minutes=15)).isoformat()
        self.send_json(
            200,
            {
                "accessToken": {"token": access, "validUntil": valid},
                "refreshToken": {"token": secrets.token_urlsafe(24), "validUntil": valid},
            },
        )

    # -- sessions and invoices ---------------------------------------------------------------

    def _open_session(self, body: dict[str, Any]) -> None:
        form = body.get("formCode") or {}
        if form != fa3.FORM_CODE:
            self.send_json(400, {"title": "Bad Request", "detail": "formCode", "status": 400})
            return
        try:
            key = self._decrypt(body["encryption"]["encryptedSymmetricKey"])
            iv = base64.b64decode(body["encryption"]["initializationVector"])
        except (KeyError, ValueError):
            self.send_json(400, {"title": "Bad Request", "detail": ERRORS[415], "status": 400})
            return
        reference = _reference("SO", self._day())
        self.state.sessions[reference] = {"key": key, "iv": iv, "open": True, "count": 0}
        valid = (self._now() + dt.timedelta(hours=12)).isoformat()
        self.send_json(201, {"referenceNumber": reference, "validUntil": valid})

    def _close(self, body: dict[str, Any], ref: str) -> None:
        session = self.state.sessions.get(ref)
        if session is not None:
            session["open"] = False
        self.send_body(204, b"", "application/json")

    def _send(self, body: dict[str, Any], ref: str) -> None:
        session = self.state.sessions.get(ref)
        if session is None or not session["open"]:
            self.send_json(400, {"title": "Bad Request", "detail": "session", "status": 400})
            return
        session["count"] += 1
        reference = _reference("EE", self._day())
        now = self._now()
        invoice = _Invoice(reference, ref, session["count"], None, body.get("invoiceHash", ""), now)
        invoice.offline = bool(body.get("offlineMode"))
        self.state.invoices[reference] = invoice
        self._check(invoice, session, body)
        self.send_json(202, {"referenceNumber": reference})

    def _check(self, invoice: _Invoice, session: dict[str, Any], body: dict[str, Any]) -> None:
        """Decrypt, check and register the invoice (KSeF does it after answering 202)."""
        try:
            encrypted = base64.b64decode(body["encryptedInvoiceContent"])
            decryptor = Cipher(algorithms.AES(session["key"]), modes.CBC(session["iv"])).decryptor()
            padded = decryptor.update(encrypted) + decryptor.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            xml = unpadder.update(padded) + unpadder.finalize()
        except (KeyError, ValueError):
            invoice.code = 435
            return
        digest = base64.b64encode(hashlib.sha256(xml).digest()).decode()
        if digest != body.get("invoiceHash") or len(xml) != body.get("invoiceSize"):
            invoice.code = 430
            return
        if self.state.rejections:
            invoice.code = self.state.rejections.pop(0)
            invoice.details = [ERRORS.get(invoice.code, "Błąd")]
            return
        errors = fa3.validate(xml)
        if errors:
            invoice.code = SEMANTICS
            invoice.details = errors[:5]
            return
        root = etree.fromstring(xml)
        ns = {"fa": fa3.NS}
        nip = root.findtext("fa:Podmiot1/fa:DaneIdentyfikacyjne/fa:NIP", namespaces=ns) or ""
        kind = root.findtext("fa:Fa/fa:RodzajFaktury", namespaces=ns) or ""
        number = root.findtext("fa:Fa/fa:P_2", namespaces=ns) or ""
        invoice.number = number
        first = self.state.registered.get((nip, kind, number))
        if first is not None:
            invoice.code = DUPLICATE
            invoice.details = [
                f"Duplikat faktury. Faktura o numerze KSeF: {first.ksef_number} została już "
                f"prawidłowo przesłana do systemu w sesji: {first.session}"
            ]
            invoice.extensions = {
                "originalSessionReferenceNumber": first.session,
                "originalKsefNumber": first.ksef_number or "",
            }
            return
        self.state.serial += 1
        invoice.ksef_number = ksef_number(nip, self._day(), self.state.serial)
        self.state.registered[(nip, kind, number)] = invoice

    def _status(self, body: dict[str, Any], ref: str, inv: str) -> None:
        invoice = self.state.invoices.get(inv)
        if invoice is None or invoice.session != ref:
            self.send_json(404, {"title": "Not Found", "status": 404})
            return
        answer: dict[str, Any] = {
            "ordinalNumber": invoice.ordinal,
            "invoiceNumber": invoice.number,
            "referenceNumber": invoice.reference,
            "invoiceHash": invoice.invoice_hash,
            "invoicingDate": invoice.received.isoformat(),
            "invoicingMode": "Offline" if invoice.offline else "Online",
        }
        if self.state.pending_delays > 0:
            self.state.pending_delays -= 1
            answer["status"] = {"code": 150, "description": "Trwa przetwarzanie"}
        elif invoice.code == 200:
            answer["ksefNumber"] = invoice.ksef_number
            answer["acquisitionDate"] = invoice.received.isoformat()
            answer["status"] = {"code": 200, "description": "Sukces"}
        else:
            answer["status"] = {
                "code": invoice.code,
                "description": ERRORS.get(invoice.code, "Błąd"),
                "details": invoice.details or None,
                "extensions": invoice.extensions,
            }
        self.send_json(200, answer)

    def _upo(self, body: dict[str, Any], ref: str, number: str) -> None:
        invoice = next((i for i in self.state.invoices.values() if i.ksef_number == number), None)
        if invoice is None or invoice.session != ref or invoice.code != 200:
            self.send_json(404, {"title": "Not Found", "status": 404})
            return
        upo = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Potwierdzenie xmlns="http://upo.schematy.mf.gov.pl/KSeF/v4-3">'
            f"<NumerReferencyjnySesji>{ref}</NumerReferencyjnySesji>"
            f"<Dokument><NumerKSeFDokumentu>{number}</NumerKSeFDokumentu>"
            f"<NumerFaktury>{invoice.number}</NumerFaktury>"
            f"<SkrotDokumentu>{invoice.invoice_hash}</SkrotDokumentu>"
            f"<DataPrzyjeciaDokumentu>{invoice.received.isoformat()}</DataPrzyjeciaDokumentu>"
            "</Dokument></Potwierdzenie>"
        )
        self.send_body(200, upo.encode(), "application/xml")


class KsefEmulator(Emulator[_State]):
    name, title, handler = "ksef", "KSeF API 2.0", _Handler

    def __init__(self, port: int = 0, *, tokens: set[str] | None = None) -> None:
        state = _State(tokens=tokens)
        state.certificate = _certificate(state.key)
        super().__init__(state, port)

    def delay_status(self, reads: int) -> None:
        """The next ``reads`` status reads answer 150 (processing)."""
        with self.state.lock:
            self.state.pending_delays = reads

    def reject_next(self, code: int = SEMANTICS, count: int = 1) -> None:
        """The next ``count`` invoices are refused with KSeF's error ``code``."""
        with self.state.lock:
            self.state.rejections.extend([code] * count)

    def set_down(self, down: bool) -> None:
        """KSeF down: every call answers 503 until it is back."""
        with self.state.lock:
            self.state.down = down

    def set_day(self, day: dt.date | None) -> None:
        """The day KSeF numbers are dated (tests that fix dates)."""
        with self.state.lock:
            self.state.today = day

    @property
    def accepted(self) -> list[str]:
        """The KSeF numbers assigned, in order: one per document registered."""
        with self.state.lock:
            return [i.ksef_number for i in self.state.registered.values() if i.ksef_number]

    @property
    def sends(self) -> int:
        """How many invoices were sent (duplicates included)."""
        with self.state.lock:
            return len(self.state.invoices)


if __name__ == "__main__":  # python -m pakiet_ksef.emulator --port 12116
    run_from_command_line(KsefEmulator, "KSeF API 2.0 emulator", port=12116)
