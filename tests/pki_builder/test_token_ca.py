"""A CA whose keys live in each token implementation (SoftHSM, opencryptoki) issues a chain
that verifies: the builder's own verify-after-sign, OpenSSL, and pkilint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asn1crypto import x509 as ax509
from pki_checkers import errors, openssl_verify, pkilint_rfc5280
from pkib_support import NOW, build_hierarchy, name, rsa_signer, sign_and_check
from token_kinds import require_keygen

from hsm.keys import KeySpec, destroy_key, generate_key_pair
from service.pki.builder import IssuanceRequest, build_tbs
from service.pki.profiles import ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm
from service.token_signer import TokenSigner


@pytest.fixture
def ca_keys(any_token: Any) -> Iterator[list[TokenSigner]]:
    """Root and sub CA keys generated non-exportable in the token, as the service makes them."""
    require_keygen(any_token, KeySpec.RSA_2048)
    signers: list[TokenSigner] = []
    try:
        for _ in range(2):
            key_id = os.urandom(16)
            key = generate_key_pair(
                any_token, KeySpec.RSA_2048, key_id=key_id, label=key_id.hex(), exportable=False
            )
            signers.append(
                TokenSigner(any_token, key_id, SignatureAlgorithm.SHA256_RSA, key.public_key_info)
            )
        yield signers
    finally:
        for signer in signers:
            destroy_key(any_token, signer.key_id)


def test_ca_on_the_token_issues_a_certificate_that_verifies(
    any_token: Any, ca_keys: list[TokenSigner]
) -> None:
    root, sub = ca_keys
    # build_hierarchy signs the root and the sub CA certificate with the root's token key
    # and verifies each signature against the issuer's public key (invariant 3).
    h = build_hierarchy(f"token-{any_token.label}", root, sub)  # type: ignore[arg-type]
    leaf = rsa_signer()
    request = IssuanceRequest(
        profile=ProfileKind.SERVER,
        subject=name("www.example.test"),
        public_key_info=leaf.public_key_info,
        serial=new_serial(),
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        subject_alt_names=ax509.GeneralNames(
            [ax509.GeneralName("dns_name", "www.example.test")]
        ),
        enable_crl=True,
    )
    cert = sign_and_check(h.sub_issuer, sub, build_tbs(h.sub_issuer, request))  # type: ignore[arg-type]
    done = openssl_verify(h.root_der, h.sub_der, cert, "sslserver")
    assert done.returncode == 0, done.stdout + done.stderr
    for der in (h.root_der, h.sub_der, cert):
        assert errors(pkilint_rfc5280(der)) == []
