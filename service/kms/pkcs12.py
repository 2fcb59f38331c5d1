"""PKCS#12 (RFC 7292) files built here, for keys that pyca/cryptography cannot load (SM2).

cryptography's ``pkcs12.serialize_key_and_certificates`` needs a key object it knows, and
neither it nor tongsuopy can serialise an SM2 key into a PFX, so EC_SM2 exports are built
from the ASN.1 up with asn1crypto. The layout and choices are OpenSSL 3's defaults (what
``openssl pkcs12 -export`` and cryptography's ``BestAvailableEncryption`` write):

- AuthenticatedSafe (RFC 7292 4.1) = [ encryptedData(certificate bags), data(key bag) ].
  The certificate SafeContents is encrypted too, as OpenSSL 3 does, so the file does not
  reveal the holder's names without the passphrase.
- Key: a pkcs8ShroudedKeyBag (RFC 7292 4.2.2), the PKCS#8 PrivateKeyInfo encrypted as an
  EncryptedPrivateKeyInfo (RFC 5208 6) with PBES2 (RFC 8018 6.2): PBKDF2 with
  hmacWithSHA256, a random 16-byte salt, ``PBES2_ITERATIONS`` iterations, no keyLength
  field; AES-256-CBC (RFC 8018 B.2.5) with a random 16-byte IV and PKCS#7 padding. The
  certificate SafeContents uses the same scheme with its own salt and IV (RFC 5652 8).
  PBES2 takes the passphrase as its UTF-8 octets (RFC 8018 6.2; OpenSSL does the same).
- Certificates: certBags of type x509Certificate (1.2.840.113549.1.9.22.1), leaf first
  then the chain in the order given. The key bag and the leaf's bag both carry
  friendlyName (BMPString) and localKeyId = SHA-1 of the certificate DER, as OpenSSL sets
  them (RFC 2985 5.5.1, 5.5.2), so readers pair the key with its certificate.
- Integrity: MacData (RFC 7292 5) with HMAC-SHA-256 over the AuthenticatedSafe octets;
  the 32-byte MAC key comes from the PKCS#12 KDF (RFC 7292 B.2) with ID = 3, SHA-256,
  an 8-byte random salt, ``MAC_ITERATIONS`` iterations, and the passphrase as a
  big-endian BMPString with its two-byte NUL terminator (RFC 7292 B.1).
"""

from __future__ import annotations

import hashlib
import hmac

from asn1crypto import algos, cms, keys, pkcs12, x509
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC

from service.entropy import random_bytes

# PBKDF2 iterations for the key bag and the certificate SafeContents. OpenSSL 3.0 writes
# 2048 (PKCS5_DEFAULT_ITER) and cryptography's BestAvailableEncryption 20000; 100000 is
# well above both and costs ~35 ms per derivation (two per file), cheap for an export.
PBES2_ITERATIONS = 100_000
PBES2_SALT_BYTES = 16  # RFC 8018 4.1 asks for at least 8
AES_256_KEY_BYTES = 32
AES_BLOCK_BYTES = 16
# MacData iterations and salt: OpenSSL 3's defaults (PKCS12_DEFAULT_ITER, PKCS12_SALT_LEN),
# which every PKCS#12 reader accepts; the PBES2 layers above carry the password hardening.
MAC_ITERATIONS = 2048
MAC_SALT_BYTES = 8
# RFC 7292 B.3: diversifier ID 3 derives MAC keys (1 = encryption key, 2 = IV).
_KDF_ID_MAC = 3


def build_pkcs12(
    private_key_pkcs8: bytes,
    certificate_der: bytes,
    chain_der: list[bytes],
    passphrase: str,
    *,
    friendly_name: str,
) -> bytes:
    """A DER PFX holding the key (PBES2-encrypted), certificate and chain, MACed (RFC 7292)."""
    if not passphrase:
        # OpenSSL treats an empty password as "no password" in places; refuse the ambiguity.
        raise ValueError("the PKCS#12 passphrase must not be empty")
    try:
        key_info = keys.PrivateKeyInfo.load(private_key_pkcs8, strict=True)
        certificate = x509.Certificate.load(certificate_der, strict=True)
        chain = [x509.Certificate.load(der, strict=True) for der in chain_der]
        # Parse eagerly (asn1crypto is lazy) so that malformed input fails here, not in a
        # reader later; algorithm and parameters must be those of the certificate's key.
        key_algorithm = key_info["private_key_algorithm"].dump()
        cert_algorithm = certificate["tbs_certificate"]["subject_public_key_info"][
            "algorithm"
        ].dump()
        for parsed in (key_info, certificate, *chain):
            parsed.native  # noqa: B018 - walks the whole structure
    except (ValueError, TypeError) as e:
        raise ValueError("the private key or a certificate is not valid DER") from e
    if key_algorithm != cert_algorithm:
        raise ValueError("the private key's algorithm is not that of the certificate's key")

    secret = passphrase.encode("utf-8")
    local_key_id = hashlib.sha1(certificate_der).digest()  # noqa: S324 - an id, per OpenSSL
    attributes = pkcs12.Attributes(
        [
            {"type": "friendly_name", "values": [friendly_name]},
            {"type": "local_key_id", "values": [local_key_id]},
        ]
    )

    key_bag = pkcs12.SafeBag(
        {
            "bag_id": "pkcs8_shrouded_key_bag",
            "bag_value": _encrypt_private_key_info(key_info.dump(), secret),
            "bag_attributes": attributes,
        }
    )
    cert_bags = [_cert_bag(certificate, attributes)]
    cert_bags.extend(_cert_bag(ca, None) for ca in chain)

    cert_algorithm_id, cert_ciphertext = _pbes2_encrypt(
        pkcs12.SafeContents(cert_bags).dump(), secret
    )
    authenticated_safe = pkcs12.AuthenticatedSafe(
        [
            cms.ContentInfo(
                {
                    "content_type": "encrypted_data",
                    "content": cms.EncryptedData(
                        {
                            "version": "v0",
                            "encrypted_content_info": {
                                "content_type": "data",
                                "content_encryption_algorithm": cert_algorithm_id,
                                "encrypted_content": cert_ciphertext,
                            },
                        }
                    ),
                }
            ),
            cms.ContentInfo(
                {"content_type": "data", "content": pkcs12.SafeContents([key_bag]).dump()}
            ),
        ]
    ).dump()

    mac_salt = random_bytes(MAC_SALT_BYTES)
    mac_key = pkcs12_kdf(
        "sha256", bmp_password(passphrase), mac_salt, _KDF_ID_MAC, MAC_ITERATIONS, 32
    )
    pfx = pkcs12.Pfx(
        {
            "version": "v3",
            "auth_safe": {"content_type": "data", "content": authenticated_safe},
            "mac_data": {
                "mac": {
                    "digest_algorithm": {"algorithm": "sha256"},
                    "digest": hmac.digest(mac_key, authenticated_safe, "sha256"),
                },
                "mac_salt": mac_salt,
                "iterations": MAC_ITERATIONS,
            },
        }
    )
    return bytes(pfx.dump())


