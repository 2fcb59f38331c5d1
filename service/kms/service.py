"""KMS Certificates Manager: key pairs held in a token that sign on the user's behalf.

One method per API operation; each takes the owner (tenant) first and raises only
:mod:`service.errors` classes with the API's reasons. Where keys live:
- ProtectionLevel HSM: the ``hsm`` token, always non-exportable (docs/architecture.md, invariant 1).
- ProtectionLevel SOFTWARE: the ``software`` token; exportable unless ExportablePrivateKey
  is false, in which case the token generates it non-extractable.
- EC_SM2 (SOFTWARE only; SoftHSM has no SM2 mechanism): a tongsuopy key whose PKCS#8 is
  stored only sealed (AES-GCM) under a non-extractable key of the ``software`` token.
Token keys carry CKA_ID = 16 random bytes and CKA_LABEL = the certificate id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from tongsuopy.crypto import serialization as sm2_serialization

from hsm import errors as hsm_errors
from hsm import export as hsm_export
from hsm import keys as hsm_keys
from hsm import signing as hsm_signing
from hsm.token import Token
from service import audit, limits, metrics
from service.audit import KeyRef
from service.entropy import new_identifier, new_key_id
from service.errors import (
    FailedPrecondition,
    HsmcaError,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TokenOutage,
)
from service.hints import spelling_hint
from service.kms import sm2
from service.kms.algorithms import (
    CSR_SIGNATURE_ALGORITHMS,
    EncryptionAlgorithm,
    KeySpec,
    MessageType,
    SignAlgorithm,
    SignInput,
    check_plaintext,
    parse_encryption_algorithm,
    parse_key_spec,
    parse_protection_level,
)
from service.kms.csr import build_csr
from service.kms.dn import format_subject, parse_subject, parse_subject_alternative_names
from service.kms.pkcs12 import build_pkcs12
from service.pki import pem
from service.pki.signer import Signer
from service.storage import repo
from service.storage.repo import KmsCertificateRow
from service.storage.schema import KmsStatus, ProtectionLevel
from service.storage.store import Store
from service.token_keys import destroy_after_failure, generate_key
from service.token_signer import TokenSigner

__all__ = [
    "CertificateContent",
    "CertificateDescription",
    "CertificatePage",
    "CertificateStatus",
    "CreatedCertificate",
    "ExportFormat",
    "ExportedCertificate",
    "KmsCertificatesService",
]

_log = logging.getLogger("hsmca.kms")

NOT_FOUND_REASON = "NotFound.CertificateId"
INCORRECT_STATUS_REASON = "IncorrectStatus.Certificate"
NOT_EXPORTABLE_REASON = "Forbidden.KeyNotExportable"
NO_SM2_MECHANISM_REASON = "UnsupportedOperation.HsmSm2Mechanism"

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
# The PEM encryption of both cryptography and tongsuopy (SM2) takes at most 1023 bytes; a
# longer passphrase would fail inside it, after the key was unwrapped.
MAX_PASSPHRASE_BYTES = 1023

# Where each protection level's keys live; also stored as ``key_token`` (the token role).
_TOKEN_ROLE = {ProtectionLevel.HSM: "hsm", ProtectionLevel.SOFTWARE: "software"}

_HSM_KEY_SPECS = {
    KeySpec.RSA_2048: hsm_keys.KeySpec.RSA_2048,
    KeySpec.EC_P256: hsm_keys.KeySpec.EC_P256,
    KeySpec.EC_SM2: hsm_keys.KeySpec.EC_SM2,
}

_SIGN_MECHANISMS = {
    SignAlgorithm.RSA_PKCS1_SHA_256: hsm_signing.SignMechanism.RSA_PKCS1_SHA256,
    SignAlgorithm.RSA_PSS_SHA_256: hsm_signing.SignMechanism.RSA_PSS_SHA256,
    SignAlgorithm.ECDSA_SHA_256: hsm_signing.SignMechanism.ECDSA_SHA256,
}

# OAEP hash for the token's decrypt and for cryptography's encrypt; MGF1 uses the same hash.
_OAEP_HASHES: Mapping[
    EncryptionAlgorithm, tuple[hsm_signing.OaepHash, type[hashes.HashAlgorithm]]
] = {
    EncryptionAlgorithm.RSAES_OAEP_SHA_1: (hsm_signing.OaepHash.SHA1, hashes.SHA1),
    EncryptionAlgorithm.RSAES_OAEP_SHA_256: (hsm_signing.OaepHash.SHA256, hashes.SHA256),
}

# Certificate signature algorithms by OID, in the API's spelling (DescribeCertificate).
_SIGNATURE_ALGORITHM_NAMES = {
    "1.2.840.113549.1.1.11": "SHA256WithRSA",
    "1.2.840.113549.1.1.12": "SHA384WithRSA",
    "1.2.840.113549.1.1.13": "SHA512WithRSA",
    "1.2.840.113549.1.1.10": "RSASSA-PSS",
    "1.2.840.10045.4.3.2": "SHA256WithECDSA",
    "1.2.840.10045.4.3.3": "SHA384WithECDSA",
    "1.2.840.10045.4.3.4": "SHA512WithECDSA",
    sm2.SM3_WITH_SM2_OID: "SM3WithSM2",
}


#: The KMS certificate statuses (DescribeCertificate ``Status``), as stored.
CertificateStatus = KmsStatus
ALL_STATUSES = tuple(KmsStatus)
#: What UpdateCertificateStatus may set.
SETTABLE_STATUSES = (KmsStatus.ACTIVE, KmsStatus.INACTIVE, KmsStatus.REVOKED)


class ExportFormat:
    """ExportCertificate ``ExportFormat`` values."""

    PEM = "PEM"
    PKCS12 = "PKCS12"
    ALL = (PEM, PKCS12)


@dataclasses.dataclass(frozen=True)
class CreatedCertificate:
    """CreateCertificate's result."""

    certificate_id: str
    arn: str
    csr: str


