"""Key generation in the token with explicit attribute templates, public keys, destruction.

Invariant 1 (docs/architecture.md): a non-exportable key is generated in the token with CKA_TOKEN,
CKA_PRIVATE, CKA_SENSITIVE true and CKA_EXTRACTABLE false, and after generation CKA_LOCAL,
CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE must read back true; otherwise the key pair
is destroyed and the call fails. Private keys get only the usages asked for.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from hsm.errors import KeyAttributeViolation, KeyExists, MechanismUnavailable
from hsm.token import Token


class KeySpec(enum.Enum):
    """Key types the token layer generates."""

    RSA_1024 = "RSA_1024"
    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"
    EC_P256 = "EC_P256"
    EC_P384 = "EC_P384"
    EC_P521 = "EC_P521"
    EC_SM2 = "EC_SM2"

    @property
    def is_rsa(self) -> bool:
        """True for RSA key specs."""
        return self.value.startswith("RSA_")

    @property
    def rsa_bits(self) -> int:
        """Modulus length of an RSA spec."""
        if not self.is_rsa:
            raise ValueError(f"{self.value} is not RSA")
        return int(self.value.split("_")[1])

    @property
    def curve(self) -> str:
        """asn1crypto / SEC 2 named curve of an EC spec."""
        return _CURVES[self]


_CURVES = {
    KeySpec.EC_P256: "secp256r1",
    KeySpec.EC_P384: "secp384r1",
    KeySpec.EC_P521: "secp521r1",
    KeySpec.EC_SM2: "1.2.156.10197.1.301",
}


class KeyUsage(enum.Flag):
    """What a private key may do; nothing else is enabled in its template."""

    SIGN = enum.auto()
    DECRYPT = enum.auto()


@dataclasses.dataclass(frozen=True)
class KeyAttributes:
    """The security attributes of a private key as the token reports them."""

    token: bool
    private: bool
    sensitive: bool
    extractable: bool
    local: bool
    always_sensitive: bool
    never_extractable: bool
    sign: bool
    decrypt: bool
    unwrap: bool
    derive: bool

    @property
    def proves_non_exportable(self) -> bool:
        """True when the token itself vouches the key never left it in plaintext."""
        return (
            self.token
            and self.private
            and self.sensitive
            and not self.extractable
            and self.local
            and self.always_sensitive
            and self.never_extractable
        )


@dataclasses.dataclass(frozen=True)
class GeneratedKey:
    """A key pair in the token: addressed by CKA_ID, public half as SPKI DER."""

    token_label: str
    key_id: bytes
    label: str
    spec: KeySpec
    exportable: bool
    public_key_info: bytes
    attributes: KeyAttributes


def _sm2_mechanisms(token: Token) -> bool:
    # PKCS#11 3.x defines no SM2 mechanism; vendors that support SM2 advertise
    # vendor-defined ones (>= CKM_VENDOR_DEFINED). SoftHSM advertises none.
    vendor = 0x80000000  # CKM_VENDOR_DEFINED; python-pkcs11 0.10 names it only _VENDOR_DEFINED
    return any(int(m) >= vendor for m in token.mechanisms())


def _exists(session: Any, key_id: bytes, label: str) -> bool:
    # Consume each search fully: an abandoned search iterator is finalised later, possibly
    # on a session that no longer exists.
    return any(
        list(session.get_objects(attrs))
        for attrs in ({Attribute.ID: key_id}, {Attribute.LABEL: label})
    )


def read_key_attributes(token: Token, key_id: bytes) -> KeyAttributes:
    """Read a private key's security and usage attributes back from the token."""

    def read(session: Any) -> KeyAttributes:
        key = token.find_object(session, key_id, ObjectClass.PRIVATE_KEY)
        return KeyAttributes(
            token=bool(key[Attribute.TOKEN]),
            private=bool(key[Attribute.PRIVATE]),
            sensitive=bool(key[Attribute.SENSITIVE]),
            extractable=bool(key[Attribute.EXTRACTABLE]),
            local=bool(key[Attribute.LOCAL]),
            always_sensitive=bool(key[Attribute.ALWAYS_SENSITIVE]),
            never_extractable=bool(key[Attribute.NEVER_EXTRACTABLE]),
            sign=bool(key[Attribute.SIGN]),
            decrypt=bool(key[Attribute.DECRYPT]),
            unwrap=bool(key[Attribute.UNWRAP]),
            derive=bool(key[Attribute.DERIVE]),
        )

    return token.run(read)


def key_pair_templates(
    *, key_id: bytes, label: str, exportable: bool, usage: KeyUsage = KeyUsage.SIGN
) -> tuple[dict[Attribute, Any], dict[Attribute, Any]]:
    """The (public, private) templates of a key pair: token objects, only ``usage`` enabled."""
    sign = bool(usage & KeyUsage.SIGN)
    decrypt = bool(usage & KeyUsage.DECRYPT)
    common = {Attribute.ID: key_id, Attribute.LABEL: label, Attribute.TOKEN: True}
    private_template = {
        **common,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: exportable,
        Attribute.SIGN: sign,
        Attribute.DECRYPT: decrypt,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    public_template = {
        **common,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: sign,
        Attribute.ENCRYPT: decrypt,
        Attribute.WRAP: False,
    }
    return public_template, private_template


def generate_in_session(
    session: Any,
    spec: KeySpec,
    public_template: dict[Attribute, Any],
    private_template: dict[Attribute, Any],
) -> None:
    """C_GenerateKeyPair of ``spec`` with exactly these templates, nothing checked."""
    if spec.is_rsa:
        session.generate_keypair(
            KeyType.RSA,
            spec.rsa_bits,
            store=True,
            public_template=public_template,
            private_template=private_template,
        )
        return
    params = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)},
        local=True,
    )
    params.generate_keypair(
        store=True,
        public_template=public_template,
        private_template=private_template,
    )


