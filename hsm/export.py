"""Key export under wrapping, and sealing of software-held secrets with a token key.

Export (exportable keys only): the private key leaves the token only as ciphertext.
1. An ephemeral AES-256 session key is generated in the token (CKA_TOKEN false).
2. C_WrapKey wraps the private key with it under CKM_AES_KEY_WRAP_PAD (RFC 5649); the
   wrapped data is the PKCS#8 PrivateKeyInfo (PKCS#11 v2.40 mechanisms, 2.1 "private key
   wrapping" uses PrivateKeyInfo).
3. The caller's RSA public key is imported as a session object and C_WrapKey wraps the AES
   key with CKM_RSA_PKCS_OAEP. SHA-256 is tried first; SoftHSM 2.6 accepts only SHA-1
   (measured: CKR_ARGUMENTS_BAD for SHA-256), and the result names the hash used.
4. Both session objects are destroyed whatever happens.
A non-exportable key makes the token refuse in step 2 (CKR_KEY_UNEXTRACTABLE, PKCS#11 v2.40
5.13 C_WrapKey); that refusal is reported as :class:`TokenRefusedExport`.

Sealing: a long-lived, non-extractable AES-256 key in the token ("hsmca-kek") encrypts
secrets kept outside it (e.g. SM2 private keys of the SOFTWARE protection level) with
CKM_AES_GCM (NIST SP 800-38D), a random 96-bit IV per blob and the blob header as AAD.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pkcs11
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters
from pkcs11.util.rsa import decode_rsa_public_key

from hsm.capabilities import offers
from hsm.errors import HsmError, KeyNotExportable, KeyNotFound, MechanismUnavailable
from hsm.keys import KeySpec
from hsm.token import Token

# python-pkcs11 raises one exception class per CKR_ code (pkcs11/_pkcs11.pxd,
# map_rv_to_error); names differ from the CKR_ spelling only in these cases.
_CKR_SPELLING = {
    "AnotherUserAlreadyLoggedIn": "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
    "FunctionCancelled": "CKR_FUNCTION_CANCELED",
    "SlotIDInvalid": "CKR_SLOT_ID_INVALID",
    "TokenNotRecognised": "CKR_TOKEN_NOT_RECOGNIZED",
}


def return_code_name(exc: BaseException) -> str:
    """The CKR_ name of a python-pkcs11 exception (``CKR_KEY_UNEXTRACTABLE``)."""
    name = type(exc).__name__
    if name in _CKR_SPELLING:
        return _CKR_SPELLING[name]
    if type(exc) is pkcs11.exceptions.PKCS11Error:
        # An unmapped code: python-pkcs11 puts it in the message ("Unmapped error code 0x..").
        return f"CKR_UNMAPPED({exc})"
    snake = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name))
    return "CKR_" + snake.upper()


class TokenRefusedExport(KeyNotExportable):
    """The token refused to wrap the key; ``return_code`` is its CKR_ name."""

    def __init__(self, message: str, return_code: str) -> None:
        super().__init__(message)
        self.return_code = return_code


class InvalidRecipientKey(ValueError):
    """The key to encrypt the export to is not an RSA public key of at least 2048 bits."""


class SealedDataInvalid(HsmError):
    """A sealed blob is malformed or fails GCM authentication (tampered or wrong key)."""


AES_KEY_WRAP_PAD = "AES_KEY_WRAP_PAD"
RSAES_OAEP_SHA256 = "RSAES_OAEP_SHA256"
RSAES_OAEP_SHA1 = "RSAES_OAEP_SHA1"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WrappedExport:
    """A private key wrapped by an ephemeral AES key, that key encrypted to the recipient."""

    wrapped_key: bytes
    wrapped_key_mechanism: str = AES_KEY_WRAP_PAD
    encrypted_aes_key: bytes
    aes_key_encryption: str = RSAES_OAEP_SHA1
    key_spec: KeySpec


# Tried in order: OAEP with SHA-256 (and MGF1-SHA-256) where the token accepts it, else SHA-1.
_OAEP_CHOICES = (
    (RSAES_OAEP_SHA256, (Mechanism.SHA256, MGF.SHA256, None)),
    (RSAES_OAEP_SHA1, (Mechanism.SHA_1, MGF.SHA1, None)),
)

# What a token says when the key must not leave it (PKCS#11 v2.40 5.13, C_WrapKey).
_REFUSALS: tuple[type[Exception], ...] = (
    pkcs11.exceptions.KeyUnextractable,
    pkcs11.exceptions.KeyNotWrappable,
    pkcs11.exceptions.AttributeSensitive,
)


def ephemeral_wrapping_key(session: Any) -> Any:
    """An AES-256 session key that can wrap, and can itself be wrapped to the recipient."""
    return session.generate_key(
        KeyType.AES,
        256,
        store=False,
        template={
            Attribute.TOKEN: False,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: True,
            Attribute.WRAP: True,
            Attribute.UNWRAP: False,
            Attribute.ENCRYPT: False,
            Attribute.DECRYPT: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
            Attribute.DERIVE: False,
        },
    )


def _recipient_rsa_public_key(recipient_public_key_info: bytes) -> dict[Attribute, Any]:
    try:
        info = asn1_keys.PublicKeyInfo.load(recipient_public_key_info, strict=True)
        algorithm = info["algorithm"]["algorithm"].native
        if algorithm != "rsa":
            raise InvalidRecipientKey(f"recipient key must be RSA, not {algorithm}")
        rsa_der = info["public_key"].parsed.dump()
        bits = info["public_key"].parsed["modulus"].native.bit_length()
    except InvalidRecipientKey:
        raise
    except (ValueError, TypeError) as e:
        raise InvalidRecipientKey(f"recipient key is not a SubjectPublicKeyInfo: {e}") from e
    if bits < 2048:
        raise InvalidRecipientKey(f"recipient RSA key has {bits} bits; at least 2048 needed")
    template = decode_rsa_public_key(rsa_der)
    template.update(
        {
            Attribute.TOKEN: False,
            Attribute.WRAP: True,
            Attribute.ENCRYPT: False,
            Attribute.VERIFY: False,
        }
    )
    return template


def key_spec_of(key: Any) -> KeySpec:
    """The KeySpec of a private key object (RSA modulus length or named curve)."""
    if key.key_type == KeyType.RSA:
        return KeySpec(f"RSA_{len(key[Attribute.MODULUS]) * 8}")
    params = bytes(key[Attribute.EC_PARAMS])
    for spec in (KeySpec.EC_P256, KeySpec.EC_P384, KeySpec.EC_P521):
        if params == encode_named_curve_parameters(spec.curve):
            return spec
    raise HsmError(f"key {key.id.hex()} has an unsupported curve ({params.hex()})")


def _destroy_quietly(obj: Any) -> None:
    if obj is None:
        return
    try:
        obj.destroy()
    except pkcs11.exceptions.PKCS11Error:
        pass  # a session object also dies with its session; nothing else holds it


def export_private_key(
    token: Token, key_id: bytes, recipient_public_key_info: bytes
) -> WrappedExport:
    """Wrap an exportable private key for the holder of an RSA key (SPKI DER)."""
    recipient_template = _recipient_rsa_public_key(recipient_public_key_info)
    if not offers(token, Mechanism.AES_KEY_WRAP_PAD):
        # opencryptoki 3.8's software token, for one, has no RFC 5649 key wrap.
        raise MechanismUnavailable(
            f"token {token.label!r} offers no CKM_AES_KEY_WRAP_PAD, which key export needs"
        )

    def export(session: Any) -> WrappedExport:
        key = token.find_object(session, key_id, ObjectClass.PRIVATE_KEY)
        spec = key_spec_of(key)
        aes = recipient = None
        try:
            aes = ephemeral_wrapping_key(session)
            try:
                wrapped = bytes(aes.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD))
            except _REFUSALS as e:
                code = return_code_name(e)
                raise TokenRefusedExport(
                    f"token {token.label!r} refused to export key {key_id.hex()} ({code}); "
                    "it was generated non-exportable",
                    code,
                ) from e
            recipient = session.create_object(recipient_template)
            for name, param in _OAEP_CHOICES:
                try:
                    encrypted = bytes(
                        recipient.wrap_key(
                            aes, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param
                        )
                    )
                except (
                    pkcs11.exceptions.ArgumentsBad,
                    pkcs11.exceptions.MechanismParamInvalid,
                ):
                    continue  # this hash is not offered for OAEP; try the next one
                return WrappedExport(
                    wrapped_key=wrapped,
                    encrypted_aes_key=encrypted,
                    aes_key_encryption=name,
                    key_spec=spec,
                )
            raise MechanismUnavailable(
                f"token {token.label!r} accepts CKM_RSA_PKCS_OAEP with neither SHA-256 nor SHA-1"
            )
        finally:
            _destroy_quietly(recipient)
            _destroy_quietly(aes)

    return token.run(export)


def unwrap_export(
    export: WrappedExport, recipient_private_key: bytes | rsa.RSAPrivateKey
) -> bytes:
    """Client side: recover the PKCS#8 PrivateKeyInfo DER from a :class:`WrappedExport`."""
    if isinstance(recipient_private_key, bytes):
        loaded = serialization.load_pem_private_key(recipient_private_key, password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise InvalidRecipientKey("the recipient private key is not RSA")
        recipient_private_key = loaded
    hash_: hashes.HashAlgorithm
    if export.aes_key_encryption == RSAES_OAEP_SHA256:
        hash_ = hashes.SHA256()
    elif export.aes_key_encryption == RSAES_OAEP_SHA1:
        hash_ = hashes.SHA1()  # noqa: S303 - OAEP-SHA1 is still sound; SoftHSM offers no other
    else:
        raise ValueError(f"unknown aes_key_encryption {export.aes_key_encryption!r}")
    if export.wrapped_key_mechanism != AES_KEY_WRAP_PAD:
        raise ValueError(f"unknown wrapped_key_mechanism {export.wrapped_key_mechanism!r}")
    aes_key = recipient_private_key.decrypt(
        export.encrypted_aes_key,
        padding.OAEP(mgf=padding.MGF1(algorithm=hash_), algorithm=hash_, label=None),
    )
    return _trim_to_der(aes_key_unwrap_with_padding(aes_key, export.wrapped_key))


def _trim_to_der(data: bytes) -> bytes:
    """Drop the zero bytes some tokens append to the PrivateKeyInfo before wrapping.

    SoftHSM 2.6 zero-pads the key encoding to a multiple of 8 before applying RFC 5649 (the
    padding meant for CKM_AES_KEY_WRAP), so the unwrapped data can end in up to 7 zero
    bytes after the DER SEQUENCE (measured with P-256 and RSA keys).
    """
    if len(data) < 2 or data[0] != 0x30:
        raise ValueError("unwrapped data is not a DER SEQUENCE (PKCS#8 PrivateKeyInfo)")
    first = data[1]
    if first < 0x80:
        end = 2 + first
    else:
        n = first & 0x7F
        if not 1 <= n <= 4 or len(data) < 2 + n:
            raise ValueError("unwrapped data has a malformed DER length")
        end = 2 + n + int.from_bytes(data[2 : 2 + n], "big")
    padding_bytes = data[end:]
    if end > len(data) or len(padding_bytes) >= 8 or any(padding_bytes):
        raise ValueError("unwrapped data is not one DER PrivateKeyInfo")
    return data[:end]


# --- sealing secrets with a token-resident key --------------------------------------------

KEK_LABEL = "hsmca-kek"
KEK_ID = b"hsmca-kek"
_SEAL_VERSION = b"\x01"
_IV_BYTES = 12  # 96-bit IVs, the length SP 800-38D 5.2.1.1 recommends
_TAG_BYTES = 16


def _find_or_create_kek(token: Token, session: Any) -> Any:
    try:
        return token.find_object(session, KEK_ID, ObjectClass.SECRET_KEY)
    except KeyNotFound:
        pass
    session.generate_key(
        KeyType.AES,
        256,
        id=KEK_ID,
        label=KEK_LABEL,
        store=True,
        template={
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
            Attribute.DERIVE: False,
        },
    )
    return token.find_object(session, KEK_ID, ObjectClass.SECRET_KEY)


def ensure_wrapping_key(token: Token) -> None:
    """Create the sealing key if missing; call once before worker processes start."""
    token.run(lambda session: _find_or_create_kek(token, session))


def seal(token: Token, plaintext: bytes, *, context: bytes = b"") -> bytes:
    """Encrypt with the token's AES-256 key (AES-GCM); ``context`` is bound as AAD."""
    iv = os.urandom(_IV_BYTES)
    header = _SEAL_VERSION + iv

    def run(session: Any) -> bytes:
        kek = _find_or_create_kek(token, session)
        params = GCMParams(iv, header + context, _TAG_BYTES * 8)
        return bytes(kek.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params))

    return header + token.run(run)