@dataclasses.dataclass(frozen=True)
class CertificateContent:
    """GetCertificate's result; certificate and chain are empty before UploadCertificate."""

    certificate_id: str
    certificate: str
    certificate_chain: str
    csr: str


@dataclasses.dataclass(frozen=True)
class CertificateDescription:
    """DescribeCertificate's result (and one ListCertificates entry)."""

    certificate_id: str
    arn: str
    key_spec: str
    protection_level: str
    exportable_private_key: bool
    subject: str
    subject_alternative_names: tuple[str, ...]
    issuer: str
    serial: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    signature_algorithm: str
    status: str
    subject_key_identifier: str
    subject_public_key: str  # PEM
    tags: tuple[tuple[str, str], ...]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class CertificatePage:
    """One ListCertificates page."""

    certificates: tuple[CertificateDescription, ...]
    total_count: int
    page_number: int
    page_size: int


@dataclasses.dataclass(frozen=True)
class ExportedCertificate:
    """ExportCertificate's result: PEM parts, or a PKCS#12 blob, under the passphrase."""

    certificate_id: str
    certificate: str = ""
    certificate_chain: str = ""
    private_key: str = ""  # encrypted PKCS#8, PEM
    pkcs12: bytes = b""


@dataclasses.dataclass(frozen=True)
class _ParsedCertificate:
    """What UploadCertificate records from a certificate."""

    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    signature_algorithm: str
    subject_key_identifier: str


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _invalid(reason: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=f"InvalidParameter.{reason}")


@contextlib.contextmanager
def _token_errors() -> Iterator[None]:
    """Map token-layer errors to the service's error family."""
    try:
        yield
    except hsm_errors.KeyNotExportable as e:
        raise PermissionDenied(
            f"the token refused to export the key: {e}", reason=NOT_EXPORTABLE_REASON
        ) from e
    except hsm_errors.MechanismUnavailable as e:
        raise FailedPrecondition(str(e), reason="UnsupportedOperation") from e
    except hsm_errors.TokenUnavailable as e:
        raise TokenOutage(f"the key token is unavailable: {e}") from e
    except hsm_errors.HsmError as e:
        # A recorded key missing from its token, or a token misbehaving: a broken invariant.
        raise Internal(f"token error: {e!r}") from e


# --- certificates and chains -------------------------------------------------------------

# Longest PEM certificate accepted (a bound on what is stored and listed; real ones are a
# few KiB).
MAX_CERTIFICATE_PEM_CHARS = 64 * 1024


def _load_pem_certificates(text: str, what: str, reason: str) -> list[bytes]:
    """Split a PEM bundle into DER certificates; anything else in it is refused."""
    maximum_chars = MAX_CERTIFICATE_PEM_CHARS * limits.active().max_chain_certificates
    if len(text) > maximum_chars:
        raise _invalid(reason, f"{what} is {len(text)} characters long; at most {maximum_chars}")
    try:
        ders = pem.decode_blocks(text, ("CERTIFICATE",))
    except pem.PemError as e:
        # Strict: a block cut short must not be dropped silently (docs/architecture.md, inv. 5).
        raise _invalid(reason, f"{what}: {e}") from e
    maximum = limits.active().max_chain_certificates
    if len(ders) > maximum:
        raise _invalid(reason, f"{what}: {len(ders)} certificates; at most {maximum}")
    for number, der in enumerate(ders, start=1):
        try:
            asn1_x509.Certificate.load(der, strict=True).native  # noqa: B018 - parse it all
        except (ValueError, TypeError) as e:
            raise _invalid(
                reason, f"{what}: PEM block {number} is not a DER X.509 certificate: {e}"
            ) from e
    return ders


def _same_public_key(a: bytes, b: bytes) -> bool:
    """True when two SubjectPublicKeyInfo DERs carry the same key (encoding may differ)."""
    ka, kb = asn1_keys.PublicKeyInfo.load(a), asn1_keys.PublicKeyInfo.load(b)
    if ka["algorithm"]["algorithm"].dotted != kb["algorithm"]["algorithm"].dotted:
        return False
    if ka.algorithm == "ec" and ka["algorithm"]["parameters"].dump() != (
        kb["algorithm"]["parameters"].dump()
    ):
        return False
    return bool(ka["public_key"].native == kb["public_key"].native)


