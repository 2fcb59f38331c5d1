"""Step 2 of the issuance cycle: an end-entity request validated into a :class:`LeafPlan`.

Pure validation against the issuing CA: nothing is stored, no key exists yet, the token is
not called. A plan holds everything steps 3-10 need (docs/architecture.md, "The issuance
cycle"). Subjects and subjectAltNames are encoded by service/pki/fast_der.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence

from service.errors import FailedPrecondition, InvalidArgument
from service.hints import spelling_hint
from service.pki.algorithms import CaAlgorithm, parse_algorithm
from service.pki.builder import der_sequence
from service.pki.csr import ParsedCsr, parse_csr
from service.pki.fast_der import cn_rdn_der, general_names_der, rdn_der
from service.pki.names import (
    SanType,
    SubjectAltName,
    build_name,
    common_names_of,
    may_be_ip_address,
    normalize_dns_name,
    normalize_ip_address,
    parse_client_sans,
    parse_domain_list,
    parse_extended_key_usages,
    parse_san,
)
from service.pki.profiles import KeyUsage, ProfileKind
from service.pki.serial import validate_custom_serial
from service.pki.validity import (
    Validity,
    check_within_issuer,
    parse_validity,
    resolve_validity,
)
from service.private_ca.registry import (
    KEY_TOKEN_HSM,
    KEY_TOKEN_SOFTWARE,
    CaState,
    KeyPlacement,
    Tokens,
)
from service.private_ca.requests import (
    ApiPassthrough,
    CreateClientCertificate,
    CreateCustomCertificate,
    CreateServerCertificate,
    IssueCommon,
    SubjectFields,
    SystemKey,
    ValidityPeriod,
)
from service.storage.repo import CaRow
from service.storage.schema import CertificateKind, ProtectionLevel

__all__ = ["LeafPlan", "LeafRequest", "Planner", "leaf_subject_der"]

#: The end-entity requests of the API (one per issuing operation).
LeafRequest = CreateServerCertificate | CreateClientCertificate | CreateCustomCertificate


@dataclasses.dataclass(frozen=True)
class LeafPlan:
    """A validated end-entity request: everything step 3 onwards needs (step 2 output)."""

    kind: CertificateKind  # SERVER | CLIENT | CUSTOM
    profile: ProfileKind
    subject_der: bytes
    common_name: str | None
    public_key_info: bytes | None  # None: a system key is generated at step 2b
    key_algorithm: CaAlgorithm | None  # for system keys
    key_placement: KeyPlacement | None  # for system keys
    sans: tuple[SubjectAltName, ...]
    validity: Validity
    key_usage: KeyUsage | None
    extended_key_usages: tuple[str, ...]
    criticals: tuple[str, ...]
    custom_serial: int | None
    common: IssueCommon
    custom_identifier: str | None = None

    @property
    def asynchronous(self) -> bool:
        """immediately = 0 (or unset, the API default): issued later by the job thread."""
        return self.common.immediately in (None, 0)

    @property
    def sans_der(self) -> bytes | None:
        """The subjectAltName extension value (GeneralNames), or None without SANs."""
        return general_names_der(self.sans) if self.sans else None


class Planner:
    """Validates end-entity requests against their issuing CA (step 2)."""

    def __init__(self, tokens: Tokens, *, min_rsa_bits: int) -> None:
        if min_rsa_bits < 1024:
            raise ValueError(f"min_rsa_bits must be at least 1024, got {min_rsa_bits}")
        self._tokens = tokens
        self._min_rsa_bits = min_rsa_bits

    def plan(self, req: LeafRequest, state: CaState, now: dt.datetime) -> LeafPlan:
        """The request checked in full against ``state``'s CA, as a plan."""
        if isinstance(req, CreateServerCertificate):
            return self._server(req, state, now)
        if isinstance(req, CreateClientCertificate):
            return self._client(req, state, now)
        return self._custom(req, state, now)

    def _server(self, req: CreateServerCertificate, state: CaState,
                now: dt.datetime) -> LeafPlan:
        """CreateServerCertificateWithCsr / CreateServerCertificate."""
        csr, cn = self._csr_and_cn(req.csr, req.subject, state)
        sans = list(parse_domain_list(req.domain))
        if csr is not None:
            sans += [s for s in csr.requested_sans
                     if s.type in (SanType.DNS_NAME, SanType.IP_ADDRESS)]
        if cn is not None:
            # CA/B BR 7.1.4.3: a server certificate's CN is one of its SANs.
            cn_san = _cn_as_san(cn)
            if cn_san is not None:
                sans.insert(0, cn_san)
        return self._simple(CertificateKind.SERVER, ProfileKind.SERVER, req, csr, cn,
                            lambda: sans, state, now)

    def _client(self, req: CreateClientCertificate, state: CaState,
                now: dt.datetime) -> LeafPlan:
        """CreateClientCertificateWithCsr / CreateClientCertificate."""
        csr, cn = self._csr_and_cn(req.csr, req.subject, state)
        return self._simple(CertificateKind.CLIENT, ProfileKind.CLIENT, req, csr, cn,
                            lambda: parse_client_sans(req.san_type, req.san_value), state, now)

    def _csr_and_cn(self, csr_text: str | None, subject: SubjectFields,
                    state: CaState) -> tuple[ParsedCsr | None, str | None]:
        """The parsed CSR (None: a system key) and the CN, the CSR's winning."""
        csr = self._parse_csr(csr_text, state) if csr_text is not None else None
        # The CSR's CN wins over common_name (API: "determined by the information in the Csr").
        cn = (csr.common_name if csr is not None and csr.common_name else
              subject.common_name) or None
        return csr, cn

    def _simple(self, kind: CertificateKind, profile: ProfileKind,
                req: CreateServerCertificate | CreateClientCertificate, csr: ParsedCsr | None,
                cn: str | None, sans: Callable[[], Sequence[SubjectAltName]], state: CaState,
                now: dt.datetime) -> LeafPlan:
        """The plan of a server or client certificate (fixed profile, API subject defaults)."""
        ca = state.ca
        return LeafPlan(
            kind=kind, profile=profile, subject_der=leaf_subject_der(req.subject, ca, cn),
            common_name=cn, public_key_info=csr.public_key_info if csr else None,
            key_algorithm=None if csr else self._system_key_algorithm(req.algorithm, state),
            key_placement=None if csr else self._key_placement(req.key),
            sans=_dedupe(sans()), validity=_validity(req.validity, ca, now), key_usage=None,
            extended_key_usages=(), criticals=(), custom_serial=None, common=req.common)

    def _custom(self, req: CreateCustomCertificate, state: CaState,
                now: dt.datetime) -> LeafPlan:
        """CreateCustomCertificate: subject, extensions, criticals and serial as passed."""
        ca = state.ca
        csr = self._parse_csr(req.csr, state)
        ap: ApiPassthrough = req.api_passthrough
        if ap.subject is not None:
            # API docs: "If api_passthrough.subject is set, the CSR's subject is ignored."
            f = ap.subject.fields
            name = build_name(f.common_name, f.organization, f.organization_unit, f.country,
                              f.state, f.locality, ap.subject.custom_attributes)
            subject_der = bytes(name.dump())
            # The CN of the subject built, whether from common_name or a custom attribute
            # 2.5.4.3 (build_name allows one): authorization checks what is signed.
            cn = next(iter(common_names_of(name)), None)
        else:
            subject_der, cn = csr.subject_der, csr.common_name
        if ap.subject_alternative_names:
            sans = [parse_san(t, v) for t, v in ap.subject_alternative_names]
        else:
            sans = list(csr.requested_sans)
        validity = parse_validity(req.validity, now)
        check_within_issuer(validity, ca.not_before, ca.not_after)
        ekus = tuple(parse_extended_key_usages(ap.extended_key_usages))
        serial = validate_custom_serial(ap.serial_number) if ap.serial_number else None
        return LeafPlan(
            kind=CertificateKind.CUSTOM, profile=ProfileKind.CUSTOM, subject_der=subject_der,
            common_name=cn, public_key_info=csr.public_key_info, key_algorithm=None,
            key_placement=None, sans=_dedupe(sans), validity=validity,
            key_usage=ap.key_usage, extended_key_usages=ekus, criticals=ap.criticals,
            custom_serial=serial, common=req.common,
            custom_identifier=req.custom_identifier or None)

    def _parse_csr(self, text: str | None, state: CaState) -> ParsedCsr:
        if not text:
            raise InvalidArgument("csr is required", reason="InvalidParameter.Csr")
        csr = parse_csr(text, min_rsa_bits=self._min_rsa_bits)
        if csr.key_family != state.algorithm.family:
            raise InvalidArgument(
                f"the CSR's key is {csr.key_family}, but the issuing CA is "
                f"{state.algorithm.value}; certificates use the CA's key family",
                reason="InvalidParameter.Csr")
        return csr

    def key_algorithm(self, name: str) -> CaAlgorithm:
        """The algorithm of a key the service creates (CA, system key): RSA >= min_rsa_bits."""
        algorithm = parse_algorithm(name)
        if algorithm.family == "RSA" and algorithm.key_bits < self._min_rsa_bits:
            raise InvalidArgument(
                f"{algorithm.value} is below the minimum RSA key size of {self._min_rsa_bits} "
                "bits", reason="InvalidParameter.Algorithm")
        return algorithm

    def _system_key_algorithm(self, name: str, state: CaState) -> CaAlgorithm:
        algorithm = self.key_algorithm(name) if name else state.algorithm
        if algorithm.family != state.algorithm.family:
            raise InvalidArgument(
                f"algorithm {algorithm.value} is not in the issuing CA's family "
                f"({state.algorithm.value}); key lengths may differ, families may not",
                reason="InvalidParameter.Algorithm")
        if algorithm.family == "SM2":
            raise FailedPrecondition("SM2 keys cannot be generated in this token",
                                     reason="UnsupportedOperation.Algorithm")
        return algorithm

    def _key_placement(self, key: SystemKey) -> KeyPlacement:
        try:
            level = ProtectionLevel(key.protection_level or ProtectionLevel.SOFTWARE)
        except ValueError:
            raise InvalidArgument("protection_level must be SOFTWARE or HSM"
                                  + spelling_hint(key.protection_level, tuple(ProtectionLevel)),
                                  reason="InvalidParameter.ProtectionLevel") from None
        if level is ProtectionLevel.HSM:
            if key.exportable_private_key:
                raise InvalidArgument("HSM keys are never exportable",
                                      reason="InvalidParameter.ExportablePrivateKey")
            return KeyPlacement(self._tokens.hsm, KEY_TOKEN_HSM, exportable=False)
        if key.exportable_private_key is False:
            # Invariant 1 (docs/architecture.md): non-exportable means made in a token
            # that refuses to export it.
            return KeyPlacement(self._tokens.hsm, KEY_TOKEN_HSM, exportable=False)
        return KeyPlacement(self._tokens.software, KEY_TOKEN_SOFTWARE, exportable=True)


def _validity(period: ValidityPeriod, ca: CaRow, now: dt.datetime) -> Validity:
    validity = resolve_validity(years=period.years, months=period.months, days=period.days,
                                before_time=period.before_time,
                                after_time=period.after_time, now=now)
    check_within_issuer(validity, ca.not_before, ca.not_after)
    return validity


# --- subject encoding ----------------------------------------------------------------------


def leaf_subject_der(s: SubjectFields, ca: CaRow, cn: str | None) -> bytes:
    """The end-entity subject: given fields, else the issuing CA's (API defaults)."""
    # The order of build_name: C, ST, L, O, OU, CN, each its own RDN.
    values = (("country", s.country or ca.country_code), ("state", s.state or ca.state),
              ("locality", s.locality or ca.locality),
              ("organization", s.organization or ca.organization),
              ("organization_unit", s.organization_unit or ca.organization_unit))
    rdns = [rdn_der(f, v) for f, v in values if v]
    if cn:
        rdns.append(cn_rdn_der(cn))
    return der_sequence(*rdns)


def _cn_as_san(cn: str) -> SubjectAltName | None:
    # The usual CN is a DNS name: test for an address without raising a refusal for it.
    if may_be_ip_address(cn):
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