def generate_key_pair(
    token: Token,
    spec: KeySpec,
    *,
    key_id: bytes,
    label: str,
    exportable: bool,
    usage: KeyUsage = KeyUsage.SIGN,
) -> GeneratedKey:
    """Generate a key pair inside the token with an explicit template; verify it after."""
    if spec is KeySpec.EC_SM2 and not _sm2_mechanisms(token):
        raise MechanismUnavailable(
            f"token {token.label!r} offers no SM2 mechanism (SoftHSM has none); "
            "SM2 keys need a token with SM2 support or the SOFTWARE protection level"
        )
    if spec is KeySpec.EC_SM2:
        raise MechanismUnavailable(
            f"token {token.label!r} advertises vendor mechanisms, but hsmca has no mapping "
            "for a vendor SM2 mechanism yet"
        )
    if usage & KeyUsage.DECRYPT and not spec.is_rsa:
        raise MechanismUnavailable(f"{spec.value} keys cannot decrypt in this token layer")

    public_template, private_template = key_pair_templates(
        key_id=key_id, label=label, exportable=exportable, usage=usage
    )
    sign = bool(usage & KeyUsage.SIGN)
    decrypt = bool(usage & KeyUsage.DECRYPT)

    def generate(session: Any) -> None:
        if _exists(session, key_id, label):
            raise KeyExists(
                f"token {token.label!r} already holds an object with id {key_id.hex()} "
                f"or label {label!r}; refusing to generate over it"
            )
        generate_in_session(session, spec, public_template, private_template)

    token.run(generate)
    attributes = read_key_attributes(token, key_id)
    ok = attributes.local and attributes.sensitive and attributes.token and attributes.private
    if not exportable:
        ok = ok and attributes.proves_non_exportable
    if not ok or attributes.sign != sign or attributes.decrypt != decrypt:
        destroy_key(token, key_id)
        raise KeyAttributeViolation(
            f"token {token.label!r} generated key {key_id.hex()} with attributes {attributes}; "
            "they do not match the template, so the key was destroyed"
        )
    return GeneratedKey(
        token_label=token.label,
        key_id=key_id,
        label=label,
        spec=spec,
        exportable=exportable,
        public_key_info=public_key_info(token, key_id),
        attributes=attributes,
    )


def public_key_info(token: Token, key_id: bytes) -> bytes:
    """The key's SubjectPublicKeyInfo (RFC 5280 4.1.2.7), DER."""

    def read(session: Any) -> bytes:
        pub = token.find_object(session, key_id, ObjectClass.PUBLIC_KEY)
        if pub.key_type == KeyType.RSA:
            info = asn1_keys.PublicKeyInfo(
                {
                    # RFC 3279 2.3.1: rsaEncryption parameters MUST be present as NULL
                    # (a Python None would omit them).
                    "algorithm": {"algorithm": "rsa", "parameters": asn1_core.Null()},
                    "public_key": asn1_keys.RSAPublicKey.load(encode_rsa_public_key(pub)),
                }
            )
            return bytes(info.dump())
        return bytes(encode_ec_public_key(pub))

    return token.run(read)


def destroy_key(token: Token, key_id: bytes) -> int:
    """Destroy every object with this CKA_ID; returns how many were destroyed."""

    def destroy(session: Any) -> int:
        objects = list(session.get_objects({Attribute.ID: key_id}))
        for obj in objects:
            obj.destroy()
        return len(objects)

    try:
        return token.run(destroy)
    finally:
        token.forget(key_id)


def key_ids_labelled(token: Token, label: str) -> list[bytes]:
    """The CKA_IDs of the objects labelled ``label`` (each once, in no particular order)."""

    def find(session: Any) -> list[bytes]:
        objects = list(session.get_objects({Attribute.LABEL: label}))
        return list(dict.fromkeys(bytes(obj[Attribute.ID]) for obj in objects))

    return token.run(find)


def key_exists(token: Token, key_id: bytes) -> bool:
    """True if a private key with this CKA_ID is in the token."""

    def find(session: Any) -> bool:
        found = list(
            session.get_objects({Attribute.ID: key_id, Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        )
        return bool(found)

    return token.run(find)


__all__ = [
    "GeneratedKey",
    "KeyAttributes",
    "KeySpec",
    "KeyUsage",
    "destroy_key",
    "generate_in_session",
    "generate_key_pair",
    "key_pair_templates",
    "key_exists",
    "key_ids_labelled",
    "public_key_info",
    "read_key_attributes",
]
