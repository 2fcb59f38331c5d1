"""CRL building from pre-encoded pieces (RFC 5280 section 5)."""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from service.errors import FailedPrecondition, Internal, InvalidArgument
from service.pki.builder import (
    Issuer,
    assemble_signed,
    der_explicit,
    der_extension,
    der_integer,
    der_oid,
    der_sequence,
    der_time,
    der_tlv,
)
from service.pki.serial import MAX_SERIAL_OCTETS, serial_octets

OID_CRL_NUMBER = der_oid("2.5.29.20")
OID_REASON_CODE = der_oid("2.5.29.21")
_V2 = b"\x02\x01\x01"  # Version v2 (RFC 5280 5.1.2.1: v2 when extensions are present)


class ReasonCode(enum.IntEnum):
    """CRLReason (RFC 5280 5.3.1); 7 is not used."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10


def parse_reason_code(value: int) -> ReasonCode:
    """Validate an API revocation reason code (RFC 5280 5.3.1)."""
    try:
        reason = ReasonCode(value)
    except ValueError as e:
        raise InvalidArgument(f"unknown revocation reason code {value} (RFC 5280 5.3.1: "
                              "0-10 except 7)", reason="InvalidParameter.ReasonCode") from e
    if reason is ReasonCode.REMOVE_FROM_CRL:
        # RFC 5280 5.3.1: removeFromCRL only appears in delta CRLs, which we do not issue.
        raise InvalidArgument("reason code 8 (removeFromCRL) is only for delta CRLs",
                              reason="InvalidParameter.ReasonCode")
    return reason


@dataclass(frozen=True)
class RevokedCertificate:
    """One revokedCertificates entry."""

    serial: int
    revocation_date: datetime
    reason: ReasonCode = ReasonCode.UNSPECIFIED


def _entry(r: RevokedCertificate) -> bytes:
    if r.serial <= 0 or serial_octets(r.serial) > MAX_SERIAL_OCTETS:
        raise Internal(f"revoked serial {r.serial} out of range")
    if r.reason is ReasonCode.REMOVE_FROM_CRL:
        raise Internal("removeFromCRL on a complete CRL")
    parts = [der_integer(r.serial), der_time(r.revocation_date)]
    if r.reason is not ReasonCode.UNSPECIFIED:
        # RFC 5280 5.3.1: the reasonCode extension SHOULD be absent instead of unspecified.
        reason_value = der_tlv(0x0A, bytes((int(r.reason),)))  # ENUMERATED
        parts.append(der_sequence(der_extension(OID_REASON_CODE, False, reason_value)))
    return der_sequence(*parts)


# Above this many new entries, CrlEntries.add sorts everything again instead of inserting
# each one in place (each insertion moves the list's tail: fine for a few, not for 20k).
_BULK = 64


class CrlEntries:
    """The revokedCertificates of a CRL, kept encoded and sorted by serial.

    A CA's CRL only grows (a revocation is final), so a publisher keeps one of these per CA
    and adds each revocation once: re-issuing the CRL then encodes only the new entries and
    joins the bytes of the others, instead of encoding every entry again (20,000 entries
    took ~100 ms of Python per re-issue that way).
    """

    def __init__(self, revoked: Iterable[RevokedCertificate] = ()) -> None:
        self._serials: list[int] = []
        self._encoded: list[bytes] = []
        self._latest: datetime | None = None
        self.add(revoked)

    def __len__(self) -> int:
        return len(self._serials)

    @property
    def latest_revocation_date(self) -> datetime | None:
        """The latest revocationDate listed (a CRL's thisUpdate is not before it)."""
        return self._latest

    def add(self, revoked: Iterable[RevokedCertificate]) -> None:
        """Add entries; a serial listed already (or twice) is an Internal error."""
        new = [(r.serial, _entry(r), r.revocation_date) for r in revoked]
        if not new:
            return
        latest = max(when for _, _, when in new)
        if len(new) > _BULK:
            pairs = sorted([*zip(self._serials, self._encoded, strict=True),
                            *((serial, der) for serial, der, _ in new)],
                           key=lambda pair: pair[0])
            serials = [serial for serial, _ in pairs]
            for prev, cur in zip(serials, serials[1:], strict=False):
                if prev == cur:
                    raise Internal(f"serial {cur:x} listed twice on the CRL")
            self._serials, self._encoded = serials, [der for _, der in pairs]
        else:
            seen: set[int] = set()
            for serial, _, _ in new:  # every check before the first insertion
                at = bisect.bisect_left(self._serials, serial)
                if serial in seen or (at < len(self._serials) and self._serials[at] == serial):
                    raise Internal(f"serial {serial:x} listed twice on the CRL")
                seen.add(serial)
            for serial, der, _ in new:
                at = bisect.bisect_left(self._serials, serial)
                self._serials.insert(at, serial)
                self._encoded.insert(at, der)
        if self._latest is None or latest > self._latest:
            self._latest = latest

    def revoked_certificates_der(self) -> bytes:
        """The revokedCertificates SEQUENCE; empty bytes when there is no entry (RFC 5280
        5.1.2.6: the field is then absent, not empty)."""
        return der_sequence(*self._encoded) if self._encoded else b""


def build_tbs_crl(issuer: Issuer, crl_number: int, this_update: datetime,
                  next_update: datetime,
                  revoked: Iterable[RevokedCertificate | tuple[int, datetime, int]]
                  | CrlEntries) -> bytes:
    """TBSCertList DER: v2, AKI and cRLNumber, entries sorted by serial (RFC 5280 5.1)."""
    if not issuer.can_sign_crl:
        raise FailedPrecondition("the CA certificate lacks cRLSign",
                                 reason="IncorrectStatus.CrlDisabled")
    # RFC 5280 5.2.3: cRLNumber is a non-negative INTEGER of at most 20 octets.
    if crl_number < 0 or serial_octets(crl_number) > MAX_SERIAL_OCTETS:
        raise Internal(f"CRL number {crl_number} out of range")
    if next_update <= this_update:
        raise Internal("nextUpdate must be after thisUpdate")
    entries = revoked if isinstance(revoked, CrlEntries) else CrlEntries(
        r if isinstance(r, RevokedCertificate)
        else RevokedCertificate(r[0], r[1], parse_reason_code(r[2])) for r in revoked)
    parts = [_V2, issuer.signature_algorithm_der, issuer.subject_der, der_time(this_update),
             der_time(next_update), entries.revoked_certificates_der()]
    extensions = der_sequence(
        issuer.aki_extension_der,  # RFC 5280 5.2.1: MUST include AKI
        der_extension(OID_CRL_NUMBER, False, der_integer(crl_number)),  # 5.2.3: non-critical
    )
    parts.append(der_explicit(0, extensions))
    return der_sequence(*parts)


def assemble_crl(tbs_crl: bytes, signature_algorithm_der: bytes, signature: bytes) -> bytes:
    """CertificateList DER (RFC 5280 5.1)."""
    return assemble_signed(tbs_crl, signature_algorithm_der, signature)
