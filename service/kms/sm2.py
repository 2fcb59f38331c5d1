"""SM2 keys on the SOFTWARE protection path, with tongsuopy (Tongsuo) doing the curve work.

SoftHSM offers no SM2 mechanism, so EC_SM2 keys with ProtectionLevel SOFTWARE are generated
and used here; the caller keeps the PKCS#8 only wrapped under a key in the software token.
Cryptographic choices, fixed:
- Keys: PKCS#8 / SubjectPublicKeyInfo with id-ecPublicKey and the named curve sm2p256v1
  (1.2.156.10197.1.301), the form OpenSSL 3 reads (GM/T 0010, RFC 8998 2).
- Signatures (GB/T 32918.2, RFC 8998 3.2.1): SM3 over Z_A || M with the default
  distinguishing ID ``1234567812345678``; the value is DER SEQUENCE { r, s }.
- Encryption (GB/T 32918.4): SM3 as the KDF and MAC hash; ciphertext is the ASN.1
  SEQUENCE { x, y, C3 hash, C2 } (GM/T 0009, "C1C3C2") that OpenSSL and Tongsuo emit.
  The standard's all-zero mask rule is enforced here, around Tongsuo, which skips it: an
  encryption whose KDF output t is all zeros (C2 = M XOR t would be the plaintext itself)
  is made again with a new k (step A5), and such a ciphertext is refused on decryption
  (step B4), as OpenSSL 3 does.

tongsuopy's public API covers key generation, serialisation and message signing
(``ECDSA(SM3())`` on an SM2 key signs as SM2 with the default ID). Signing a precomputed e,
verifying one, and encryption go through its cffi binding (``EVP_PKEY_sign``,
``EVP_PKEY_verify``, ``EVP_PKEY_encrypt``, ``EVP_PKEY_decrypt``); those calls are kept in
``_pkey_op`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asn1crypto import algos, core
from tongsuopy.backends.tongsuo.backend import backend as _backend
from tongsuopy.crypto import hashes, serialization
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.exceptions import InvalidSignature, UnsupportedAlgorithm

from service.errors import InvalidArgument
from service.pki.signer import SignatureAlgorithm

SM2_CURVE_OID = "1.2.156.10197.1.301"  # sm2p256v1 (GM/T 0006)
SM3_WITH_SM2_OID = "1.2.156.10197.1.501"  # SM3withSM2 signature (GM/T 0006)
DEFAULT_DISTINGUISHING_ID = b"1234567812345678"  # GB/T 32918.2 / GM/T 0009, RFC 8998 3.2.1
# OpenSSL 3 signs and verifies SM2 with an empty ID unless told otherwise (`-sigopt distid:`),
# so certificates made with its command-line defaults need it to verify.
OPENSSL_DEFAULT_DISTINGUISHING_ID = b""
#: The IDs a certificate signature is tried with, in order: GM/T 0015's, then OpenSSL 3's.
CERTIFICATE_DISTINGUISHING_IDS = (DEFAULT_DISTINGUISHING_ID, OPENSSL_DEFAULT_DISTINGUISHING_ID)
E_LENGTH = 32  # SM3 output

# sm2p256v1 parameters (GB/T 32918.5), the inputs a, b, xG, yG of Z_A (GB/T 32918.2 5.5).
_A = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
_B = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
_XG = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
_YG = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")


def _load_private(private_pkcs8: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_der_private_key(private_pkcs8, password=None)
    except UnsupportedAlgorithm as e:
        raise ValueError("the PKCS#8 private key is not an SM2 key") from e
    except (ValueError, TypeError) as e:
        raise ValueError("not a DER PKCS#8 private key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != ec.SM2.name:
        raise ValueError("the PKCS#8 private key is not an SM2 key")
    return key


def _load_public(public_key_info: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(public_key_info)
    except UnsupportedAlgorithm as e:
        raise ValueError("the SubjectPublicKeyInfo is not an SM2 public key") from e
    except (ValueError, TypeError) as e:
        raise ValueError("not a DER SubjectPublicKeyInfo") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != ec.SM2.name:
        raise ValueError("the SubjectPublicKeyInfo is not an SM2 public key")
    return key


def _pkey_op(
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey,
    init: Callable[[Any], int],
    op: Callable[[Any, Any, Any, bytes, int], int],
    data: bytes,
) -> bytes | None:
    """Run one one-shot EVP_PKEY operation (sign/encrypt/decrypt); None when it fails."""
    lib, ffi = _backend._lib, _backend._ffi
    # The key objects carry an EVP_PKEY of alias type SM2, so the SM2 pkey method applies.
    ctx = ffi.gc(lib.EVP_PKEY_CTX_new(key._evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
    _backend.openssl_assert(ctx != ffi.NULL)
    _backend.openssl_assert(init(ctx) == 1)
    length = ffi.new("size_t *")
    if op(ctx, ffi.NULL, length, data, len(data)) != 1:
        _backend._consume_errors()
        return None
    buf = ffi.new("unsigned char[]", length[0])
    if op(ctx, buf, length, data, len(data)) != 1:
        _backend._consume_errors()
        return None
    return bytes(ffi.buffer(buf)[: length[0]])


def generate_sm2_private_key() -> bytes:
    """Generate an SM2 key pair; returns the private key as unencrypted PKCS#8 DER."""
    key = ec.generate_private_key(ec.SM2())
    return bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def sm2_public_key_info(private_pkcs8: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER (id-ecPublicKey, curve sm2p256v1) of an SM2 PKCS#8 key."""
    return bytes(
        _load_private(private_pkcs8)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return bytes(digest.finalize())


def sm2_z_a(public_key_info: bytes, distinguishing_id: bytes = DEFAULT_DISTINGUISHING_ID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || xG || yG || xA || yA) (GB/T 32918.2 5.5)."""
    entl = len(distinguishing_id) * 8
    if entl > 0xFFFF:
        raise ValueError("the distinguishing ID must be shorter than 8192 bytes")
    numbers = _load_public(public_key_info).public_numbers()
    return _sm3(
        entl.to_bytes(2, "big")
        + distinguishing_id
        + _A
        + _B
        + _XG
        + _YG
        + numbers.x.to_bytes(32, "big")
        + numbers.y.to_bytes(32, "big")
    )


def sm2_compute_e(
    public_key_info: bytes,
    message: bytes,
    distinguishing_id: bytes = DEFAULT_DISTINGUISHING_ID,
) -> bytes:
    """e = SM3(Z_A || M), what MessageType=DIGEST carries for SM2DSA (GB/T 32918.2 6.1)."""
    return _sm3(sm2_z_a(public_key_info, distinguishing_id) + message)


def _check_e(e: bytes) -> None:
    if len(e) != E_LENGTH:
        raise InvalidArgument(
            f"Message is {len(e)} bytes; an SM2DSA DIGEST is the {E_LENGTH}-byte SM3 value "
            "e = SM3(Z_A || M) of GB/T 32918.2 6.1",
            reason="InvalidParameter.Message",
        )


def sm2_sign_digest(private_pkcs8: bytes, e: bytes) -> bytes:
    """Sign a precomputed e (GB/T 32918.2 6.1 steps A3-A7); returns DER SEQUENCE { r, s }."""
    _check_e(e)
    lib = _backend._lib
    signature = _pkey_op(_load_private(private_pkcs8), lib.EVP_PKEY_sign_init, lib.EVP_PKEY_sign, e)
    _backend.openssl_assert(signature is not None)
    assert signature is not None
    return signature


def sm2_sign(private_pkcs8: bytes, message: bytes) -> bytes:
    """Sign a message with SM3 and the default ID; returns DER SEQUENCE { r, s }."""
    key = _load_private(private_pkcs8)
    # Tongsuo's SM2 digest-sign computes Z_A with the default ID 1234567812345678.
    return bytes(key.sign(message, ec.ECDSA(hashes.SM3())))


def _is_der_signature(signature: bytes) -> bool:
    """True when ``signature`` is DER SEQUENCE { r, s } with 1 <= r, s < n (GB/T 32918.2 7.1)."""
    try:
        parsed = algos.DSASignature.load(signature, strict=True)
        r, s = parsed["r"].native, parsed["s"].native
        reencoded = algos.DSASignature({"r": r, "s": s}).dump()
    except (ValueError, TypeError):
        return False
    return bool(reencoded == signature and 0 < r < _N and 0 < s < _N)


def sm2_verify(
    public_key_info: bytes, message_or_e: bytes, signature: bytes, *, digest: bool
) -> bool:
    """Verify an SM2 signature over a message (digest=False) or a precomputed e (digest=True)."""
    key = _load_public(public_key_info)
    if not _is_der_signature(signature):
        return False
    if not digest:
        try:
            key.verify(signature, message_or_e, ec.ECDSA(hashes.SM3()))
        except InvalidSignature:
            return False
        return True
    _check_e(message_or_e)
    lib, ffi = _backend._lib, _backend._ffi
    ctx = ffi.gc(lib.EVP_PKEY_CTX_new(key._evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
    _backend.openssl_assert(ctx != ffi.NULL)
    _backend.openssl_assert(lib.EVP_PKEY_verify_init(ctx) == 1)
    # 1 = valid; 0 = invalid; < 0 = an error, also reported as invalid.
    result = lib.EVP_PKEY_verify(ctx, signature, len(signature), message_or_e, len(message_or_e))
    if result != 1:
        _backend._consume_errors()
    return bool(result == 1)


def sm2_verify_certificate_signature(
    issuer_public_key_info: bytes, tbs: bytes, signature: bytes
) -> bytes | None:
    """The distinguishing ID under which an SM3withSM2 signature over ``tbs`` verifies, or None.

    GM/T 0015 certificates are signed with the default ID 1234567812345678; OpenSSL 3 signs
    with an empty ID unless given ``-sigopt distid:...``, and its own ``openssl verify``
    accepts such chains. Both are tried, the standard's first.
    """
    for distinguishing_id in CERTIFICATE_DISTINGUISHING_IDS:
        e = sm2_compute_e(issuer_public_key_info, tbs, distinguishing_id)
        if sm2_verify(issuer_public_key_info, e, signature, digest=True):
            return distinguishing_id
    return None


#: Encryptions tried before giving up on a mask that is not all zeros. Each try has a chance
#: of 2**(-8 * len(plaintext)) of an all-zero mask, so more than one try is already rare.
_MAX_ENCRYPT_TRIES = 64


def _c2(ciphertext: bytes) -> bytes | None:
    """C2 of an ASN.1 C1C3C2 ciphertext (GM/T 0009: SEQUENCE { x, y, C3, C2 }), or None."""
    try:
        fields = core.Sequence.load(ciphertext, strict=True)
        if len(fields) != 4:
            return None
        c2 = fields[3]
    except (ValueError, TypeError):
        return None
    return bytes(c2.native) if isinstance(c2, core.OctetString) else None


def _encrypt_once(public_key_info: bytes, plaintext: bytes) -> bytes:
    """One SM2PKE encryption by Tongsuo, whatever its mask (see sm2_encrypt)."""
    lib = _backend._lib
    ciphertext = _pkey_op(
        _load_public(public_key_info), lib.EVP_PKEY_encrypt_init, lib.EVP_PKEY_encrypt, plaintext
    )
    _backend.openssl_assert(ciphertext is not None)
    assert ciphertext is not None
    return ciphertext


def sm2_encrypt(public_key_info: bytes, plaintext: bytes) -> bytes:
    """SM2PKE-encrypt (GB/T 32918.4, SM3); returns the ASN.1 C1C3C2 ciphertext."""
    if not plaintext:
        raise InvalidArgument(
            "Plaintext is empty; SM2PKE encrypts 1 or more bytes",
            reason="InvalidParameter.Plaintext",
        )
    for _ in range(_MAX_ENCRYPT_TRIES):
        ciphertext = _encrypt_once(public_key_info, plaintext)
        # Step A5: t = KDF(x2 || y2, klen) must not be all zeros, else choose a new k. C2 is
        # M XOR t, so t is all zeros exactly when C2 equals the plaintext. Tongsuo does not
        # check (17 of 3000 one-byte encryptions carried the plaintext in clear, and OpenSSL
        # refused to decrypt them).
        if _c2(ciphertext) != plaintext:
            return ciphertext
    raise RuntimeError(f"SM2 encryption drew an all-zero mask {_MAX_ENCRYPT_TRIES} times")


def sm2_decrypt(private_pkcs8: bytes, ciphertext: bytes) -> bytes:
    """SM2PKE-decrypt an ASN.1 C1C3C2 ciphertext (GB/T 32918.4, SM3)."""
    lib = _backend._lib
    plaintext = _pkey_op(
        _load_private(private_pkcs8), lib.EVP_PKEY_decrypt_init, lib.EVP_PKEY_decrypt, ciphertext
    )
    # A malformed ciphertext, a point off the curve and a C3 mismatch (tampering or another
    # key) all fail here; GB/T 32918.4 7.1 B1/B7 give no reason worth telling apart. Step B4
    # refuses an all-zero t too, which Tongsuo does not check: then C2 is the plaintext.
    if plaintext is None or plaintext == _c2(ciphertext):
        raise InvalidArgument(
            "CiphertextBlob could not be decrypted: it is not an SM2PKE ciphertext "
            "(ASN.1 C1C3C2) made for this certificate's public key",
            reason="InvalidParameter.CiphertextBlob",
        )
    return plaintext


class Sm2Signer:
    """A Signer (SM3withSM2, default ID) over an SM2 PKCS#8 private key held in memory."""

    __slots__ = ("_private_pkcs8", "_public_key_info")

    def __init__(self, private_pkcs8: bytes) -> None:
        self._public_key_info = sm2_public_key_info(private_pkcs8)
        self._private_pkcs8 = bytes(private_pkcs8)

    def __repr__(self) -> str:
        return f"Sm2Signer(public_key_info={self._public_key_info.hex()[:32]}...)"

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """Always SM3withSM2."""
        return SignatureAlgorithm.SM3_SM2

    @property
    def public_key_info(self) -> bytes:
        """The SM2 SubjectPublicKeyInfo, DER."""
        return self._public_key_info

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with SM3 and the default ID; returns DER SEQUENCE { r, s }."""
        return sm2_sign(self._private_pkcs8, data)
