"""Export under wrapping and sealing, against real tokens (the conformance command has its
own tests under tests/conformance)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hsm_helpers import new_key_id, verify
from pkcs11 import Attribute

from hsm.errors import KeyNotExportable, MechanismUnavailable
from hsm.export import (
    RSAES_OAEP_SHA1,
    InvalidRecipientKey,
    SealedDataInvalid,
    TokenRefusedExport,
    export_private_key,
    seal,
    unseal,
    unwrap_export,
)
from hsm.keys import KeySpec, destroy_key, generate_key_pair
from hsm.signing import SignMechanism, sign

REPO = Path(__file__).resolve().parents[2]
MODULE = os.environ.get("HSMCA_TEST_MODULE", "/usr/lib/softhsm/libsofthsm2.so")


@pytest.fixture(scope="module")
def recipient() -> rsa.RSAPrivateKey:
    """The client's RSA key the export is encrypted to."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _spki(private: rsa.RSAPrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def made(hsm_token: Any) -> Iterator[list[bytes]]:
    """Key ids to destroy after the test."""
    ids: list[bytes] = []
    yield ids
    for key_id in ids:
        destroy_key(hsm_token, key_id)


def _session_objects(token: Any) -> int:
    return token.run(lambda s: len(list(s.get_objects({Attribute.TOKEN: False}))))


@pytest.mark.parametrize(
    ("spec", "mechanism"),
    [
        (KeySpec.RSA_2048, SignMechanism.RSA_PKCS1_SHA256),
        (KeySpec.EC_P256, SignMechanism.ECDSA_SHA256),
        (KeySpec.EC_P384, SignMechanism.ECDSA_SHA384),
    ],
    ids=lambda v: v.value,
)
def test_export_round_trip(
    hsm_token: Any,
    made: list[bytes],
    recipient: rsa.RSAPrivateKey,
    spec: KeySpec,
    mechanism: SignMechanism,
) -> None:
    key_id = new_key_id()
    made.append(key_id)
    key = generate_key_pair(hsm_token, spec, key_id=key_id, label=key_id.hex(), exportable=True)
    assert key.attributes.extractable and key.attributes.sensitive
    before = _session_objects(hsm_token)

    export = export_private_key(hsm_token, key_id, _spki(recipient))

    assert _session_objects(hsm_token) == before  # the AES and recipient keys are gone
    assert export.key_spec is spec
    assert export.wrapped_key_mechanism == "AES_KEY_WRAP_PAD"
    # SoftHSM 2.6 offers CKM_RSA_PKCS_OAEP with SHA-1 only; a token with SHA-256 would use it.
    assert export.aes_key_encryption == RSAES_OAEP_SHA1
    pem = recipient.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for recipient_key in (recipient, pem):
        pkcs8 = unwrap_export(export, recipient_key)
        private = serialization.load_der_private_key(pkcs8, password=None)
        assert isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        # The exported key is the token's key: a signature made in the token verifies with it,
        # and the public halves match.
        signature = sign(hsm_token, key_id, mechanism, b"exported")
        spki = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        verify(spki, mechanism, b"exported", signature)
        assert spki == key.public_key_info


def test_non_exportable_key_export_is_refused_by_the_token(
    hsm_token: Any, made: list[bytes], recipient: rsa.RSAPrivateKey
) -> None:
    key_id = new_key_id()
    made.append(key_id)
    generate_key_pair(
        hsm_token, KeySpec.EC_P256, key_id=key_id, label=key_id.hex(), exportable=False
    )
    before = _session_objects(hsm_token)
    with pytest.raises(KeyNotExportable, match="CKR_KEY_UNEXTRACTABLE") as info:
        export_private_key(hsm_token, key_id, _spki(recipient))
    assert isinstance(info.value, TokenRefusedExport)
    assert info.value.return_code == "CKR_KEY_UNEXTRACTABLE"
    assert _session_objects(hsm_token) == before


def test_export_rejects_a_weak_or_non_rsa_recipient(hsm_token: Any) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidRecipientKey, match="1024 bits"):
        export_private_key(hsm_token, b"unused", _spki(small))
    ec_key = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InvalidRecipientKey, match="must be RSA"):
        export_private_key(hsm_token, b"unused", ec_key)


def test_seal_round_trip_and_tamper(software_token: Any) -> None:
    secret = os.urandom(32)
    blob = seal(software_token, secret, context=b"sm2-key-1")
    assert secret not in blob
    assert unseal(software_token, blob, context=b"sm2-key-1") == secret
    assert seal(software_token, secret) != seal(software_token, secret)  # fresh IV each time
    for i in (0, 5, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(SealedDataInvalid):
            unseal(software_token, bytes(tampered), context=b"sm2-key-1")
    with pytest.raises(SealedDataInvalid):
        unseal(software_token, blob, context=b"sm2-key-2")  # bound to its context
    with pytest.raises(SealedDataInvalid):
        unseal(software_token, blob[:20])
    assert unseal(software_token, blob, context=b"sm2-key-1") == secret  # session still fine


def test_sealing_key_is_non_extractable(software_token: Any) -> None:
    seal(software_token, b"x")

    def attrs(session: Any) -> list[tuple[bool, bool, bool, bool]]:
        return [
            (
                k[Attribute.TOKEN],
                k[Attribute.SENSITIVE],
                k[Attribute.EXTRACTABLE],
                k[Attribute.WRAP],
            )
            for k in session.get_objects({Attribute.LABEL: "hsmca-kek"})
        ]

    assert software_token.run(attrs) == [(True, True, False, False)]


def test_export_needs_aes_key_wrap_pad_and_says_so(
    ock_token: Any, recipient: rsa.RSAPrivateKey
) -> None:
    # opencryptoki's software token has no CKM_AES_KEY_WRAP_PAD: a clear error, no
    # python-pkcs11 exception, and nothing left behind in the token.
    key_id = new_key_id()
    try:
        generate_key_pair(
            ock_token, KeySpec.RSA_2048, key_id=key_id, label=key_id.hex(), exportable=True
        )
        before = _session_objects(ock_token)
        with pytest.raises(MechanismUnavailable, match="CKM_AES_KEY_WRAP_PAD"):
            export_private_key(ock_token, key_id, _spki(recipient))
        assert _session_objects(ock_token) == before
    finally:
        destroy_key(ock_token, key_id)