def _signed_by(subject_der: bytes, issuer_der: bytes) -> tuple[bool, bytes | None]:
    """Whether ``issuer``'s name and key issued ``subject`` (RFC 5280 6.1.3 (a)(1), (a)(4)).

    The second value is the SM2 distinguishing ID the signature verified with (None for
    other algorithms): GM/T 0015's 1234567812345678 or OpenSSL 3's default, the empty ID.
    """
    subject = asn1_x509.Certificate.load(subject_der)
    issuer = asn1_x509.Certificate.load(issuer_der)
    if subject.issuer != issuer.subject:
        return False, None
    if subject["signature_algorithm"]["algorithm"].dotted == sm2.SM3_WITH_SM2_OID:
        # cryptography has no SM2; tongsuopy verifies under each accepted ID.
        tbs = subject["tbs_certificate"].dump()
        signature = subject["signature_value"].native
        try:
            verified_id = sm2.sm2_verify_certificate_signature(
                issuer.public_key.dump(), tbs, signature
            )
        except (ValueError, TypeError, HsmcaError):
            return False, None
        return verified_id is not None, verified_id
    try:
        x509.load_der_x509_certificate(subject_der).verify_directly_issued_by(
            x509.load_der_x509_certificate(issuer_der)
        )
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False, None
    return True, None


def _issuer_problem(issuer: asn1_x509.Certificate, intermediates_below: int) -> str | None:
    """Why ``issuer`` may not issue certificates, or None (RFC 5280 6.1.4 (k), (l)-(n)).

    ``intermediates_below`` counts the non-self-issued CA certificates between it and the
    uploaded certificate. Structural checks only, so they hold for every algorithm,
    SM2 included; _signed_by checks the name and the signature.
    """
    oids = [e["extn_id"].dotted for e in issuer["tbs_certificate"]["extensions"]]
    if len(oids) != len(set(oids)):
        # asn1crypto keeps the last of two basicConstraints; which one counts is ambiguous.
        return "an extension appears more than once (RFC 5280 4.2)"
    constraints, key_usage = issuer.basic_constraints_value, issuer.key_usage_value
    if constraints is None or not constraints["ca"].native:
        return "it is not a CA certificate (basicConstraints cA is not TRUE; RFC 5280 6.1.4 (k))"
    if key_usage is not None and "key_cert_sign" not in key_usage.native:
        return "its keyUsage does not include keyCertSign (RFC 5280 6.1.4 (n))"
    path_len = constraints["path_len_constraint"].native
    if path_len is not None and intermediates_below > path_len:
        return (
            f"its pathLenConstraint is {path_len} but {intermediates_below} intermediate CA "
            "certificate(s) follow it (RFC 5280 6.1.4 (l), (m))"
        )
    return None


def _parse_certificate(der: bytes) -> _ParsedCertificate:
    cert = asn1_x509.Certificate.load(der)
    oid = cert["signature_algorithm"]["algorithm"].dotted
    ski = cert.key_identifier
    if ski is None:
        # RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING.
        ski = hashlib.sha1(cert.public_key["public_key"].contents[1:]).digest()  # noqa: S324
    return _ParsedCertificate(
        issuer=format_subject(cert.issuer),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before.astimezone(dt.UTC),
        not_after=cert.not_valid_after.astimezone(dt.UTC),
        signature_algorithm=_SIGNATURE_ALGORITHM_NAMES.get(oid, oid),
        subject_key_identifier=bytes(ski).hex(),
    )


def _pem(kind: str, der: bytes) -> str:
    return pem.encode(der, kind)


# --- the service ---------------------------------------------------------------------------


