"""The KSeF channel: FA(3) XML sent through the KSeF API 2.0 with ``ksef-client``.

One send is: the Ministry's public-key certificates, authentication by KSeF token
(challenge, the token encrypted with the certificate's RSA key, status, redeem), an online
session whose AES-256 key travels encrypted with that key, the encrypted invoice, the
session closed. Its reference is ``<session reference>/<invoice reference>``, so a later
``status`` asks KSeF about exactly that send (and fetches the UPO once it is numbered).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ksef_client import KsefClient, KsefClientOptions
from ksef_client.config import KsefEnvironment, KsefQrEnvironment
from ksef_client.exceptions import KsefHttpError
from ksef_client.models import FormCode
from ksef_client.services.crypto import build_encryption_data, build_send_invoice_request
from ksef_client.services.verification_link import VerificationLinkService
from ksef_client.services.workflows import AuthCoordinator

from pakiet_ksef import fa3
from portal.plugin_api.contracts import (
    EInvoiceResult,
    EInvoiceState,
    EInvoiceSubmission,
    EInvoicingChannel,
    ProviderError,
)

log = logging.getLogger(__name__)

#: The real KSeF environments: a token (or certificate) is required to start.
REAL = {e.value: q.value for e, q in zip(KsefEnvironment, KsefQrEnvironment, strict=True)}
PROCESSING = (100, 150)
DUPLICATE = 440


class KsefConfigError(RuntimeError):
    """The ``ksef`` settings cannot work: start-up stops, naming the setting."""


def _nip(document: Any) -> str:
    vat_id: str = document.seller.vat_id or ""
    return vat_id.removeprefix("PL")


def _offline_certificate(setting: Any, real: bool) -> tuple[str, str, str | None]:
    """``(serial, private key PEM, password)`` of the seller's KSeF offline certificate
    (``PLUGIN_CONFIG['ksef']['offline_certificate']``: ``serial`` and ``private_key`` (PEM
    text) or ``private_key_file``, optional ``password``), which signs KOD II. Required by a
    real KSeF; the emulator, without one, signs with a key made for this process."""
    if not setting:
        if real:
            raise KsefConfigError(
                "PLUGIN_CONFIG['ksef']['offline_certificate'] is not set: an invoice issued "
                "while KSeF is down carries a QR code (KOD II) signed with the seller's KSeF "
                "offline certificate; give its serial and private key"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        made = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return "EMULATOR", made, None
    if not isinstance(setting, Mapping) or not setting.get("serial"):
        raise KsefConfigError(
            "PLUGIN_CONFIG['ksef']['offline_certificate'] needs 'serial' and 'private_key' "
            "(or 'private_key_file')"
        )
    pem: Any = setting.get("private_key")
    if not pem and setting.get("private_key_file"):
        try:
            pem = Path(str(setting["private_key_file"])).read_text("ascii")
        except OSError as exc:
            raise KsefConfigError(
                "PLUGIN_CONFIG['ksef']['offline_certificate']['private_key_file'] cannot be "
                f"read: {exc}"
            ) from exc
    if not pem:
        raise KsefConfigError(
            "PLUGIN_CONFIG['ksef']['offline_certificate'] needs 'private_key' or 'private_key_file'"
        )
    password = setting.get("password")
    return str(setting["serial"]), str(pem), str(password) if password else None


class KsefChannel(EInvoicingChannel):
    name = "ksef"
    title = "KSeF"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.base_url = str(config.get("base_url") or KsefEnvironment.PROD.value).rstrip("/")
        real = self.base_url in REAL
        token = config.get("token")
        if real and not token:
            raise KsefConfigError(
                f"PLUGIN_CONFIG['ksef']['token'] is not set: KSeF at {self.base_url} needs the "
                "seller's KSeF token (generated in KSeF for the seller's NIP)"
            )
        self.token = str(token or "emulator")
        self.offline_certificate = _offline_certificate(config.get("offline_certificate"), real)
        self.qr_base_url = str(
            config.get("qr_base_url") or REAL.get(self.base_url) or self.base_url + "/qr"
        ).rstrip("/")
        self.timeout = float(config.get("timeout", 10))
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise KsefConfigError(
                f"PLUGIN_CONFIG['ksef']['base_url'] is not a URL: {self.base_url}"
            )

    def _options(self) -> KsefClientOptions:
        return KsefClientOptions(
            base_url=self.base_url,
            base_qr_url=self.qr_base_url,
            timeout_seconds=self.timeout,
        )

    # -- the contract -----------------------------------------------------------------------

    def covers(self, document: Any) -> bool:
        return fa3.covers(document)

    def render(
        self, *, document: Any, corrected_national_number: str | None, generated_at: dt.datetime
    ) -> bytes:
        return fa3.build(
            document,
            generated_at=generated_at,
            corrected_ksef_number=corrected_national_number,
        )

    def submit(self, submission: EInvoiceSubmission) -> EInvoiceResult:
        return _guarded(self._submit, submission)

    def status(self, submission: EInvoiceSubmission) -> EInvoiceResult:
        return _guarded(self._ask, submission)

    def _submit(self, submission: EInvoiceSubmission) -> EInvoiceResult:
        with KsefClient(self._options()) as client:
            access = self._authenticate(client, _nip(submission.document))
            certificate = self._certificate(client)
            encryption = build_encryption_data(certificate)
            session = client.sessions.open_online_session(
                _open_request(encryption), access_token=access
            )
            session_ref = session.reference_number
            sent = client.sessions.send_online_invoice(
                session_ref,
                build_send_invoice_request(
                    submission.payload,
                    encryption.key,
                    encryption.iv,
                    offline_mode=submission.offline or None,
                ),
                access_token=access,
            )
            reference = f"{session_ref}/{sent.reference_number}"
            try:
                client.sessions.close_online_session(session_ref, access_token=access)
            except KsefHttpError:  # the send is recorded; KSeF closes idle sessions itself
                log.warning("KSeF session %s not closed", session_ref)
            return self._status(client, access, reference)

    def _ask(self, submission: EInvoiceSubmission) -> EInvoiceResult:
        assert submission.reference is not None
        with KsefClient(self._options()) as client:
            access = self._authenticate(client, _nip(submission.document))
            return self._status(client, access, submission.reference)

    def verification_url(
        self, *, document: Any, payload_hash: str, national_number: str | None
    ) -> str | None:
        """KOD I: ``{qr}/invoice/{NIP}/{DD-MM-RRRR}/{SHA-256, base64url}``."""
        service = VerificationLinkService(self._options())
        return service.build_invoice_verification_url(
            _nip(document), document.issue_date, payload_hash
        )

    def certificate_url(self, *, document: Any, payload_hash: str) -> str | None:
        """KOD II of a document issued offline: ``{qr}/certificate/Nip/{NIP}/{NIP}/{serial}/
        {hash}/{signature}``, the path signed with the seller's KSeF offline certificate's
        key (ECDSA P-256 or RSA-PSS, by ``ksef-client``)."""
        serial, key_pem, password = self.offline_certificate
        service = VerificationLinkService(self._options())
        nip = _nip(document)
        return service.build_certificate_verification_url(
            seller_nip=nip,
            context_identifier_type="Nip",
            context_identifier_value=nip,
            certificate_serial=serial,
            invoice_hash=payload_hash,
            private_key_pem=key_pem,
            private_key_password=password,
        )

    # -- the API calls ----------------------------------------------------------------------

    def _authenticate(self, client: KsefClient, nip: str) -> str:
        result = AuthCoordinator(client.auth).authenticate_with_ksef_token(
            token=self.token,
            public_certificate=self._certificate(client, "KsefTokenEncryption"),
            context_identifier_type="Nip",
            context_identifier_value=nip,
            poll_interval_seconds=1.0,
            max_attempts=10,
        )
        return str(result.access_token)

    def _certificate(self, client: KsefClient, usage: str = "SymmetricKeyEncryption") -> str:
        return str(client.security.get_public_key_certificate_pem(usage))

    def _status(self, client: KsefClient, access: str, reference: str) -> EInvoiceResult:
        session_ref, _, invoice_ref = reference.partition("/")
        answer = client.sessions.get_session_invoice_status(
            session_ref, invoice_ref, access_token=access
        )
        code = int(answer.status.code)
        if code in PROCESSING:
            return EInvoiceResult(EInvoiceState.SENT, reference=reference)
        if code == 200 and answer.ksef_number:
            receipt = client.sessions.get_session_invoice_upo_by_ksef(
                session_ref, answer.ksef_number, access_token=access
            )
            return EInvoiceResult(
                EInvoiceState.ACCEPTED,
                reference=reference,
                national_number=str(answer.ksef_number),
                assigned_at=_moment(answer.acquisition_date),
                receipt=receipt,
            )
        extensions = dict(getattr(answer.status, "extensions", None) or {})
        if code == DUPLICATE and extensions.get("originalKsefNumber"):
            # Sent before (a crash lost our record of it): KSeF names the first number.
            return EInvoiceResult(
                EInvoiceState.ACCEPTED,
                reference=reference,
                national_number=str(extensions["originalKsefNumber"]),
            )
        details = "; ".join(answer.status.details or [])
        return EInvoiceResult(
            EInvoiceState.REJECTED,
            reference=reference,
            error_code=str(code),
            error_message=f"{answer.status.description}: {details}".rstrip(": "),
        )


def _open_request(encryption: Any) -> Any:
    from ksef_client.models import OpenOnlineSessionRequest

    return OpenOnlineSessionRequest(
        form_code=FormCode(
            system_code=fa3.FORM_CODE["systemCode"],
            schema_version=fa3.FORM_CODE["schemaVersion"],
            value=fa3.FORM_CODE["value"],
        ),
        encryption=encryption.encryption_info,
    )


def _moment(text: Any) -> dt.datetime | None:
    if not text:
        return None
    moment = text if isinstance(text, dt.datetime) else dt.datetime.fromisoformat(str(text))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _guarded(
    call: Callable[[EInvoiceSubmission], EInvoiceResult], submission: EInvoiceSubmission
) -> EInvoiceResult:
    """KSeF down, slow, or answering what it should not: a retryable ProviderError (the
    document goes offline and is sent again later); KSeF refusing the call: not retryable."""
    try:
        return call(submission)
    except KsefHttpError as exc:
        retryable = exc.status_code >= 500 or exc.status_code in (408, 429)
        raise ProviderError(
            f"KSeF answered {exc}", code=f"http_{exc.status_code}", retryable=retryable
        ) from exc
    except (httpx.HTTPError, OSError, TimeoutError, ValueError, RuntimeError) as exc:
        raise ProviderError(f"KSeF unavailable: {exc}", code="unavailable", retryable=True) from exc
