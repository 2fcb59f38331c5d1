"""Timing printout (not an assertion): build_tbs fast path vs the asn1crypto reference, lint."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pkib_reference as ref
import pytest
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives.asymmetric import ec
from pkib_support import NOW, Hierarchy, ec_signer, name, rsa_signer

from service.pki.builder import IssuanceRequest, build_tbs
from service.pki.lint import lint_tbs
from service.pki.profiles import ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm


def _per_call_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


@pytest.mark.parametrize("leaf_kind", ["rsa", "ec"])
def test_build_tbs_timing(hierarchy: Hierarchy, leaf_kind: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    leaf = rsa_signer() if leaf_kind == "rsa" else ec_signer(ec.SECP256R1(),
                                                               SignatureAlgorithm.SHA256_ECDSA)
    subject = name("www.example.test").dump()
    sans = ax509.GeneralNames([ax509.GeneralName("dns_name", "www.example.test"),
                               ax509.GeneralName("ip_address", "192.0.2.1")]).dump()
    req = IssuanceRequest(
        profile=ProfileKind.SERVER, subject=subject, public_key_info=leaf.public_key_info,
        serial=new_serial(), not_before=NOW, not_after=NOW + timedelta(days=90),
        subject_alt_names=sans, enable_crl=True)
    issuer = hierarchy.sub_issuer

    def fast() -> bytes:
        return build_tbs(issuer, replace(req, serial=new_serial()))

    ku = {"digital_signature"} | ({"key_encipherment"} if leaf_kind == "rsa" else set())

    def slow() -> bytes:
        return ref.reference_tbs(
            alg=issuer.algorithm, serial=new_serial(),
            issuer=ax509.Name.load(issuer.subject_der), not_before=req.not_before,
            not_after=req.not_after, subject=ax509.Name.load(subject),
            spki_der=leaf.public_key_info,
            extensions=ref.leaf_extensions(
                spki_der=leaf.public_key_info, issuer_ski=issuer.key_identifier, key_usage=ku,
                ekus=["server_auth"], sans=ax509.GeneralNames.load(sans),
                crl_url=issuer.crl_url))

    tbs = fast()
    fast_us = _per_call_us(fast, 5000)
    slow_us = _per_call_us(slow, 200)
    lint_us = _per_call_us(lambda: lint_tbs(tbs, issuer), 500)
    with capsys.disabled():
        print(f"\n[timing] CA={hierarchy.label} leaf={leaf_kind}: build_tbs {fast_us:.1f} us "
              f"(incl. new_serial), asn1crypto reference {slow_us:.0f} us, "
              f"lint_tbs {lint_us:.0f} us")
