"""Signing and decryption with token keys; mechanism, hash and encoding are spelled out.

- RSA PKCS#1 v1.5 (RFC 8017 8.2): CKM_SHA{256,384,512}_RSA_PKCS over the message, or
  CKM_RSA_PKCS over a DigestInfo we build when the caller already has the digest.
- RSASSA-PSS SHA-256 (RFC 8017 8.1, RFC 4055): MGF1-SHA-256, salt length 32.
- ECDSA (FIPS 186-4): SoftHSM offers no CKM_ECDSA_SHA256, so we hash in Python and sign the
  digest with CKM_ECDSA; the token returns raw r||s, which we encode as the DER
  Ecdsa-Sig-Value of RFC 3279 2.2.3 before it goes into a certificate, CSR or response.
- RSA decryption: RSAES-OAEP with SHA-1 or SHA-256 (MGF1 of the same hash, empty label).
  SoftHSM 2.6 accepts CKM_RSA_PKCS_OAEP only with SHA-1 (measured: CKR_ARGUMENTS_BAD for
  SHA-256), so OAEP-SHA-256 is done as the raw RSA private operation (CKM_RSA_X_509) in the
  token plus the EME-OAEP decoding of RFC 8017 7.1.2 step 3 here. The private key still
  never leaves the token; only the padded plaintext block does, as it would anyway.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from typing import Any

import pkcs11
from pkcs11 import MGF, Attribute, Mechanism, ObjectClass

from hsm.capabilities import offers
from hsm.token import Token


class SignMechanism(enum.Enum):
    """A signature scheme with its hash; the value names it for logs and errors."""

    RSA_PKCS1_SHA256 = "RSA_PKCS1_SHA256"
    RSA_PKCS1_SHA384 = "RSA_PKCS1_SHA384"
    RSA_PKCS1_SHA512 = "RSA_PKCS1_SHA512"
    RSA_PSS_SHA256 = "RSA_PSS_SHA256"
    ECDSA_SHA256 = "ECDSA_SHA256"
    ECDSA_SHA384 = "ECDSA_SHA384"
    ECDSA_SHA512 = "ECDSA_SHA512"

    @property
    def hash_name(self) -> str:
        """hashlib name of the message digest."""
        return self.value.rsplit("_", 1)[1].lower()


class OaepHash(enum.Enum):
    """Hash (and MGF1 hash) of RSAES-OAEP."""

    SHA1 = "SHA1"
    SHA256 = "SHA256"


# DER prefixes of DigestInfo (RFC 8017 9.2 note 1) for CKM_RSA_PKCS over a digest.
_DIGEST_INFO_PREFIX = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

_RSA_PKCS1_DATA = {
    SignMechanism.RSA_PKCS1_SHA256: Mechanism.SHA256_RSA_PKCS,
    SignMechanism.RSA_PKCS1_SHA384: Mechanism.SHA384_RSA_PKCS,
    SignMechanism.RSA_PKCS1_SHA512: Mechanism.SHA512_RSA_PKCS,
}

_PSS_SHA256_PARAMS = (Mechanism.SHA256, MGF.SHA256, 32)

_OAEP_PARAMS = {
    OaepHash.SHA1: (Mechanism.SHA_1, MGF.SHA1, None),
    OaepHash.SHA256: (Mechanism.SHA256, MGF.SHA256, None),
}


def _sign_with(
    token: Token, key_id: bytes, data: bytes, mechanism: Any, param: Any = None
) -> bytes:
    def sign(session: Any) -> bytes:
        key = token.find_object(session, key_id, ObjectClass.PRIVATE_KEY)
        return bytes(key.sign(data, mechanism=mechanism, mechanism_param=param))

    return token.run(sign)


def sign(token: Token, key_id: bytes, mechanism: SignMechanism, data: bytes) -> bytes:
    """Sign a whole message; ECDSA signatures come back DER-encoded.

    Where the token lists no hash-and-sign mechanism for the scheme (opencryptoki 3.8's
    software token has no CKM_SHA256_RSA_PKCS), the message is hashed here and the digest
    signed, which gives the same signature.
    """
    if mechanism in _RSA_PKCS1_DATA and offers(token, _RSA_PKCS1_DATA[mechanism]):
        return _sign_with(token, key_id, data, _RSA_PKCS1_DATA[mechanism])
    if mechanism is SignMechanism.RSA_PSS_SHA256 and offers(
        token, Mechanism.SHA256_RSA_PKCS_PSS
    ):
        return _sign_with(
            token, key_id, data, Mechanism.SHA256_RSA_PKCS_PSS, _PSS_SHA256_PARAMS
        )
    return sign_digest(token, key_id, mechanism, hashlib.new(mechanism.hash_name, data).digest())


def sign_digest(token: Token, key_id: bytes, mechanism: SignMechanism, digest: bytes) -> bytes:
    """Sign a digest the caller computed with ``mechanism``'s hash."""
    expected = hashlib.new(mechanism.hash_name).digest_size
    if len(digest) != expected:
        raise ValueError(
            f"{mechanism.value} needs a {expected}-byte digest, got {len(digest)} bytes"
        )
    if mechanism in _RSA_PKCS1_DATA:
        info = _DIGEST_INFO_PREFIX[mechanism.hash_name] + digest
        return _sign_with(token, key_id, info, Mechanism.RSA_PKCS)
    if mechanism is SignMechanism.RSA_PSS_SHA256:
        return _sign_with(token, key_id, digest, Mechanism.RSA_PKCS_PSS, _PSS_SHA256_PARAMS)
    raw = _sign_with(token, key_id, digest, Mechanism.ECDSA)
    return encode_ecdsa_der(raw)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_unsigned_integer(value: bytes) -> bytes:
    body = value.lstrip(b"\0") or b"\0"
    if body[0] & 0x80:
        body = b"\0" + body  # X.690 8.3: a positive INTEGER whose top bit is set
    return b"\x02" + _der_length(len(body)) + body


