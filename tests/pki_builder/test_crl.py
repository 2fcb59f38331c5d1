"""CRLs (RFC 5280 section 5): reference bytes, pkilint, OpenSSL signature and revocation checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from random import Random

import pkib_reference as ref
import pytest
from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from pki_checkers import crl_pem, errors, openssl, openssl_verify, pem, pkilint_crl
from pkib_support import NOW, Hierarchy, ec_signer, name, sign_and_check

from service.errors import Internal, InvalidArgument
from service.pki.builder import SIGNATURE_ALGORITHM_IDENTIFIERS, IssuanceRequest, build_tbs
from service.pki.crl import (
    CrlEntries,
    ReasonCode,
    RevokedCertificate,
    assemble_crl,
    build_tbs_crl,
    parse_reason_code,
)
from service.pki.profiles import ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm
from service.pki.verify import verify_crl

_LEAF = ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA)


def _server(h: Hierarchy, cn: str) -> bytes:
    req = IssuanceRequest(
        profile=ProfileKind.SERVER, subject=name(cn), public_key_info=_LEAF.public_key_info,
        serial=new_serial(), not_before=NOW, not_after=NOW + timedelta(days=30),
        subject_alt_names=ax509.GeneralNames([ax509.GeneralName("dns_name", cn)]),
        enable_crl=True)
    return sign_and_check(h.sub_issuer, h.sub_signer, build_tbs(h.sub_issuer, req))


def _reference_tbs(h: Hierarchy, crl_number: int, this_update: datetime,
                   next_update: datetime, entries: list[tuple[int, datetime, int]]) -> bytes:
    """The sub CA's TBSCertList built from asn1crypto objects (the reference)."""
    rev = []
    for serial, when, reason in sorted(entries):
        entry = {"user_certificate": serial, "revocation_date": ref.time(when)}
        if reason:
            entry["crl_entry_extensions"] = [
                {"extn_id": "crl_reason", "critical": False,
                 "extn_value": acrl.CRLReason(reason)}]
        rev.append(entry)
    return acrl.TbsCertList({
        "version": "v2",
        "signature": ref.signature_algorithm(h.sub_signer.algorithm),
        "issuer": ax509.Name.load(h.sub_issuer.subject_der),
        "this_update": ref.time(this_update), "next_update": ref.time(next_update),
        # RFC 5280 5.1.2.6: absent when nothing is revoked.
        **({"revoked_certificates": rev} if rev else {}),
        "crl_extensions": [
            {"extn_id": "authority_key_identifier", "critical": False,
             "extn_value": {"key_identifier": h.sub_issuer.key_identifier}},
            {"extn_id": "crl_number", "critical": False, "extn_value": crl_number}],
    }).dump(force=True)


def _sign_crl(h: Hierarchy, tbs: bytes) -> bytes:
    crl = assemble_crl(tbs, SIGNATURE_ALGORITHM_IDENTIFIERS[h.sub_signer.algorithm],
                       h.sub_signer.sign(tbs))
    verify_crl(crl, h.sub_issuer.public_key_info)
    return crl


def test_crl_revokes(hierarchy: Hierarchy) -> None:
    revoked_cert = _server(hierarchy, "revoked.example.test")
    good_cert = _server(hierarchy, "good.example.test")
    revoked_serial = cx509.load_der_x509_certificate(revoked_cert).serial_number
    other = new_serial()
    entries = [(revoked_serial, NOW, 1), (other, NOW, 0), (12345, NOW, 4)]
    tbs = build_tbs_crl(hierarchy.sub_issuer, 7, NOW, NOW + timedelta(days=7), entries)
    crl_der = _sign_crl(hierarchy, tbs)

    assert tbs == _reference_tbs(hierarchy, 7, NOW, NOW + timedelta(days=7), entries)

    crl = cx509.load_der_x509_crl(crl_der)
    assert crl.is_signature_valid(
        cx509.load_der_x509_certificate(hierarchy.sub_der).public_key())  # type: ignore[arg-type]
    assert [r.serial_number for r in crl] == sorted(s for s, _, _ in entries)
    assert len(crl.get_revoked_certificate_by_serial_number(other).extensions) == 0

    findings = pkilint_crl(crl_der)
    assert errors(findings) == [], findings

    r = openssl(["crl", "-in", "{crl}", "-CAfile", "{ca}", "-noout"],
                {"crl": crl_pem(crl_der), "ca": pem(hierarchy.sub_der)})
    assert r.returncode == 0 and "verify OK" in (r.stdout + r.stderr), r.stdout + r.stderr

    r = openssl_verify(hierarchy.root_der, hierarchy.sub_der, revoked_cert, "sslserver",
                       crl_der=crl_der)
    assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr
    r = openssl_verify(hierarchy.root_der, hierarchy.sub_der, good_cert, "sslserver",
                       crl_der=crl_der)
    assert r.returncode == 0, r.stdout + r.stderr