def unseal(token: Token, blob: bytes, *, context: bytes = b"") -> bytes:
    """Decrypt and authenticate a blob made by :func:`seal` with the same ``context``."""
    if len(blob) < 1 + _IV_BYTES + _TAG_BYTES or blob[:1] != _SEAL_VERSION:
        raise SealedDataInvalid("sealed blob is malformed or of an unknown version")
    header, body = blob[: 1 + _IV_BYTES], blob[1 + _IV_BYTES :]

    def run(session: Any) -> bytes:
        try:
            kek = token.find_object(session, KEK_ID, ObjectClass.SECRET_KEY)
        except KeyNotFound as e:
            raise SealedDataInvalid(f"token {token.label!r} holds no sealing key") from e
        params = GCMParams(header[1:], header + context, _TAG_BYTES * 8)
        try:
            return bytes(kek.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=params))
        except (
            pkcs11.exceptions.EncryptedDataInvalid,
            pkcs11.exceptions.EncryptedDataLenRange,
            # SoftHSM 2.6 reports a GCM tag mismatch as CKR_GENERAL_ERROR (measured).
            pkcs11.exceptions.GeneralError,
            pkcs11.exceptions.FunctionFailed,
        ) as e:
            raise SealedDataInvalid(
                f"sealed blob failed authentication ({return_code_name(e)})"
            ) from e

    return token.run(run)


# The names the storage layer uses for SM2 software keys.
wrap_secret = seal
unwrap_secret = unseal

__all__ = [
    "AES_KEY_WRAP_PAD",
    "KEK_LABEL",
    "RSAES_OAEP_SHA1",
    "RSAES_OAEP_SHA256",
    "InvalidRecipientKey",
    "SealedDataInvalid",
    "TokenRefusedExport",
    "WrappedExport",
    "ensure_wrapping_key",
    "export_private_key",
    "key_spec_of",
    "return_code_name",
    "seal",
    "unseal",
    "unwrap_export",
    "unwrap_secret",
    "wrap_secret",
]