def encode_ecdsa_der(raw: bytes) -> bytes:
    """PKCS#11 raw r||s (equal halves) -> DER Ecdsa-Sig-Value (RFC 3279 2.2.3)."""
    # The same bytes as pkcs11.util.ec.encode_ecdsa_signature, without an asn1crypto
    # round trip on every certificate.
    if not raw or len(raw) % 2:
        raise ValueError(f"raw ECDSA signature of odd length {len(raw)}")
    half = len(raw) // 2
    body = _der_unsigned_integer(raw[:half]) + _der_unsigned_integer(raw[half:])
    return b"\x30" + _der_length(len(body)) + body


class DecryptionError(ValueError):
    """The ciphertext does not decrypt under this key and padding."""


def decrypt(token: Token, key_id: bytes, oaep_hash: OaepHash, ciphertext: bytes) -> bytes:
    """RSAES-OAEP decryption with the private key in the token."""

    def run(session: Any) -> bytes:
        key = token.find_object(session, key_id, ObjectClass.PRIVATE_KEY)
        if oaep_hash is OaepHash.SHA1:
            return bytes(
                key.decrypt(
                    ciphertext,
                    mechanism=Mechanism.RSA_PKCS_OAEP,
                    mechanism_param=_OAEP_PARAMS[oaep_hash],
                )
            )
        k = len(key[Attribute.MODULUS])
        if len(ciphertext) != k:
            raise DecryptionError(f"ciphertext must be {k} bytes for this key")
        em = bytes(key.decrypt(ciphertext, mechanism=Mechanism.RSA_X_509))
        return _eme_oaep_decode(em.rjust(k, b"\0"), "sha256")

    try:
        return token.run(run)
    except (
        pkcs11.exceptions.EncryptedDataInvalid,
        pkcs11.exceptions.EncryptedDataLenRange,
        # SoftHSM 2.6 reports a bad OAEP padding as CKR_GENERAL_ERROR, opencryptoki 3.8's
        # software token as CKR_FUNCTION_FAILED (both measured).
        pkcs11.exceptions.GeneralError,
        pkcs11.exceptions.FunctionFailed,
    ) as e:
        raise DecryptionError("decryption failed") from e


def _mgf1(seed: bytes, length: int, hash_name: str) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.new(hash_name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _eme_oaep_decode(em: bytes, hash_name: str) -> bytes:
    """EME-OAEP decoding, RFC 8017 7.1.2 step 3, with an empty label."""
    h_len = hashlib.new(hash_name).digest_size
    k = len(em)
    if k < 2 * h_len + 2:
        raise DecryptionError("decryption failed")
    y, masked_seed, masked_db = em[0], em[1 : 1 + h_len], em[1 + h_len :]
    seed = _xor(masked_seed, _mgf1(masked_db, h_len, hash_name))
    db = _xor(masked_db, _mgf1(seed, k - h_len - 1, hash_name))
    l_hash = hashlib.new(hash_name, b"").digest()
    # Examine every condition before deciding, so timing does not tell which one failed
    # (RFC 8017 7.1.2 note on Manger's attack).
    good = hmac.compare_digest(db[:h_len], l_hash) & (y == 0)
    rest = db[h_len:]
    index = rest.find(b"\x01")
    good &= index >= 0 and not any(rest[:index])
    if not good:
        raise DecryptionError("decryption failed")
    return rest[index + 1 :]
