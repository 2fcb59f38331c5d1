"""Every SignMechanism verifies with cryptography; OAEP decryption in the token.

Each test runs on SoftHSM and on opencryptoki (``any_token``); a mechanism whose key type
the token cannot generate is skipped with the token's reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hsm_helpers import new_key_id, verify, verify_digest
from token_kinds import require_keygen

from hsm.capabilities import keygen_skip_reason
from hsm.keys import GeneratedKey, KeySpec, KeyUsage, destroy_key, generate_key_pair
from hsm.signing import DecryptionError, OaepHash, SignMechanism, decrypt, sign, sign_digest

MESSAGE = b"tbsCertificate stand-in \x00\x01\x02"

# The key each mechanism signs with.
CASES = {
    SignMechanism.RSA_PKCS1_SHA256: KeySpec.RSA_2048,
    SignMechanism.RSA_PKCS1_SHA384: KeySpec.RSA_2048,
    SignMechanism.RSA_PKCS1_SHA512: KeySpec.RSA_2048,
    SignMechanism.RSA_PSS_SHA256: KeySpec.RSA_2048,
    SignMechanism.ECDSA_SHA256: KeySpec.EC_P256,
    SignMechanism.ECDSA_SHA384: KeySpec.EC_P384,
    SignMechanism.ECDSA_SHA512: KeySpec.EC_P521,
}


@pytest.fixture(scope="module")
def keys(any_token: Any) -> Iterator[dict[KeySpec, GeneratedKey]]:
    """One non-exportable key per spec used here that the token can make (RSA: SIGN | DECRYPT)."""
    made: dict[KeySpec, GeneratedKey] = {}
    try:
        for spec in set(CASES.values()):
            if keygen_skip_reason(any_token, spec) is not None:
                continue  # the tests using it skip with the reason (_key below)
            key_id = new_key_id()
            usage = KeyUsage.SIGN | KeyUsage.DECRYPT if spec.is_rsa else KeyUsage.SIGN
            made[spec] = generate_key_pair(
                any_token, spec, key_id=key_id, label=key_id.hex(), exportable=False, usage=usage
            )
        yield made
    finally:
        for key in made.values():
            destroy_key(any_token, key.key_id)


def _key(token: Any, keys: dict[KeySpec, GeneratedKey], spec: KeySpec) -> GeneratedKey:
    require_keygen(token, spec)
    return keys[spec]


def test_every_mechanism_is_covered() -> None:
    assert set(CASES) == set(SignMechanism)


@pytest.mark.parametrize("mechanism", list(SignMechanism), ids=lambda m: m.value)
def test_sign_verifies(
    any_token: Any, keys: dict[KeySpec, GeneratedKey], mechanism: SignMechanism
) -> None:
    key = _key(any_token, keys, CASES[mechanism])
    signature = sign(any_token, key.key_id, mechanism, MESSAGE)
    verify(key.public_key_info, mechanism, MESSAGE, signature)
    if mechanism.value.startswith("ECDSA"):
        assert signature[0] == 0x30  # DER Ecdsa-Sig-Value (RFC 3279 2.2.3), not raw r||s


@pytest.mark.parametrize("mechanism", list(SignMechanism), ids=lambda m: m.value)
def test_sign_digest_verifies(
    any_token: Any, keys: dict[KeySpec, GeneratedKey], mechanism: SignMechanism
) -> None:
    key = _key(any_token, keys, CASES[mechanism])
    digest = hashlib.new(mechanism.hash_name, MESSAGE).digest()
    signature = sign_digest(any_token, key.key_id, mechanism, digest)
    verify_digest(key.public_key_info, mechanism, MESSAGE, signature)
    verify(key.public_key_info, mechanism, MESSAGE, signature)


def test_sign_digest_rejects_wrong_length(
    any_token: Any, keys: dict[KeySpec, GeneratedKey]
) -> None:
    key = _key(any_token, keys, KeySpec.EC_P256)
    with pytest.raises(ValueError, match="32-byte digest"):
        sign_digest(any_token, key.key_id, SignMechanism.ECDSA_SHA256, b"\x00" * 20)


@pytest.mark.parametrize("oaep_hash", list(OaepHash), ids=lambda h: h.value)
def test_oaep_decrypt(
    any_token: Any, keys: dict[KeySpec, GeneratedKey], oaep_hash: OaepHash
) -> None:
    key = _key(any_token, keys, KeySpec.RSA_2048)
    public = serialization.load_der_public_key(key.public_key_info)
    assert isinstance(public, rsa.RSAPublicKey)
    h = hashes.SHA1() if oaep_hash is OaepHash.SHA1 else hashes.SHA256()
    ciphertext = public.encrypt(
        b"session secret", padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    )
    assert decrypt(any_token, key.key_id, oaep_hash, ciphertext) == b"session secret"


@pytest.mark.parametrize("oaep_hash", list(OaepHash), ids=lambda h: h.value)
def test_garbage_ciphertext_is_a_decryption_error(
    any_token: Any, keys: dict[KeySpec, GeneratedKey], oaep_hash: OaepHash
) -> None:
    key = _key(any_token, keys, KeySpec.RSA_2048)
    with pytest.raises(DecryptionError):
        decrypt(any_token, key.key_id, oaep_hash, b"\x01" * 256)
    # The session survives a failed decryption.
    assert sign(any_token, key.key_id, SignMechanism.RSA_PKCS1_SHA256, MESSAGE)


@pytest.mark.parametrize("half", [32, 48, 66])
def test_ecdsa_der_encoding_matches_python_pkcs11(half: int) -> None:
    """encode_ecdsa_der gives the bytes of pkcs11.util.ec.encode_ecdsa_signature."""
    import os

    from pkcs11.util.ec import encode_ecdsa_signature

    from hsm.signing import encode_ecdsa_der

    for i in range(500):
        raw = bytearray(os.urandom(2 * half))
        if i % 3 == 0:
            raw[: i % half] = b"\0" * (i % half)  # short r
        if i % 4 == 0:
            raw[half] |= 0x80  # s needs a sign octet
        assert encode_ecdsa_der(bytes(raw)) == bytes(encode_ecdsa_signature(bytes(raw)))