def _cert_bag(certificate: x509.Certificate, attributes: pkcs12.Attributes | None) -> object:
    bag: dict[str, object] = {
        "bag_id": "cert_bag",
        "bag_value": pkcs12.CertBag({"cert_id": "x509", "cert_value": certificate}),
    }
    if attributes is not None:
        bag["bag_attributes"] = attributes
    return pkcs12.SafeBag(bag)


def _encrypt_private_key_info(
    private_key_info: bytes, secret: bytes
) -> keys.EncryptedPrivateKeyInfo:
    """EncryptedPrivateKeyInfo (RFC 5208 6) under PBES2."""
    algorithm, ciphertext = _pbes2_encrypt(private_key_info, secret)
    return keys.EncryptedPrivateKeyInfo(
        {"encryption_algorithm": algorithm, "encrypted_data": ciphertext}
    )


def _pbes2_encrypt(plaintext: bytes, secret: bytes) -> tuple[algos.EncryptionAlgorithm, bytes]:
    """PBES2 (RFC 8018 6.2.1): PBKDF2-HMAC-SHA256 then AES-256-CBC, PKCS#7 padding."""
    salt = random_bytes(PBES2_SALT_BYTES)
    iv = random_bytes(AES_BLOCK_BYTES)
    key = hashlib.pbkdf2_hmac("sha256", secret, salt, PBES2_ITERATIONS, AES_256_KEY_BYTES)
    padder = padding.PKCS7(AES_BLOCK_BYTES * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(AES(key), CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    algorithm = algos.EncryptionAlgorithm(
        {
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {
                        "salt": algos.Pbkdf2Salt(name="specified", value=salt),
                        "iteration_count": PBES2_ITERATIONS,
                        # hmacWithSHA256 with NULL parameters, as OpenSSL writes it.
                        "prf": {"algorithm": "sha256", "parameters": None},
                    },
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
            },
        }
    )
    return algorithm, ciphertext


def bmp_password(passphrase: str) -> bytes:
    """The passphrase as RFC 7292 B.1 wants it: BMPString (UTF-16BE) plus a two-byte NUL."""
    # Characters beyond the BMP become surrogate pairs, as OpenSSL 3's OPENSSL_utf82uni does.
    return passphrase.encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(
    hash_name: str, password: bytes, salt: bytes, kdf_id: int, iterations: int, length: int
) -> bytes:
    """The PKCS#12 key derivation function of RFC 7292 Appendix B.2.

    ``password`` is already the BMPString with its terminator (see RFC 7292 B.1).
    """
    if iterations < 1 or length < 0:
        raise ValueError("iterations must be >= 1 and length >= 0")
    u = hashlib.new(hash_name).digest_size
    v = hashlib.new(hash_name).block_size
    diversifier = bytes([kdf_id]) * v  # step 1: D
    # Steps 2-4: S and P are salt and password repeated to a multiple of v bytes; I = S || P.
    s = _fill(salt, v)
    p = _fill(password, v)
    i_blocks = bytearray(s + p)
    out = bytearray()
    modulus = 1 << (8 * v)
    for _ in range(-(-length // u)):  # step 5: c = ceil(n / u)
        a = hashlib.new(hash_name, diversifier + bytes(i_blocks)).digest()  # step 6a: H^r
        for _ in range(iterations - 1):
            a = hashlib.new(hash_name, a).digest()
        out += a
        if len(out) >= length:
            break
        # Steps 6b-6c: B = A_i repeated to v bytes; each v-byte block I_j += B + 1 mod 2^(8v).
        b = int.from_bytes(_fill(a, v)[:v], "big") + 1
        for j in range(0, len(i_blocks), v):
            block = (int.from_bytes(i_blocks[j : j + v], "big") + b) % modulus
            i_blocks[j : j + v] = block.to_bytes(v, "big")
    return bytes(out[:length])  # step 7


def _fill(data: bytes, v: int) -> bytes:
    """``data`` repeated to v * ceil(len(data) / v) bytes (RFC 7292 B.2 steps 2-3)."""
    if not data:
        return b""
    total = v * -(-len(data) // v)
    return (data * (total // len(data) + 1))[:total]
