"""The Private CA domain: CA hierarchy and end-entity issuance.

Issuance reads as numbered steps, after Boulder's ca/ca.go:
  1. load the parent CA (owner-scoped) and check it may issue (status ISSUE, kind SUB);
  2. parse and validate every input; nothing is stored and no key exists yet;
  3. choose the serial (16 CSPRNG bytes, or the caller's custom one);
  4. build the TBSCertificate with the per-CA cached Issuer (pre-encoded parts);
  5. lint it with our own RFC 5280 checks (docs/architecture.md, invariant 4);
  6. reserve (issuer, serial) and store the exact TBS, status RESERVED (invariant 2);
  7. sign the TBS in the token;
  8. assemble the certificate and verify it against the CA public key (invariant 3);
  9. mark the row ISSUED with the certificate DER;
 10. return the certificate (and the chain up to the root when immediately = 2).
A failure at 7 or 8 marks the row FAILED with the reason; it is never deleted, so the serial
stays known and revocable.

Token access: every PKCS#11 call goes through hsm.token.Token.run, which holds the token
lock (one thread per process in the token, docs/architecture.md). Per-CA state (Issuer, TokenSigner,
chain) is built once per process and cached by CA identifier; the CA row itself is read on
every call because its status may change in another process (a CA may be revoked there).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import ipaddress
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Connection, Engine

from hsm.errors import HsmError, MechanismUnavailable, TokenUnavailable
from hsm.keys import KeySpec, destroy_key, generate_key_pair
from hsm.token import Token
from service.entropy import random_uuid4
from service.errors import (
    FailedPrecondition,
    HsmcaError,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from service.pki.algorithms import CaAlgorithm, parse_algorithm
from service.pki.builder import (
    IssuanceRequest,
    Issuer,
    assemble_certificate,
    build_self_signed_tbs,
    build_tbs,
    der_sequence,
    der_tlv,
    read_tlv,
)
from service.pki.csr import ParsedCsr, parse_csr
from service.pki.lint import lint_self_signed_tbs, lint_tbs
from service.pki.names import (
    REASON_EKU,
    SanType,
    SubjectAltName,
    build_name,
    normalize_dns_name,
    normalize_ip_address,
    parse_client_sans,
    parse_domain_list,
    parse_extended_key_usages,
    parse_san,
)
from service.pki.profiles import EKU_ANY, KeyUsage, ProfileKind
from service.pki.serial import new_serial, validate_custom_serial
from service.pki.signer import SignatureAlgorithm
from service.pki.validity import (
    Validity,
    add_calendar,
    check_within_issuer,
    parse_validity,
    resolve_validity,
)
from service.pki.verify import verify_certificate
from service.private_ca import jobs
from service.private_ca.batch import Batcher
from service.private_ca.jobs import JobLease
from service.private_ca.requests import (
    ApiPassthrough,
    CaCreated,
    CaInfo,
    CaPage,
    CreateClientCertificate,
    CreateCustomCertificate,
    CreateRootCa,
    CreateServerCertificate,
    CreateSubCa,
    IssueCommon,
    IssuedCertificate,
    SubjectFields,
    SystemKey,
    ValidityPeriod,
    page_args,
)
from service.storage import repo
from service.storage.group_commit import BATCH_SCRATCH, group_committer, write_gate
from service.storage.repo import CaRow, CertificateRow, serial_hex
from service.token_signer import TokenSigner

__all__ = ["PrivateCaService", "utc_now"]

_log = logging.getLogger("hsmca.private_ca")

# Token roles (hsm.config.TokenRole values) as stored in key_token columns.
KEY_TOKEN_HSM = "hsm"  # noqa: S105 - a token role, not a secret
KEY_TOKEN_SOFTWARE = "software"  # noqa: S105
DEFAULT_CRL_DAY = 7
MAX_CRL_DAY = 365
MAX_CA_YEARS = 100

_SIGN_ALGORITHM_NAMES: dict[SignatureAlgorithm, str] = {
    SignatureAlgorithm.SHA256_RSA: "SHA256WithRSA",
    SignatureAlgorithm.SHA384_RSA: "SHA384WithRSA",
    SignatureAlgorithm.SHA512_RSA: "SHA512WithRSA",
    SignatureAlgorithm.RSASSA_PSS_SHA256: "SHA256WithRSA-PSS",
    SignatureAlgorithm.SHA256_ECDSA: "SHA256WithECDSA",
    SignatureAlgorithm.SHA384_ECDSA: "SHA384WithECDSA",
    SignatureAlgorithm.SHA512_ECDSA: "SHA512WithECDSA",
    SignatureAlgorithm.SM3_SM2: "SM3WithSM2",
}


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def _pem(der: bytes) -> str:
    """RFC 7468 PEM, 64-character lines (the bytes asn1crypto's pem.armor gives, faster)."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


@dataclasses.dataclass(frozen=True)
class _CaContext:
    """Per-CA state built once per process: Issuers, token signer, algorithm, chain."""

    ca: CaRow  # as loaded; its status is re-checked when a serial is reserved
    algorithm: CaAlgorithm
    issuer: Issuer
    issuer_with_crl: Issuer | None  # the variant whose leaves carry the CRL DP (enable_crl)
    signer: TokenSigner
    certificate_pem: str
    chain_above_pem: str  # certificates above this CA, PEM (empty for a root)


@dataclasses.dataclass(frozen=True)
class _LeafPlan:
    """A validated end-entity request: everything step 3 onwards needs (step 2 output)."""

    kind: str  # SERVER | CLIENT | CUSTOM
    profile: ProfileKind
    subject_der: bytes
    common_name: str | None
    public_key_info: bytes | None  # None: a system key is generated at step 2b
    key_algorithm: CaAlgorithm | None  # for system keys
    key_placement: tuple[Token, str, bool] | None  # (token, token role, exportable)
    sans: tuple[SubjectAltName, ...]
    validity: Validity
    key_usage: KeyUsage | None
    extended_key_usages: tuple[str, ...]
    criticals: tuple[str, ...]
    custom_serial: int | None
    common: IssueCommon
    custom_identifier: str | None = None


class PrivateCaService:
    """CreateRootCACertificate ... CreateClientCertificate over a database and two tokens."""

    def __init__(
        self,
        engine: Engine,
        hsm_token: Token,
        software_token: Token,
        *,
        public_base_url: str,
        min_rsa_bits: int,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        if not public_base_url.startswith(("http://", "https://")):
            raise ValueError(f"public_base_url must be an http(s) URL, got {public_base_url!r}")
        if min_rsa_bits < 1024:
            raise ValueError(f"min_rsa_bits must be at least 1024, got {min_rsa_bits}")
        self._engine = engine
        self._hsm = hsm_token
        self._software = software_token
        self._base_url = public_base_url.rstrip("/")
        self._min_rsa_bits = min_rsa_bits
        self._clock = clock
        self._contexts: dict[tuple[str, str], _CaContext] = {}  # (owner, CA identifier)
        self._contexts_lock = threading.Lock()
        # One writer per database across threads and worker processes (a file lock, so
        # SQLite's busy handler does not sleep); hot-path writes share commits.
        self._gate = write_gate(engine)
        self._committer = group_committer(engine)
        self._batcher = Batcher(self._committer.run_many, token_error=_token_error)

    # --- helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, one at a time in this process."""
        # SQLite has one writer; a writer that finds its lock taken sleeps in the busy
        # handler (1, 2, 5, ... ms), which costs more than waiting on the gate
        # (service/storage/group_commit.py).
        with self._gate.held(), self._engine.begin() as conn:
            yield conn

    def _now(self) -> dt.datetime:
        # RFC 5280 4.1.2.5: validity is encoded in whole seconds.
        return self._clock().astimezone(dt.UTC).replace(microsecond=0)

    def crl_url(self, ca_identifier: str) -> str:
        """The CRL distribution point URL of a CA (served by service/http.py)."""
        return f"{self._base_url}/crl/{ca_identifier}.crl"

    def _load_ca(self, owner: str, identifier: str, reason: str) -> CaRow:
        if not identifier:
            raise InvalidArgument(f"{reason.split('.')[-1]} is required",
                                  reason=f"InvalidParameter.{reason.split('.')[-1]}")
        with self._engine.connect() as conn:
            row = repo.get_ca(conn, owner, identifier)
        if row is None or row.status in ("RESERVED", "FAILED"):
            raise NotFound(f"no CA with identifier {identifier!r}", reason=reason)
        return row

    def _context(self, owner: str, ca: CaRow) -> _CaContext:
        ctx = self._contexts.get((owner, ca.identifier))
        if ctx is not None:
            return ctx
        if ca.certificate is None:
            raise Internal(f"CA {ca.identifier} has status {ca.status} but no certificate")
        algorithm = CaAlgorithm(ca.algorithm)
        sig = algorithm.signature_algorithm
        issuer = Issuer.from_certificate(ca.certificate, sig)
        with_crl = (Issuer.from_certificate(ca.certificate, sig,
                                            crl_url=self.crl_url(ca.identifier))
                    if ca.enable_crl else None)
        chain_above = ""
        if ca.parent_identifier is not None:
            with self._engine.connect() as conn:
                parent = repo.get_ca(conn, owner, ca.parent_identifier)
            if parent is None or parent.certificate is None:
                raise Internal(f"parent of CA {ca.identifier} is missing")
            chain_above = _pem(parent.certificate)
        ctx = _CaContext(
            ca=ca,
            algorithm=algorithm,
            issuer=issuer,
            issuer_with_crl=with_crl,
            signer=TokenSigner(self._hsm, bytes.fromhex(ca.key_id), sig, ca.public_key_info),
            certificate_pem=_pem(ca.certificate),
            chain_above_pem=chain_above,
        )
        with self._contexts_lock:
            return self._contexts.setdefault((owner, ca.identifier), ctx)

    def _crl_settings(self, enable_crl: bool, crl_day: int) -> int | None:
        if not enable_crl:
            if crl_day:
                _check_crl_day(crl_day)
            return crl_day or None
        return _check_crl_day(crl_day) if crl_day else DEFAULT_CRL_DAY

    def _generate_ca_key(self, algorithm: CaAlgorithm, identifier: str) -> tuple[bytes, bytes]:
        """Generate a CA key pair, non-exportable, in the hsm token: (CKA_ID, SPKI DER)."""
        key_id = secrets.token_bytes(16)
        try:
            key = generate_key_pair(self._hsm, KeySpec(algorithm.hsm_key_spec), key_id=key_id,
                                    label=identifier, exportable=False)
        except MechanismUnavailable as e:
            raise FailedPrecondition(
                f"the hsm token cannot generate {algorithm.value} CA keys: {e}. CA keys are "
                "always generated non-exportable in the hsm token; SM2 CAs need a token with "
                "an SM2 mechanism", reason="UnsupportedOperation.Algorithm") from e
        except TokenUnavailable as e:
            raise Unavailable(f"the hsm token is unavailable: {e}") from e
        return key_id, key.public_key_info

    # --- CA hierarchy --------------------------------------------------------------------

    def create_root_ca(self, owner: str, req: CreateRootCa) -> CaCreated:
        """CreateRootCACertificate: a self-signed root whose key never leaves the hsm token."""
        # Step 1: validate everything before a key exists.
        algorithm = parse_algorithm(req.algorithm)
        years = _check_years(req.years)
        crl_day = self._crl_settings(req.enable_crl, req.crl_day)
        subject = _ca_subject(req.subject)
        now = self._now()
        not_after = add_calendar(now, years=years)
        identifier = str(uuid.uuid4())
        # Step 2: the key, in the hsm token, non-exportable (docs/architecture.md, invariant 1).
        key_id, spki = self._generate_ca_key(algorithm, identifier)
        try:
            serial = new_serial()
            # Step 3: TBS and lint; RFC 5280 4.2.1.9: no pathLenConstraint on the root.
            tbs = build_self_signed_tbs(subject, spki, algorithm.signature_algorithm, serial,
                                        now, not_after)
            lint_self_signed_tbs(tbs)
            row = _ca_row(identifier, owner, "ROOT", req.subject, subject.dump(), algorithm,
                          key_id, spki, serial, now, not_after, None, None, req.enable_crl,
                          crl_day, req.tags, None)
            signer = TokenSigner(self._hsm, key_id, algorithm.signature_algorithm, spki)
            cert = self._sign_ca(row, tbs, signer, spki, "ROOTCA", now)
        except BaseException:
            _destroy_quietly(self._hsm, key_id)
            raise
        return CaCreated(identifier, _pem(cert), "")

    def create_sub_ca(self, owner: str, req: CreateSubCa) -> CaCreated:
        """CreateSubCACertificate: a subordinate CA signed by a root of the same owner."""
        # Step 1: the parent.
        parent = self._load_ca(owner, req.parent_identifier, "NotFound.ParentIdentifier")
        if parent.kind != "ROOT":
            raise InvalidArgument("the parent of a subordinate CA must be a root CA",
                                  reason="InvalidParameter.ParentIdentifier")
        if parent.status != "ISSUE":
            raise FailedPrecondition(f"the parent CA is {parent.status}, not ISSUE",
                                     reason="IncorrectStatus.CA")
        pctx = self._context(owner, parent)
        # Step 2: inputs.
        algorithm = parse_algorithm(req.algorithm)
        if algorithm.family != pctx.algorithm.family:
            raise InvalidArgument(
                f"algorithm {algorithm.value} is not in the parent CA's family "
                f"({pctx.algorithm.family}, parent {pctx.algorithm.value}); key lengths may "
                "differ, families may not", reason="InvalidParameter.Algorithm")
        years = _check_years(req.years)
        if req.path_len_constraint < 0:
            raise InvalidArgument("path_len_constraint must not be negative",
                                  reason="InvalidParameter.PathLenConstraint")
        ekus = tuple(parse_extended_key_usages(req.extended_key_usages))
        if EKU_ANY in ekus:
            # CA/B BR 7.1.2.10.6: a CA certificate MUST NOT carry anyExtendedKeyUsage, and
            # OpenSSL then refuses every TLS leaf under it ("unsuitable certificate purpose").
            # Leaving the list empty already means "not constrained".
            raise InvalidArgument(
                "extended_key_usages of a subordinate CA must not include any "
                "(anyExtendedKeyUsage, 2.5.29.37.0); leave the list empty for a CA that may "
                "issue every usage", reason=REASON_EKU)
        crl_day = self._crl_settings(req.enable_crl, req.crl_day)
        subject = _ca_subject(req.subject)
        now = self._now()
        validity = Validity(now, add_calendar(now, years=years))
        # Never clamped: beyond the parent is the caller's mistake.
        check_within_issuer(validity, parent.not_before, parent.not_after)
        identifier = str(uuid.uuid4())
        key_id, spki = self._generate_ca_key(algorithm, identifier)
        try:
            serial = new_serial()
            tbs = build_tbs(pctx.issuer, IssuanceRequest(
                profile=ProfileKind.SUB_CA, subject=subject.dump(), public_key_info=spki,
                serial=serial, not_before=validity.not_before, not_after=validity.not_after,
                extended_key_usages=ekus, path_len=req.path_len_constraint))
            lint_tbs(tbs, pctx.issuer)
            row = _ca_row(identifier, owner, "SUB", req.subject, subject.dump(), algorithm,
                          key_id, spki, serial, validity.not_before, validity.not_after,
                          parent.identifier, req.path_len_constraint, req.enable_crl, crl_day,
                          req.tags, ekus)
            cert = self._sign_ca(row, tbs, pctx.signer, pctx.issuer.public_key_info, "SUBCA",
                                 now, issuer_identifier=parent.identifier)
        except BaseException:
            _destroy_quietly(self._hsm, key_id)
            raise
        return CaCreated(identifier, _pem(cert), pctx.certificate_pem)

    def _sign_ca(self, row: CaRow, tbs: bytes, signer: TokenSigner, issuer_spki: bytes,
                 kind: str, now: dt.datetime, *, issuer_identifier: str | None = None) -> bytes:
        """Reserve the CA row and its certificate row, sign, verify, mark both issued."""
        cert_row = CertificateRow(
            identifier=row.identifier, owner=row.owner,
            issuer_identifier=issuer_identifier or row.identifier, status="RESERVED",
            kind=kind, created_at=now, updated_at=now, serial=row.serial, tbs=tbs,
            common_name=row.common_name, subject_der=row.subject_der,
            not_before=row.not_before, not_after=row.not_after, key_token=KEY_TOKEN_HSM,
            key_id=row.key_id, exportable=False, tags=row.tags, enable_crl=row.enable_crl)
        # The ca row first: a root's own certificate row names it as its issuer.
        with self._write() as conn:
            repo.insert_ca(conn, row)
            repo.reserve_certificate(conn, cert_row)
        try:
            signature = signer.sign(tbs)
            cert = assemble_certificate(tbs, _sig_alg_der(tbs), signature)
            verify_certificate(cert, issuer_spki)
        except Exception as e:
            reason = f"signing failed: {type(e).__name__}: {e}"
            with self._write() as conn:
                repo.mark_failed(conn, row.identifier, reason)
                repo.update_ca_status(conn, row.owner, row.identifier, "FAILED",
                                      expected=("RESERVED",))
            raise _token_error(e) from e
        with self._write() as conn:
            repo.mark_issued(conn, row.identifier, cert)
            repo.mark_ca_issued(conn, row.identifier, cert)
        return cert

    def describe_ca(self, owner: str, identifier: str) -> CaInfo:
        """DescribeCACertificate."""
        ca = self._load_ca(owner, identifier, "NotFound.Identifier")
        return self._ca_info(owner, ca)

    def list_cas(self, owner: str, *, current_page: int, show_size: int, identifier: str = "",
                 ca_status: str = "") -> CaPage:
        """DescribeCACertificateList: one page, oldest first."""
        page, size = page_args(current_page, show_size)
        if ca_status not in ("", "ISSUE", "REVOKE"):
            raise InvalidArgument("ca_status must be ISSUE or REVOKE",
                                  reason="InvalidParameter.CaStatus")
        statuses = (ca_status,) if ca_status else ("ISSUE", "REVOKE")
        if identifier:
            with self._engine.connect() as conn:
                one = repo.get_ca(conn, owner, identifier)
            rows: tuple[CaRow, ...] = (one,) if one and one.status in statuses else ()
            total = len(rows)
            rows = rows if page == 1 else ()
        else:
            with self._engine.connect() as conn:
                result = repo.list_cas(conn, owner, offset=(page - 1) * size, limit=size,
                                       status=statuses)
            rows, total = result.items, result.total
        return CaPage(tuple(self._ca_info(owner, r) for r in rows), total,
                      (total + size - 1) // size, page, size)

    def _ca_info(self, owner: str, ca: CaRow) -> CaInfo:
        algorithm = CaAlgorithm(ca.algorithm)
        cert = ca.certificate or b""
        chain = ""
        if ca.parent_identifier is not None:
            with self._engine.connect() as conn:
                parent = repo.get_ca(conn, owner, ca.parent_identifier)
            chain = _pem(parent.certificate) if parent and parent.certificate else ""
        with self._engine.connect() as conn:
            issued = repo.list_certificates(conn, owner, issuer_identifier=ca.identifier,
                                            kinds=("SERVER", "CLIENT", "CUSTOM", "SUBCA"),
                                            status=("ISSUED", "REVOKED"), limit=1).total
        subject_dn = cx509.load_der_x509_certificate(cert).subject.rfc4514_string()
        return CaInfo(
            identifier=ca.identifier, parent_identifier=ca.parent_identifier or "",
            certificate_type="ROOT" if ca.kind == "ROOT" else "SUB_ROOT", status=ca.status,
            serial_number=ca.serial, algorithm=ca.algorithm, key_size=algorithm.key_bits,
            sign_algorithm=_SIGN_ALGORITHM_NAMES[algorithm.signature_algorithm],
            subject_dn=subject_dn, common_name=ca.common_name,
            organization=ca.organization or "", organization_unit=ca.organization_unit or "",
            country_code=ca.country_code or "", state=ca.state or "",
            locality=ca.locality or "", years=ca.not_after.year - ca.not_before.year,
            not_before=ca.not_before, not_after=ca.not_after, certificate_pem=_pem(cert),
            chain_pem=chain, sha2=hashlib.sha256(cert).hexdigest(),
            path_len_constraint=(-1 if ca.path_len_constraint is None
                                 else ca.path_len_constraint),
            extended_key_usages=ca.extended_key_usages or (), enable_crl=ca.enable_crl,
            crl_day=ca.crl_day or 0,
            crl_url=self.crl_url(ca.identifier) if ca.enable_crl else "",
            cert_issued_count=issued, tags=dict(ca.tags))

    # --- end-entity issuance -------------------------------------------------------------

    def create_server_certificate(self, owner: str, req: CreateServerCertificate, *,
                                  job: JobLease | None = None) -> IssuedCertificate:
        """CreateServerCertificateWithCsr / CreateServerCertificate."""
        ca, ctx = self._issuing_ca(owner, req.common)
        csr = self._parse_csr(req.csr, ctx) if req.csr is not None else None
        # The CSR's CN wins over common_name (API: "determined by the information in the Csr").
        cn = (csr.common_name if csr is not None and csr.common_name else
              req.subject.common_name) or None
        sans = list(parse_domain_list(req.domain))
        if csr is not None:
            sans += [s for s in csr.requested_sans
                     if s.type in (SanType.DNS_NAME, SanType.IP_ADDRESS)]
        if cn is not None:
            # CA/B BR 7.1.4.3: a server certificate's CN is one of its SANs.
            cn_san = _cn_as_san(cn)
            if cn_san is not None:
                sans.insert(0, cn_san)
        plan = _LeafPlan(
            kind="SERVER", profile=ProfileKind.SERVER,
            subject_der=_leaf_subject(req.subject, ca, cn),
            common_name=cn, public_key_info=csr.public_key_info if csr else None,
            key_algorithm=None if csr else self._system_key_algorithm(req.algorithm, ctx),
            key_placement=None if csr else self._key_placement(req.key),
            sans=_dedupe(sans), validity=self._validity(req.validity, ca),
            key_usage=None, extended_key_usages=(), criticals=(), custom_serial=None,
            common=req.common)
        return self._dispatch(owner, ca, ctx, plan, req, job)

    def create_client_certificate(self, owner: str, req: CreateClientCertificate, *,
                                  job: JobLease | None = None) -> IssuedCertificate:
        """CreateClientCertificateWithCsr / CreateClientCertificate."""
        ca, ctx = self._issuing_ca(owner, req.common)
        csr = self._parse_csr(req.csr, ctx) if req.csr is not None else None
        cn = (csr.common_name if csr is not None and csr.common_name else
              req.subject.common_name) or None
        plan = _LeafPlan(
            kind="CLIENT", profile=ProfileKind.CLIENT,
            subject_der=_leaf_subject(req.subject, ca, cn),
            common_name=cn, public_key_info=csr.public_key_info if csr else None,
            key_algorithm=None if csr else self._system_key_algorithm(req.algorithm, ctx),
            key_placement=None if csr else self._key_placement(req.key),
            sans=_dedupe(parse_client_sans(req.san_type, req.san_value)),
            validity=self._validity(req.validity, ca), key_usage=None,
            extended_key_usages=(), criticals=(), custom_serial=None, common=req.common)
        return self._dispatch(owner, ca, ctx, plan, req, job)

    def create_custom_certificate(self, owner: str, req: CreateCustomCertificate, *,
                                  job: JobLease | None = None) -> IssuedCertificate:
        """CreateCustomCertificate: subject, extensions, criticals and serial as passed."""
        ca, ctx = self._issuing_ca(owner, req.common)
        csr = self._parse_csr(req.csr, ctx)
        ap: ApiPassthrough = req.api_passthrough
        if ap.subject is not None:
            # API docs: "If api_passthrough.subject is set, the CSR's subject is ignored."
            f = ap.subject.fields
            name = build_name(f.common_name, f.organization, f.organization_unit, f.country,
                              f.state, f.locality, ap.subject.custom_attributes)
            subject_der = bytes(name.dump())
            cn = f.common_name or None
        else:
            subject_der, cn = csr.subject_der, csr.common_name
        if ap.subject_alternative_names:
            sans = [parse_san(t, v) for t, v in ap.subject_alternative_names]
        else:
            sans = list(csr.requested_sans)
        validity = parse_validity(req.validity, self._now())
        check_within_issuer(validity, ca.not_before, ca.not_after)
        ekus = tuple(parse_extended_key_usages(ap.extended_key_usages))
        serial = validate_custom_serial(ap.serial_number) if ap.serial_number else None
        plan = _LeafPlan(
            kind="CUSTOM", profile=ProfileKind.CUSTOM, subject_der=subject_der,
            common_name=cn, public_key_info=csr.public_key_info, key_algorithm=None,
            key_placement=None, sans=_dedupe(sans), validity=validity,
            key_usage=ap.key_usage, extended_key_usages=ekus, criticals=ap.criticals,
            custom_serial=serial, common=req.common,
            custom_identifier=req.custom_identifier or None)
        return self._dispatch(owner, ca, ctx, plan, req, job)

    def _dispatch(self, owner: str, ca: CaRow, ctx: _CaContext, plan: _LeafPlan,
                  req: jobs.Request, job: JobLease | None) -> IssuedCertificate:
        """Issue now, store an asynchronous job, or replay a custom_identifier (jobs.py)."""
        return jobs.dispatch(self, owner, ca, ctx, plan, req, job)

    def _issuing_ca(self, owner: str, common: IssueCommon) -> tuple[CaRow, _CaContext]:
        """Step 1: the parent exists for this owner, is a SUB CA and may issue."""
        # None is the API default, 0: asynchronous (service/private_ca/jobs.py).
        if common.immediately not in (None, 0, 1, 2):
            raise InvalidArgument(f"immediately must be 0, 1 or 2, got {common.immediately}",
                                  reason="InvalidParameter.Immediately")
        cached = self._contexts.get((owner, common.parent_identifier))
        # A cached CA skips the read: kind, key and certificate never change, and its status
        # is re-checked in the reservation transaction (step 6), which is authoritative.
        ca = cached.ca if cached else self._load_ca(owner, common.parent_identifier,
                                                    "NotFound.ParentIdentifier")
        if ca.kind != "SUB":
            raise InvalidArgument(
                "only subordinate CAs issue end-entity certificates; parent_identifier names "
                "a root CA (create a subordinate CA with CreateSubCACertificate)",
                reason="InvalidParameter.ParentIdentifier")
        if ca.status != "ISSUE":
            raise FailedPrecondition(f"the issuing CA is {ca.status}, not ISSUE",
                                     reason="IncorrectStatus.CA")
        ctx = self._context(owner, ca)
        if common.enable_crl and ctx.issuer_with_crl is None:
            raise InvalidArgument(
                "enable_crl = 1 but the issuing CA was created without a CRL (enable_crl = 0)",
                reason="InvalidParameter.EnableCrl")
        return ca, ctx

    def _parse_csr(self, text: str | None, ctx: _CaContext) -> ParsedCsr:
        if not text:
            raise InvalidArgument("csr is required", reason="InvalidParameter.Csr")
        csr = parse_csr(text, min_rsa_bits=self._min_rsa_bits)
        if csr.key_family != ctx.algorithm.family:
            raise InvalidArgument(
                f"the CSR's key is {csr.key_family}, but the issuing CA is "
                f"{ctx.algorithm.value}; certificates use the CA's key family",
                reason="InvalidParameter.Csr")
        return csr

    def _system_key_algorithm(self, name: str, ctx: _CaContext) -> CaAlgorithm:
        algorithm = parse_algorithm(name) if name else ctx.algorithm
        if algorithm.family != ctx.algorithm.family:
            raise InvalidArgument(
                f"algorithm {algorithm.value} is not in the issuing CA's family "
                f"({ctx.algorithm.value}); key lengths may differ, families may not",
                reason="InvalidParameter.Algorithm")
        if algorithm.family == "RSA" and algorithm.key_bits < self._min_rsa_bits:
            raise InvalidArgument(
                f"{algorithm.value} is below the minimum RSA key size of {self._min_rsa_bits} "
                "bits", reason="InvalidParameter.Algorithm")
        if algorithm.family == "SM2":
            raise FailedPrecondition("SM2 keys cannot be generated in this token",
                                     reason="UnsupportedOperation.Algorithm")
        return algorithm

    def _key_placement(self, key: SystemKey) -> tuple[Token, str, bool]:
        level = key.protection_level or "SOFTWARE"
        if level not in ("SOFTWARE", "HSM"):
            raise InvalidArgument("protection_level must be SOFTWARE or HSM",
                                  reason="InvalidParameter.ProtectionLevel")
        if level == "HSM":
            if key.exportable_private_key:
                raise InvalidArgument("HSM keys are never exportable",
                                      reason="InvalidParameter.ExportablePrivateKey")
            return self._hsm, KEY_TOKEN_HSM, False
        if key.exportable_private_key is False:
            # docs/architecture.md inv. 1: non-exportable means generated in a token that refuses.
            return self._hsm, KEY_TOKEN_HSM, False
        return self._software, KEY_TOKEN_SOFTWARE, True

    def _validity(self, period: ValidityPeriod, ca: CaRow) -> Validity:
        validity = resolve_validity(years=period.years, months=period.months, days=period.days,
                                    before_time=period.before_time,
                                    after_time=period.after_time, now=self._now())
        check_within_issuer(validity, ca.not_before, ca.not_after)
        return validity

    def _issue(self, owner: str, ca: CaRow, ctx: _CaContext, plan: _LeafPlan,
               job: JobLease | None = None) -> IssuedCertificate:
        """Steps 2b-10 for a validated plan: prepared here, steps 6-10 batched (batch.py)."""
        prepared = self._prepare(owner, ca, ctx, plan, job)
        cert = self._batcher.issue(prepared)
        # Step 10: the certificate, and the chain up to the root for immediately = 2.
        chain = ctx.certificate_pem + ctx.chain_above_pem if plan.common.immediately == 2 else ""
        return IssuedCertificate(prepared.row.identifier, _pem(cert),
                                 prepared.row.serial or "", chain)

    def check_plan(self, ctx: _CaContext, plan: _LeafPlan) -> None:
        """Steps 3-5 as a dry run, for a request stored now and issued later (jobs.py).

        Building and linting the TBS is where the rules that depend on the whole request are
        checked (criticals naming present extensions, key usage against key type and EKU,
        EKU within the issuing CA's, names). A request stored as a job must meet them before
        it is stored (docs/architecture.md, invariant 5: refused at once, nothing stored), not fail
        later in the background. Nothing is reserved or signed here. A system-generated key
        does not exist yet: a throwaway key of the requested algorithm stands in for it.
        """
        issuer = ctx.issuer_with_crl if plan.common.enable_crl else ctx.issuer
        assert issuer is not None  # _issuing_ca refused enable_crl without a CRL issuer
        spki = plan.public_key_info
        if spki is None:
            assert plan.key_algorithm is not None
            spki = _stand_in_public_key(plan.key_algorithm)
        serial = plan.custom_serial if plan.custom_serial is not None else new_serial()
        sans_der = _general_names_der(plan.sans) if plan.sans else None
        _linted_tbs(issuer, plan, spki, serial, sans_der)

    def _prepare(self, owner: str, ca: CaRow, ctx: _CaContext, plan: _LeafPlan,
                 job: JobLease | None) -> _Prepared:
        """Steps 2b-5: the key (if system-generated), serial, TBS and lint; the row to store."""
        issuer = ctx.issuer_with_crl if plan.common.enable_crl else ctx.issuer
        assert issuer is not None  # _issuing_ca refused enable_crl without a CRL issuer
        # An asynchronous job already has its row, PENDING and leased to us: it keeps its id.
        identifier = job.identifier if job is not None else str(random_uuid4())
        sans_der = _general_names_der(plan.sans) if plan.sans else None
        # Step 2b: a system-generated key, labelled with the certificate identifier.
        key_id: bytes | None = None
        spki = plan.public_key_info
        placement = plan.key_placement
        if spki is None:
            assert placement is not None and plan.key_algorithm is not None
            key_id = secrets.token_bytes(16)
            try:
                spki = generate_key_pair(placement[0], KeySpec(plan.key_algorithm.hsm_key_spec),
                                         key_id=key_id, label=identifier,
                                         exportable=placement[2]).public_key_info
            except HsmError as e:
                raise _token_error(e) from e
        try:
            # Step 3: the serial.
            serial = plan.custom_serial if plan.custom_serial is not None else new_serial()
            # Steps 4 and 5: the TBS, and our own RFC 5280 checks before the token is asked.
            tbs = _linted_tbs(issuer, plan, spki, serial, sans_der)
            now = self._now()
            row = CertificateRow(
                identifier=identifier, owner=owner, issuer_identifier=ca.identifier,
                status="RESERVED", kind=plan.kind, created_at=now, updated_at=now,
                serial=serial_hex(serial), tbs=tbs, common_name=plan.common_name,
                subject_der=plan.subject_der,
                sans=tuple((s.type.value, s.value) for s in plan.sans),
                not_before=plan.validity.not_before, not_after=plan.validity.not_after,
                key_token=placement[1] if key_id is not None and placement else None,
                key_id=key_id.hex() if key_id is not None else None,
                exportable=placement[2] if key_id is not None and placement else None,
                custom_identifier=plan.custom_identifier, tags=dict(plan.common.tags),
                resource_group_id=plan.common.resource_group_id or None,
                enable_crl=plan.common.enable_crl)
        except BaseException:
            if key_id is not None and placement is not None:
                _destroy_quietly(placement[0], key_id)
            raise
        return _Prepared(row=row, issuer=issuer, signer=ctx.signer, clock=self._now,
                         job_worker_id=job.worker_id if job is not None else None,
                         key_token=placement[0] if key_id is not None and placement else None,
                         key_id=key_id)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """Steps 6-9 of one issuance, as batch.Batcher runs them."""

    row: CertificateRow  # RESERVED, with the exact TBS
    issuer: Issuer
    signer: TokenSigner
    clock: Callable[[], dt.datetime]
    job_worker_id: str | None
    key_token: Token | None  # a system-generated key to destroy if issuance fails
    key_id: bytes | None

    def reserve_op(self) -> Callable[[Connection], None]:
        # Step 6: reserve (issuer, serial) and store the exact TBS (invariant 2).
        return functools.partial(_reserve, self.row, self.job_worker_id,
                                 self.row.issuer_identifier)

    def sign(self) -> bytes:
        # Step 7: the token signs the exact TBS that the reservation stored.
        assert self.row.tbs is not None
        return self.signer.sign(self.row.tbs)

    def finish(self, signature: bytes) -> bytes:
        # Step 8: assemble, verify against the CA key (invariant 3).
        assert self.row.tbs is not None
        cert = assemble_certificate(self.row.tbs, self.issuer.signature_algorithm_der,
                                    signature)
        verify_certificate(cert, self.issuer.public_key_info)
        return cert

    def record_op(self, certificate: bytes) -> Callable[[Connection], None]:
        # Step 9: record the certificate (committed before it is returned).
        identifier = self.row.identifier
        return lambda conn: repo.mark_issued(conn, identifier, certificate)

    def failed_op(self, error: BaseException) -> Callable[[Connection], bool]:
        # The row stays (FAILED, with its serial and TBS): revocable, never silent.
        identifier, reason = self.row.identifier, f"{type(error).__name__}: {error}"
        return lambda conn: repo.mark_failed(conn, identifier, reason, now=self.clock())

    def release(self) -> None:
        if self.key_token is not None and self.key_id is not None:
            _destroy_quietly(self.key_token, self.key_id)


# --- module helpers ----------------------------------------------------------------------


def _linted_tbs(issuer: Issuer, plan: _LeafPlan, spki: bytes, serial: int,
                sans_der: bytes | None) -> bytes:
    """Steps 4-5: the TBS from the cached Issuer's pre-encoded parts, linted (invariant 4)."""
    tbs = build_tbs(issuer, IssuanceRequest(
        profile=plan.profile, subject=plan.subject_der, public_key_info=spki,
        serial=serial, not_before=plan.validity.not_before,
        not_after=plan.validity.not_after, key_usage=plan.key_usage,
        extended_key_usages=plan.extended_key_usages, subject_alt_names=sans_der,
        criticals=plan.criticals, enable_crl=plan.common.enable_crl))
    lint_tbs(tbs, issuer)
    return tbs


@functools.cache
def _stand_in_public_key(algorithm: CaAlgorithm) -> bytes:
    """A SubjectPublicKeyInfo of ``algorithm`` for check_plan's dry run (never certified)."""
    # Made in software and thrown away: only its type and size shape the TBS and the lint.
    # One per algorithm and process (an RSA-4096 key takes about a second to make).
    key: Any
    if algorithm.family == "RSA":
        key = rsa.generate_private_key(65537, algorithm.key_bits)
    else:
        key = ec.generate_private_key(_STAND_IN_CURVES[algorithm.key_bits])
    return bytes(key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


_STAND_IN_CURVES = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}


def _check_years(years: int) -> int:
    if not 1 <= years <= MAX_CA_YEARS:
        raise InvalidArgument(f"years must be 1..{MAX_CA_YEARS}, got {years}",
                              reason="InvalidParameter.Years")
    return years


def _check_crl_day(crl_day: int) -> int:
    if not 1 <= crl_day <= MAX_CRL_DAY:
        raise InvalidArgument(f"crl_day must be 1..{MAX_CRL_DAY}, got {crl_day}",
                              reason="InvalidParameter.CrlDay")
    return crl_day


def _ca_subject(s: SubjectFields) -> asn1_x509.Name:
    if not s.common_name:
        # RFC 5280 4.1.2.6: a CA's subject MUST be non-empty; the CN names the CA.
        raise InvalidArgument("common_name is required for a CA",
                              reason="InvalidParameter.CommonName")
    return build_name(s.common_name, s.organization, s.organization_unit, s.country, s.state,
                      s.locality)


def _reserve(row: CertificateRow, job_worker_id: str | None, ca_identifier: str,
             conn: Connection) -> None:
    """Step 6 in a write transaction: the reservation, then the CA's current status."""
    if job_worker_id is not None:
        repo.reserve_claimed(conn, row, job_worker_id)
    else:
        repo.reserve_certificate(conn, row)
    # After the INSERT, so this transaction holds the write lock: a CA revoked meanwhile
    # (UpdateCACertificateStatus) is seen here, the reservation rolls back. Within one
    # group-commit batch the answer cannot change, so it is read once per CA per batch.
    scratch: dict[Any, Any] = conn.info.get(BATCH_SCRATCH, {})
    status = scratch.get(("ca_status", ca_identifier))
    if status is None:
        status = repo.ca_status(conn, ca_identifier)
        scratch[("ca_status", ca_identifier)] = status
    if status != "ISSUE":
        raise FailedPrecondition(f"the issuing CA is {status}, not ISSUE",
                                 reason="IncorrectStatus.CA")


@functools.lru_cache(maxsize=4096)
def _rdn_der(field: str, value: str) -> bytes:
    """One RDN (a SET of one AttributeTypeAndValue), validated and encoded by build_name."""
    # build_name (asn1crypto) costs ~300 us per DN; the per-CA defaults repeat on every
    # certificate, so each attribute is encoded once and the DN concatenated (X.690 10).
    kwargs: dict[str, Any] = {field: value}
    name_der = bytes(build_name(**kwargs).dump())
    _, start, _ = read_tlv(name_der)
    return name_der[start:]


_CN_ATV_OID = bytes.fromhex("0603550403")  # id-at-commonName
_UB_COMMON_NAME = 64  # RFC 5280 Appendix A


def _cn_rdn_der(cn: str) -> bytes:
    """The commonName RDN; plain ASCII CNs are encoded here, the rest by build_name."""
    # Every certificate has its own CN, so _rdn_der's cache does not help, and build_name
    # costs ~60 us. This is the encoding build_name gives for such a value (UTF8String,
    # X.690 DER), checked against it by tests; anything else takes build_name's checks.
    if (0 < len(cn) <= _UB_COMMON_NAME and cn.isascii() and cn.isprintable()
            and cn == cn.strip()):
        value = cn.encode("ascii")
        return der_tlv(0x31, der_tlv(0x30, _CN_ATV_OID + der_tlv(0x0C, value)))
    return _rdn_der("common_name", cn)


def _leaf_subject(s: SubjectFields, ca: CaRow, cn: str | None) -> bytes:
    """The end-entity subject: given fields, else the issuing CA's (API defaults)."""
    # The order of build_name: C, ST, L, O, OU, CN, each its own RDN.
    values = (("country", s.country or ca.country_code), ("state", s.state or ca.state),
              ("locality", s.locality or ca.locality),
              ("organization", s.organization or ca.organization),
              ("organization_unit", s.organization_unit or ca.organization_unit))
    rdns = [_rdn_der(f, v) for f, v in values if v]
    if cn:
        rdns.append(_cn_rdn_der(cn))
    return der_sequence(*rdns)


# RFC 5280 4.2.1.6 GeneralName IMPLICIT context tags (primitive): rfc822Name [1],
# dNSName [2], uniformResourceIdentifier [6] (IA5String), iPAddress [7] (OCTET STRING).
_GENERAL_NAME_TAGS = {SanType.RFC822_NAME: 0x81, SanType.DNS_NAME: 0x82, SanType.URI: 0x86,
                      SanType.IP_ADDRESS: 0x87}


def _general_names_der(sans: Sequence[SubjectAltName]) -> bytes:
    """GeneralNames DER for normalised SANs (values are validated IA5 / IP text)."""
    return der_sequence(*(
        der_tlv(_GENERAL_NAME_TAGS[n.type], ipaddress.ip_address(n.value).packed
                if n.type is SanType.IP_ADDRESS else n.value.encode("ascii"))
        for n in sans))


def _cn_as_san(cn: str) -> SubjectAltName | None:
    try:
        return SubjectAltName(SanType.IP_ADDRESS, normalize_ip_address(cn))
    except InvalidArgument:
        pass
    try:
        return SubjectAltName(SanType.DNS_NAME, normalize_dns_name(cn))
    except InvalidArgument:
        return None


def _dedupe(sans: Sequence[SubjectAltName]) -> tuple[SubjectAltName, ...]:
    return tuple(dict.fromkeys(sans))


def _sig_alg_der(tbs: bytes) -> bytes:
    """The TBS signature AlgorithmIdentifier, which the outer one must equal (4.1.1.2)."""
    _, pos, _ = read_tlv(tbs)
    tag, _, nxt = read_tlv(tbs, pos)
    if tag == 0xA0:
        pos = nxt
    _, _, pos2 = read_tlv(tbs, pos)  # serialNumber
    _, _, end = read_tlv(tbs, pos2)
    return tbs[pos2:end]


def _ca_row(identifier: str, owner: str, kind: str, s: SubjectFields, subject_der: bytes,
            algorithm: CaAlgorithm, key_id: bytes, spki: bytes, serial: int,
            not_before: dt.datetime, not_after: dt.datetime, parent: str | None,
            path_len: int | None, enable_crl: bool, crl_day: int | None,
            tags: Mapping[str, str], ekus: tuple[str, ...] | None) -> CaRow:
    now = not_before
    return CaRow(
        identifier=identifier, owner=owner, kind=kind, common_name=s.common_name,
        subject_der=subject_der, algorithm=algorithm.value, key_token=KEY_TOKEN_HSM,
        key_id=key_id.hex(), public_key_info=spki, serial=serial_hex(serial),
        not_before=not_before, not_after=not_after, status="RESERVED", created_at=now,
        updated_at=now, parent_identifier=parent, organization=s.organization or None,
        organization_unit=s.organization_unit or None, country_code=s.country or None,
        state=s.state or None, locality=s.locality or None, path_len_constraint=path_len,
        extended_key_usages=ekus or None, enable_crl=enable_crl, crl_day=crl_day,
        tags=dict(tags))


def _destroy_quietly(token: Token, key_id: bytes) -> None:
    try:
        destroy_key(token, key_id)
    except HsmError:
        _log.exception("could not destroy key %s in token %s", key_id.hex(), token.label)


def _token_error(e: BaseException) -> HsmcaError:
    if isinstance(e, HsmcaError):
        return e
    if isinstance(e, TokenUnavailable):
        return Unavailable(f"the token is unavailable: {e}")
    return Internal(f"{type(e).__name__}: {e}")