def test_empty_crl(ec_hierarchy: Hierarchy) -> None:
    tbs = build_tbs_crl(ec_hierarchy.sub_issuer, 1, NOW, NOW + timedelta(days=1), [])
    crl_der = _sign_crl(ec_hierarchy, tbs)
    assert errors(pkilint_crl(crl_der)) == []
    parsed = acrl.CertificateList.load(crl_der)
    assert len(parsed["tbs_cert_list"]["revoked_certificates"]) == 0


def test_root_crl(ec_hierarchy: Hierarchy) -> None:
    """A root's CRL (the sub CA revoked) verifies against the root key."""
    sub_serial = cx509.load_der_x509_certificate(ec_hierarchy.sub_der).serial_number
    tbs = build_tbs_crl(ec_hierarchy.root_issuer, 1, NOW, NOW + timedelta(days=30),
                        [RevokedCertificate(sub_serial, NOW, ReasonCode.CA_COMPROMISE)])
    sig = ec_hierarchy.root_signer.sign(tbs)
    crl_der = assemble_crl(tbs, ec_hierarchy.root_issuer.signature_algorithm_der, sig)
    verify_crl(crl_der, ec_hierarchy.root_issuer.public_key_info)
    assert errors(pkilint_crl(crl_der)) == []
    with pytest.raises(Internal):
        verify_crl(crl_der, ec_hierarchy.sub_issuer.public_key_info)


@pytest.mark.parametrize("code", [-1, 7, 8, 11])
def test_bad_reason_codes(code: int) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_reason_code(code)
    assert e.value.reason == "InvalidParameter.ReasonCode"


def test_duplicate_serial_on_crl(ec_hierarchy: Hierarchy) -> None:
    with pytest.raises(Internal):
        build_tbs_crl(ec_hierarchy.sub_issuer, 2, NOW, NOW + timedelta(days=1),
                      [(5, NOW, 1), (5, NOW, 0)])


_REASONS = [r for r in ReasonCode if r is not ReasonCode.REMOVE_FROM_CRL]
_ENTRY = st.tuples(
    st.integers(1, (1 << 159) - 1),
    # Both sides of RFC 5280's switch from UTCTime to GeneralizedTime in 2050.
    st.datetimes(datetime(1990, 1, 1), datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)),
    st.sampled_from([int(r) for r in _REASONS]))


@given(entries=st.lists(_ENTRY, max_size=300, unique_by=lambda e: e[0]),
       cuts=st.lists(st.integers(0, 300), max_size=6), order=st.randoms())
def test_crl_entries_added_in_batches_encode_as_the_reference(
        ec_hierarchy: Hierarchy, entries: list[tuple[int, datetime, int]], cuts: list[int],
        order: Random) -> None:
    """The incremental path (a publisher adds each revocation once) against asn1crypto."""
    shuffled = list(entries)
    order.shuffle(shuffled)
    bounds = sorted({0, len(shuffled), *(c for c in cuts if c < len(shuffled))})
    incremental = CrlEntries()
    for start, end in zip(bounds, bounds[1:], strict=False):  # small and bulk batches
        incremental.add(RevokedCertificate(s, w, ReasonCode(r))
                        for s, w, r in shuffled[start:end])
    assert len(incremental) == len(entries)
    assert incremental.latest_revocation_date == max((w for _, w, _ in entries), default=None)
    this_update = datetime(2100, 1, 1, tzinfo=UTC)
    tbs = build_tbs_crl(ec_hierarchy.sub_issuer, 9, this_update,
                        this_update + timedelta(days=1), incremental)
    assert tbs == _reference_tbs(ec_hierarchy, 9, this_update,
                                 this_update + timedelta(days=1), entries)
    if entries:  # a serial already listed is refused, and leaves the entries as they were
        serial, when, _ = entries[0]
        with pytest.raises(Internal):  # a new serial, then a listed one
            incremental.add([RevokedCertificate(1 << 159, when), RevokedCertificate(serial, when)])
        with pytest.raises(Internal):
            incremental.add([RevokedCertificate(serial, when)] * 100)
        assert build_tbs_crl(ec_hierarchy.sub_issuer, 9, this_update,
                             this_update + timedelta(days=1), incremental) == tbs