class KmsCertificatesService:
    """The KMS Certificates Manager operations over a database and the two tokens."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        hsm_token: Token,
        software_token: Token,
        *,
        region: str,
        account_id: str,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        if not region or not account_id:
            raise ValueError("region and account_id are required to build ARNs")
        self._store = Store(engine)
        self._tokens = {"hsm": hsm_token, "software": software_token}
        self._region = region
        self._account_id = account_id
        self._clock = clock

    # -- helpers --

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now.astimezone(dt.UTC)

    def _arn(self, certificate_id: str) -> str:
        return f"acs:kms:{self._region}:{self._account_id}:certificate/{certificate_id}"

    def _token(self, row: KmsCertificateRow) -> Token:
        return self._tokens[row.key_token]

    def _get(self, owner: str, certificate_id: str) -> KmsCertificateRow:
        row = self._find(owner, certificate_id)
        if row is None:
            raise _not_found(certificate_id)
        return row

    @contextlib.contextmanager
    def _key_use_of(self, row: KmsCertificateRow, action: str, operation: str,
                    allowed: Sequence[str], **details: Any) -> Iterator[None]:
        """A use of ``row``'s key, in the ``with`` block, and its audit record.

        ``row`` was read before the key is used, so the certificate may have been revoked
        or deleted meanwhile. The SUCCESS record commits together with a re-read of the
        certificate, before the block's result reaches the caller: if the certificate is
        gone, or no longer in ``allowed``, the result is not returned (NotFound,
        IncorrectStatus) and the use is recorded as a FAILURE. A key missing from its token
        because the certificate was deleted meanwhile is NotFound too, not INTERNAL.
        """
        fields: dict[str, Any] = {"key": KeyRef(row.key_token, row.key_id),
                                  "resources": [row.certificate_id], "tenant": row.owner,
                                  "details": details}

        def settle(conn: sqlalchemy.Connection) -> None:
            current = repo.get_kms_certificate(conn, row.owner, row.certificate_id)
            if current is None:
                raise _not_found(row.certificate_id)
            self._require_status(current, allowed, operation)
            audit.record_op(action, **fields)(conn)

        try:
            yield
            ((_, error),) = self._store.run_many([settle])
            if error is not None:
                raise error
        except BaseException as e:
            gone = isinstance(e.__cause__, hsm_errors.KeyNotFound) and \
                self._find(row.owner, row.certificate_id) is None
            failure = _not_found(row.certificate_id) if gone else e
            audit.record_failure(action, failure, **fields)
            if gone:
                raise failure from e
            raise

    def _find(self, owner: str, certificate_id: str) -> KmsCertificateRow | None:
        with self._store.read() as conn:
            return repo.get_kms_certificate(conn, owner, certificate_id)

    @staticmethod
    def _require_status(row: KmsCertificateRow, allowed: Sequence[str], action: str) -> None:
        if row.status not in allowed:
            raise FailedPrecondition(
                f"certificate '{row.certificate_id}' is {row.status}; {action} needs "
                f"status {' or '.join(allowed)}",
                reason=INCORRECT_STATUS_REASON,
            )

    def _sm2_private_key(self, row: KmsCertificateRow) -> bytes:
        if row.wrapped_private_key is None:
            raise Internal(f"SM2 certificate {row.certificate_id} has no sealed private key")
        with _token_errors():
            return hsm_export.unseal(
                self._tokens["software"],
                row.wrapped_private_key,
                context=row.certificate_id.encode("ascii"),
            )

    # -- CreateCertificate --

    def create_certificate(
        self,
        owner: str,
        *,
        key_spec: str,
        subject: str,
        subject_alternative_names: Sequence[str] = (),
        exportable_private_key: bool | None = None,
        protection_level: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> CreatedCertificate:
        """Generate a key pair in the protection level's token and return a CSR signed by it."""
        spec = parse_key_spec(key_spec)
        level = parse_protection_level(protection_level)
        name = parse_subject(subject)
        sans = parse_subject_alternative_names(json.dumps(list(subject_alternative_names)))
        if level is ProtectionLevel.HSM and exportable_private_key:
            # docs/architecture.md, invariant 1: HSM keys never leave the token; refuse rather than
            # silently store something other than what was asked for.
            raise _invalid(
                "ExportablePrivateKey",
                "ExportablePrivateKey=true is not allowed with ProtectionLevel HSM: "
                "HSM keys are generated non-exportable",
            )
        exportable = level is ProtectionLevel.SOFTWARE and exportable_private_key is not False
        certificate_id = new_identifier()
        key_id = new_key_id()
        role = _TOKEN_ROLE[level]
        token = self._tokens[role]

        wrapped: bytes | None = None
        if spec is KeySpec.EC_SM2 and level is ProtectionLevel.SOFTWARE:
            pkcs8 = sm2.generate_sm2_private_key()
            signer: Signer = sm2.Sm2Signer(pkcs8)
            with _key_use("kms.key.generate", owner, certificate_id, "software", None,
                          key_spec=spec.value, exportable=exportable, sealed=True), \
                    _token_errors():
                wrapped = hsm_export.seal(token, pkcs8, context=certificate_id.encode("ascii"))
            public_key_info = signer.public_key_info
            csr = build_csr(name, sans, signer)
        else:
            usage = hsm_keys.KeyUsage.SIGN
            if spec is KeySpec.RSA_2048:
                usage |= hsm_keys.KeyUsage.DECRYPT  # CertificatePrivateKeyDecrypt (OAEP)
            try:
                with _token_errors():
                    # If its record cannot be written, the key is destroyed again.
                    generated = generate_key(
                        token,
                        _HSM_KEY_SPECS[spec],
                        key_id=key_id,
                        label=certificate_id,
                        exportable=exportable,
                        usage=usage,
                        action="kms.key.generate",
                        destroy_action="kms.key.destroy",
                        resources=[certificate_id],
                        tenant=owner,
                        details={"key_spec": spec.value, "exportable": exportable},
                    )
            except FailedPrecondition as e:
                if spec is KeySpec.EC_SM2:
                    raise FailedPrecondition(
                        f"KeySpec EC_SM2 with ProtectionLevel HSM: the hsm token "
                        f"'{token.label}' offers no SM2 mechanism; use ProtectionLevel "
                        "SOFTWARE for SM2 keys",
                        reason=NO_SM2_MECHANISM_REASON,
                    ) from e
                raise
            public_key_info = generated.public_key_info

        now = self._now()
        row = KmsCertificateRow(
            certificate_id=certificate_id,
            owner=owner,
            arn=self._arn(certificate_id),
            key_spec=spec.value,
            protection_level=level.value,
            exportable_private_key=exportable,
            key_token=role,
            key_id=key_id.hex(),
            subject=format_subject(name),
            csr="",
            subject_public_key=public_key_info,
            status=CertificateStatus.PENDING,
            created_at=now,
            updated_at=now,
            subject_alternative_names=tuple(sans),
            wrapped_private_key=wrapped,
            tags=dict(tags or {}),
        )
        if wrapped is not None:
            row = dataclasses.replace(row, csr=csr)
            self._insert(row)
            return CreatedCertificate(certificate_id, row.arn, csr)
        # From here on a token key exists: any failure destroys it, so nothing is half-done.
        try:
            signer = TokenSigner(token, key_id, CSR_SIGNATURE_ALGORITHMS[spec], public_key_info)
            with _key_use("kms.csr.sign", owner, certificate_id, role, key_id), \
                    _token_errors():
                csr = build_csr(name, sans, signer)
            row = dataclasses.replace(row, csr=csr)
            self._insert(row)
        except BaseException:
            destroy_after_failure(token, key_id, action="kms.key.destroy",
                                  resources=[certificate_id], tenant=owner,
                                  cause="CreateCertificate failed")
            raise
        return CreatedCertificate(certificate_id, row.arn, csr)

    def _insert(self, row: KmsCertificateRow) -> None:
        with self._store.write() as conn:
            repo.insert_kms_certificate(conn, row)

    # -- UploadCertificate --

    def upload_certificate(
        self, owner: str, certificate_id: str, certificate: str, certificate_chain: str = ""
    ) -> None:
        """Store the certificate issued for the key's CSR (and its chain); status -> ACTIVE."""
        row = self._get(owner, certificate_id)
        live = (CertificateStatus.PENDING, CertificateStatus.ACTIVE, CertificateStatus.INACTIVE)
        self._require_status(row, live, "UploadCertificate")
        (cert_der, *extra) = _load_pem_certificates(certificate, "Certificate", "Certificate")
        if extra:
            raise _invalid(
                "Certificate",
                "Certificate holds more than one certificate; put issuers in CertificateChain",
            )
        cert = asn1_x509.Certificate.load(cert_der)
        if not _same_public_key(cert.public_key.dump(), row.subject_public_key):
            raise _invalid(
                "Certificate",
                f"the certificate's public key is not the key of certificate '{certificate_id}'",
            )
        chain_ders: list[bytes] = []
        if certificate_chain.strip():
            chain_ders = _load_pem_certificates(
                certificate_chain, "CertificateChain", "CertificateChain"
            )
            # Each certificate must be issued by the next one: leaf <- chain[0] <- chain[1] ...
            # and each issuer must be a CA allowed to issue at its depth.
            intermediates_below = 0
            for index, (child, parent) in enumerate(
                zip([cert_der, *chain_ders], chain_ders, strict=False)
            ):
                what = "the certificate" if index == 0 else f"chain certificate {index}"
                signed, distinguishing_id = _signed_by(child, parent)
                if not signed:
                    raise _invalid(
                        "CertificateChain",
                        f"chain certificate {index + 1} did not issue {what} "
                        "(issuer name or signature does not match)",
                    )
                if distinguishing_id is not None:
                    _log.info(
                        "UploadCertificate certificate_id=%s: the SM2 signature on %s "
                        "verified with distinguishing ID %r (%s)",
                        certificate_id,
                        what,
                        distinguishing_id.decode("ascii"),
                        "GM/T 0015 default"
                        if distinguishing_id == sm2.DEFAULT_DISTINGUISHING_ID
                        else "OpenSSL 3 default",
                    )
                issuer = asn1_x509.Certificate.load(parent)
                problem = _issuer_problem(issuer, intermediates_below)
                if problem is not None:
                    raise _invalid(
                        "CertificateChain",
                        f"chain certificate {index + 1} is not a valid issuer: {problem}",
                    )
                if not issuer.self_issued:
                    intermediates_below += 1
        parsed = _parse_certificate(cert_der)
        updated = dataclasses.replace(
            row,
            certificate=_pem("CERTIFICATE", cert_der),
            certificate_chain="".join(_pem("CERTIFICATE", d) for d in chain_ders),
            issuer=parsed.issuer,
            serial=parsed.serial,
            not_before=parsed.not_before,
            not_after=parsed.not_after,
            signature_algorithm=parsed.signature_algorithm,
            subject_key_identifier=parsed.subject_key_identifier,
            status=CertificateStatus.ACTIVE,
            updated_at=self._now(),
        )
        with self._store.write() as conn:
            moved = repo.update_kms_certificate(conn, updated, expected_status=live)
            if moved:
                # In the commit of the change: the change is never without its record.
                audit.record_op("kms.certificate.upload", resources=[certificate_id],
                                tenant=owner,
                                details={"serial": parsed.serial, "from": row.status,
                                         "to": CertificateStatus.ACTIVE})(conn)
        if not moved:
            # Changed under us (revoked or deleted): report what it is now.
            self._require_status(self._get(owner, certificate_id), live, "UploadCertificate")

    # -- GetCertificate / DescribeCertificate / ListCertificates --

    def get_certificate(self, owner: str, certificate_id: str) -> CertificateContent:
        """The certificate, chain and CSR."""
        row = self._get(owner, certificate_id)
        return CertificateContent(
            certificate_id=row.certificate_id,
            certificate=row.certificate or "",
            certificate_chain=row.certificate_chain or "",
            csr=row.csr,
        )

    def describe_certificate(self, owner: str, certificate_id: str) -> CertificateDescription:
        """The certificate's metadata."""
        return self._describe(self._get(owner, certificate_id))

    @staticmethod
    def _describe(row: KmsCertificateRow) -> CertificateDescription:
        return CertificateDescription(
            certificate_id=row.certificate_id,
            arn=row.arn,
            key_spec=row.key_spec,
            protection_level=row.protection_level,
            exportable_private_key=row.exportable_private_key,
            subject=row.subject,
            subject_alternative_names=tuple(row.subject_alternative_names),
            issuer=row.issuer or "",
            serial=row.serial or "",
            not_before=row.not_before,
            not_after=row.not_after,
            signature_algorithm=row.signature_algorithm or "",
            status=row.status,
            subject_key_identifier=row.subject_key_identifier or "",
            subject_public_key=_pem("PUBLIC KEY", row.subject_public_key),
            tags=tuple(sorted(row.tags.items())),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def list_certificates(
        self,
        owner: str,
        *,
        page_number: int = 0,
        page_size: int = 0,
        subject: str = "",
        issuer: str = "",
        status: str = "",
    ) -> CertificatePage:
        """One page of the owner's certificates, oldest first; empty filters match all."""
        page_number = page_number or 1
        page_size = page_size or DEFAULT_PAGE_SIZE
        if page_number < 1:
            raise _invalid("PageNumber", f"PageNumber {page_number} must be 1 or more")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _invalid("PageSize", f"PageSize {page_size} must be in 1..{MAX_PAGE_SIZE}")
        if status and status not in ALL_STATUSES:
            raise _invalid(
                "Status",
                f"Status '{status}' is not one of {', '.join(ALL_STATUSES)}"
                f"{spelling_hint(status, ALL_STATUSES)}",
            )
        with self._store.read() as conn:
            page = repo.list_kms_certificates(
                conn,
                owner,
                offset=(page_number - 1) * page_size,
                limit=page_size,
                subject=subject or None,
                issuer=issuer or None,
                status=status or None,
            )
        return CertificatePage(
            certificates=tuple(self._describe(r) for r in page.items),
            total_count=page.total,
            page_number=page_number,
            page_size=page_size,
        )

    # -- UpdateCertificateStatus / DeleteCertificate --

    def update_certificate_status(self, owner: str, certificate_id: str, status: str) -> None:
        """Set ACTIVE, INACTIVE or REVOKED; REVOKED is final, ACTIVE needs a certificate."""
        if status not in SETTABLE_STATUSES:
            raise _invalid(
                "Status",
                f"Status '{status}' is not one of {', '.join(SETTABLE_STATUSES)}"
                f"{spelling_hint(status, SETTABLE_STATUSES)}",
            )
        row = self._get(owner, certificate_id)
        if row.status == CertificateStatus.REVOKED:
            raise FailedPrecondition(
                f"certificate '{certificate_id}' is REVOKED, which is final",
                reason=INCORRECT_STATUS_REASON,
            )
        if status != CertificateStatus.REVOKED and row.certificate is None:
            raise FailedPrecondition(
                f"certificate '{certificate_id}' is PENDING; upload its certificate first",
                reason=INCORRECT_STATUS_REASON,
            )
        with self._store.write() as conn:
            moved = repo.update_kms_certificate_status(
                conn, owner, certificate_id, status, expected=(row.status,), now=self._now()
            )
            if moved:
                # In the commit of the change: the change is never without its record.
                audit.record_op("kms.certificate.status", resources=[certificate_id],
                                tenant=owner, details={"from": row.status, "to": status})(conn)
        if not moved:
            current = self._get(owner, certificate_id)
            raise FailedPrecondition(
                f"certificate '{certificate_id}' changed to {current.status} meanwhile; retry",
                reason=INCORRECT_STATUS_REASON,
            )

    def delete_certificate(self, owner: str, certificate_id: str) -> None:
        """Destroy the key in its token and delete the record."""
        row = self._get(owner, certificate_id)
        record = {"key": KeyRef(row.key_token, row.key_id), "resources": [certificate_id],
                  "tenant": owner, "details": {"sealed": row.wrapped_private_key is not None}}
        # The key is destroyed inside the delete's transaction: if destruction fails the
        # record stays (and can be deleted again); a key never outlives its record silently.
        # The audit record commits with the deletion, so a deletion is never without it.
        try:
            with self._store.write() as conn:
                if not repo.delete_kms_certificate(conn, owner, certificate_id):
                    raise _not_found(certificate_id)
                # Written before the key goes: if it cannot be, the key and the row stay.
                audit.record_op("kms.key.destroy", **record)(conn)
                if row.wrapped_private_key is None:
                    with _token_errors():
                        hsm_keys.destroy_key(self._token(row), bytes.fromhex(row.key_id))
        except BaseException as e:
            audit.record_failure("kms.key.destroy", e, **record)
            raise

    # -- CertificatePrivateKeySign / CertificatePublicKeyVerify --

    def private_key_sign(
        self,
        owner: str,
        certificate_id: str,
        *,
        algorithm: str,
        message: bytes,
        message_type: str = "",
    ) -> bytes:
        """Sign a message or digest with the certificate's key (ACTIVE only)."""
        row = self._get(owner, certificate_id)
        request = SignInput.parse(KeySpec(row.key_spec), algorithm, message, message_type)
        # Recorded before the signature is returned; the message only as its SHA-256.
        with self._key_use_of(row, "kms.sign", "CertificatePrivateKeySign",
                              (CertificateStatus.ACTIVE,), algorithm=request.algorithm.value,
                              message_type=request.message_type.value,
                              message_sha256=hashlib.sha256(request.message).hexdigest()):
            return self._sign(row, request)

    def _sign(self, row: KmsCertificateRow, request: SignInput) -> bytes:
        self._require_status(row, (CertificateStatus.ACTIVE,), "CertificatePrivateKeySign")
        digest = request.message_type is MessageType.DIGEST
        if request.algorithm is SignAlgorithm.SM2DSA:
            pkcs8 = self._sm2_private_key(row)
            if digest:
                return sm2.sm2_sign_digest(pkcs8, request.message)
            return sm2.sm2_sign(pkcs8, request.message)
        mechanism = _SIGN_MECHANISMS[request.algorithm]
        key_id = bytes.fromhex(row.key_id)
        with metrics.token_operation("sign", mechanism.value), _token_errors():
            if digest:
                return hsm_signing.sign_digest(self._token(row), key_id, mechanism, request.message)
            return hsm_signing.sign(self._token(row), key_id, mechanism, request.message)

    def public_key_verify(
        self,
        owner: str,
        certificate_id: str,
        *,
        algorithm: str,
        message: bytes,
        signature: bytes,
        message_type: str = "",
    ) -> bool:
        """Check a signature with the certificate's public key."""
        row = self._get(owner, certificate_id)
        request = SignInput.parse(KeySpec(row.key_spec), algorithm, message, message_type)
        digest = request.message_type is MessageType.DIGEST
        if request.algorithm is SignAlgorithm.SM2DSA:
            return sm2.sm2_verify(row.subject_public_key, request.message, signature, digest=digest)
        public_key = serialization.load_der_public_key(row.subject_public_key)
        sha256: hashes.HashAlgorithm = hashes.SHA256()
        chosen: Any = utils.Prehashed(sha256) if digest else sha256
        try:
            if request.algorithm is SignAlgorithm.ECDSA_SHA_256:
                assert isinstance(public_key, ec.EllipticCurvePublicKey)
                public_key.verify(signature, request.message, ec.ECDSA(chosen))
            else:
                assert isinstance(public_key, rsa.RSAPublicKey)
                pad: padding.AsymmetricPadding = (
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
                    if request.algorithm is SignAlgorithm.RSA_PSS_SHA_256
                    else padding.PKCS1v15()
                )
                public_key.verify(signature, request.message, pad, chosen)
        except InvalidSignature:
            return False
        return True

    # -- CertificatePublicKeyEncrypt / CertificatePrivateKeyDecrypt --

    def public_key_encrypt(
        self, owner: str, certificate_id: str, *, algorithm: str, plaintext: bytes
    ) -> bytes:
        """Encrypt with the certificate's public key (RSAES-OAEP or SM2PKE)."""
        row = self._get(owner, certificate_id)
        spec = KeySpec(row.key_spec)
        chosen = parse_encryption_algorithm(spec, algorithm)
        check_plaintext(spec, chosen, plaintext)
        if chosen is EncryptionAlgorithm.SM2PKE:
            return sm2.sm2_encrypt(row.subject_public_key, plaintext)
        public_key = serialization.load_der_public_key(row.subject_public_key)
        assert isinstance(public_key, rsa.RSAPublicKey)
        hash_ = _OAEP_HASHES[chosen][1]()
        return public_key.encrypt(
            plaintext, padding.OAEP(mgf=padding.MGF1(hash_), algorithm=hash_, label=None)
        )

    def private_key_decrypt(
        self, owner: str, certificate_id: str, *, algorithm: str, ciphertext: bytes
    ) -> bytes:
        """Decrypt with the certificate's private key (ACTIVE only)."""
        row = self._get(owner, certificate_id)
        spec = KeySpec(row.key_spec)
        chosen = parse_encryption_algorithm(spec, algorithm)
        # Recorded before the plaintext is returned; neither it nor the ciphertext is logged.
        with self._key_use_of(row, "kms.decrypt", "CertificatePrivateKeyDecrypt",
                              (CertificateStatus.ACTIVE,), algorithm=chosen.value):
            return self._decrypt(row, chosen, ciphertext)

    def _decrypt(self, row: KmsCertificateRow, chosen: EncryptionAlgorithm,
                 ciphertext: bytes) -> bytes:
        self._require_status(row, (CertificateStatus.ACTIVE,), "CertificatePrivateKeyDecrypt")
        if not ciphertext:
            raise _invalid("CiphertextBlob", "CiphertextBlob is empty")
        if chosen is EncryptionAlgorithm.SM2PKE:
            return sm2.sm2_decrypt(self._sm2_private_key(row), ciphertext)
        try:
            with metrics.token_operation("decrypt", f"RSA_OAEP_{_OAEP_HASHES[chosen][0].value}"), \
                    _token_errors():
                return hsm_signing.decrypt(
                    self._token(row), bytes.fromhex(row.key_id), _OAEP_HASHES[chosen][0], ciphertext
                )
        except hsm_signing.DecryptionError as e:
            raise _invalid(
                "CiphertextBlob",
                f"CiphertextBlob could not be decrypted with {chosen.value} under this key",
            ) from e

    # -- ExportCertificate --

    def export_certificate(
        self, owner: str, certificate_id: str, *, export_format: str, passphrase: str
    ) -> ExportedCertificate:
        """Certificate, chain and the private key under ``passphrase`` (exportable keys only)."""
        if export_format not in ExportFormat.ALL:
            raise _invalid(
                "ExportFormat",
                f"ExportFormat '{export_format}' is not one of {', '.join(ExportFormat.ALL)}"
                f"{spelling_hint(export_format, ExportFormat.ALL)}",
            )
        secret = passphrase.encode("utf-8")
        if not secret or len(secret) > MAX_PASSPHRASE_BYTES:
            raise _invalid(
                "Passphrase", f"Passphrase must be 1 to {MAX_PASSPHRASE_BYTES} bytes (UTF-8)"
            )
        row = self._get(owner, certificate_id)
        # Refusals too: an attempt to export a non-exportable key is what a reviewer looks for.
        with self._key_use_of(row, "kms.key.export", "ExportCertificate",
                              (CertificateStatus.ACTIVE, CertificateStatus.INACTIVE),
                              format=export_format):
            return self._export(row, export_format, passphrase)

    def _export(self, row: KmsCertificateRow, export_format: str,
                passphrase: str) -> ExportedCertificate:
        certificate_id = row.certificate_id
        secret = passphrase.encode("utf-8")
        if not row.exportable_private_key:
            raise PermissionDenied(
                f"the private key of certificate '{certificate_id}' was created non-exportable",
                reason=NOT_EXPORTABLE_REASON,
            )
        self._require_status(
            row, (CertificateStatus.ACTIVE, CertificateStatus.INACTIVE), "ExportCertificate"
        )
        assert row.certificate is not None
        pkcs8 = self._export_pkcs8(row)
        encryption = serialization.BestAvailableEncryption(secret)
        if row.key_spec == KeySpec.EC_SM2.value:
            if export_format == ExportFormat.PKCS12:
                # cryptography cannot load SM2 keys, so the PFX is built from ASN.1 (pkcs12.py).
                chain_pem = (row.certificate_chain or "").encode("ascii")
                blob = build_pkcs12(
                    pkcs8,
                    asn1_pem.unarmor(row.certificate.encode("ascii"))[2],
                    [der for _, _, der in asn1_pem.unarmor(chain_pem, multiple=True)],
                    passphrase,
                    friendly_name=certificate_id,
                )
                return ExportedCertificate(certificate_id=certificate_id, pkcs12=blob)
            sm2_key = sm2_serialization.load_der_private_key(pkcs8, password=None)
            private_pem = sm2_key.private_bytes(
                sm2_serialization.Encoding.PEM,
                sm2_serialization.PrivateFormat.PKCS8,
                sm2_serialization.BestAvailableEncryption(secret),
            )
            return ExportedCertificate(
                certificate_id=certificate_id,
                certificate=row.certificate,
                certificate_chain=row.certificate_chain or "",
                private_key=bytes(private_pem).decode("ascii"),
            )
        key = serialization.load_der_private_key(pkcs8, password=None)
        if export_format == ExportFormat.PEM:
            return ExportedCertificate(
                certificate_id=certificate_id,
                certificate=row.certificate,
                certificate_chain=row.certificate_chain or "",
                private_key=key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
                ).decode("ascii"),
            )
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        chain = (
            x509.load_pem_x509_certificates(row.certificate_chain.encode("ascii"))
            if row.certificate_chain
            else None
        )
        blob = pkcs12.serialize_key_and_certificates(
            name=certificate_id.encode("ascii"),
            key=key,
            cert=x509.load_pem_x509_certificate(row.certificate.encode("ascii")),
            cas=chain,
            encryption_algorithm=encryption,
        )
        return ExportedCertificate(certificate_id=certificate_id, pkcs12=blob)

    def _export_pkcs8(self, row: KmsCertificateRow) -> bytes:
        """The private key as PKCS#8 DER, in this process only for the re-encryption."""
        if row.wrapped_private_key is not None:
            return self._sm2_private_key(row)
        # The token hands the key out only wrapped (hsm/export.py); the recipient key is an
        # ephemeral in-process RSA key that is dropped right after unwrapping.
        recipient = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        recipient_spki = recipient.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with _token_errors():
            wrapped = hsm_export.export_private_key(
                self._token(row), bytes.fromhex(row.key_id), recipient_spki
            )
        return hsm_export.unwrap_export(wrapped, recipient)


def _not_found(certificate_id: str) -> NotFound:
    return NotFound(f"certificate '{certificate_id}' does not exist", reason=NOT_FOUND_REASON)


def _key_use(action: str, owner: str, certificate_id: str, token: str, key_id: bytes | None,
             **details: Any) -> contextlib.AbstractContextManager[dict[str, Any]]:
    """The audit record of one use of a certificate's key (service/audit)."""
    key = KeyRef(token, key_id.hex()) if key_id is not None else None
    return audit.key_use(action, key=key, resources=[certificate_id], tenant=owner,
                         details=details)
