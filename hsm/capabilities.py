"""What a token is and what it can do: identity, mechanism list, key generation support.

Tokens differ in their mechanism sets (SoftHSM 2.6 offers EC key generation and
CKM_AES_KEY_WRAP_PAD; opencryptoki 3.8's software token offers neither, nor
CKM_SHA256_RSA_PKCS), so code that must run on any token asks here first instead of
assuming one token's set. The sources are C_GetInfo, C_GetSlotInfo, C_GetTokenInfo,
C_GetMechanismList and C_GetMechanismInfo (PKCS#11 v2.40 5.4).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import pkcs11
from pkcs11 import Mechanism, MechanismFlag

from hsm.keys import KeySpec
from hsm.token import Token

# CKM_VENDOR_DEFINED; python-pkcs11 0.10 names it only _VENDOR_DEFINED.
VENDOR_DEFINED = 0x80000000

_EC_BITS = {KeySpec.EC_P256: 256, KeySpec.EC_P384: 384, KeySpec.EC_P521: 521}

# One mechanism list per Token object: it does not change while a session is open.
_OFFERED: weakref.WeakKeyDictionary[Token, frozenset[int]] = weakref.WeakKeyDictionary()


def _version(value: Any) -> str:
    """A CK_VERSION as python-pkcs11 gives it ((major, minor), bytes or str) -> "2.6"."""
    if isinstance(value, tuple | list) and len(value) == 2:
        return f"{value[0]}.{value[1]}"
    return str(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).rstrip(" \x00")


@dataclasses.dataclass(frozen=True)
class TokenIdentity:
    """Who made the token and the library, and which versions (for an auditor's record)."""

    label: str
    manufacturer: str
    model: str
    serial: str
    hardware_version: str
    firmware_version: str
    slot_description: str
    library_description: str
    library_manufacturer: str
    library_version: str
    cryptoki_version: str


def read_identity(token: Token) -> TokenIdentity:
    """The token's, slot's and module's identity from C_GetTokenInfo/C_GetSlotInfo/C_GetInfo."""

    def read(session: Any) -> TokenIdentity:
        tok = session.token
        lib = pkcs11.lib(token.config.module)  # loaded once per process; this is a lookup
        return TokenIdentity(
            label=_text(tok.label),
            manufacturer=_text(tok.manufacturer_id),
            model=_text(tok.model),
            serial=_text(tok.serial),
            hardware_version=_version(tok.hardware_version),
            firmware_version=_version(tok.firmware_version),
            slot_description=_text(tok.slot.slot_description),
            library_description=_text(lib.library_description),
            library_manufacturer=_text(lib.manufacturer_id),
            library_version=_version(lib.library_version),
            cryptoki_version=_version(lib.cryptoki_version),
        )

    return token.run(read)


def offered(token: Token) -> frozenset[int]:
    """The mechanisms the token's slot lists (C_GetMechanismList), as integers; cached."""
    found = _OFFERED.get(token)
    if found is None:
        found = frozenset(int(m) for m in token.mechanisms())
        _OFFERED[token] = found
    return found


def offers(token: Token, mechanism: Mechanism) -> bool:
    """True if the token lists ``mechanism``."""
    return int(mechanism) in offered(token)


def mechanism_name(mechanism: int) -> str:
    """CKM_ name of a mechanism number (vendor ones in hex)."""
    try:
        return "CKM_" + Mechanism(mechanism).name
    except ValueError:
        return f"CKM_0x{mechanism:08X}"


@dataclasses.dataclass(frozen=True)
class MechanismSupport:
    """C_GetMechanismInfo of one mechanism: flags and key size range (bits or bytes)."""

    mechanism: str
    flags: int
    min_key_length: int
    max_key_length: int

    def has(self, flag: MechanismFlag) -> bool:
        """True if the token sets this CKF_ flag for the mechanism."""
        return bool(self.flags & int(flag))


def mechanism_info(token: Token, mechanism: Mechanism) -> MechanismSupport | None:
    """C_GetMechanismInfo, or None if the mechanism is not listed or the call fails."""
    if not offers(token, mechanism):
        return None

    def read(session: Any) -> MechanismSupport | None:
        try:
            info = session.token.slot.get_mechanism_info(mechanism)
        except pkcs11.exceptions.PKCS11Error:
            return None
        return MechanismSupport(
            mechanism_name(int(mechanism)),
            int(info.flags),
            int(info.min_key_length),
            int(info.max_key_length),
        )

    return token.run(read)


def _rsa_bits(info: MechanismSupport) -> tuple[int, int]:
    # PKCS#11 v2.40 2.1: RSA key sizes are in bits. Some tokens report 0 for "no limit".
    return info.min_key_length, info.max_key_length or 1 << 20


def keygen_skip_reason(token: Token, spec: KeySpec) -> str | None:
    """None if the token says it can generate ``spec`` key pairs, else why not."""
    if spec is KeySpec.EC_SM2:
        vendor = sorted(m for m in offered(token) if m >= VENDOR_DEFINED)
        if not vendor:
            return "PKCS#11 defines no SM2 mechanism and the token lists no vendor mechanism"
        return (
            f"the token lists vendor mechanisms ({', '.join(mechanism_name(m) for m in vendor)}), "
            "but hsmca has no mapping for a vendor SM2 mechanism"
        )
    mechanism = Mechanism.RSA_PKCS_KEY_PAIR_GEN if spec.is_rsa else Mechanism.EC_KEY_PAIR_GEN
    info = mechanism_info(token, mechanism)
    if info is None:
        return f"{mechanism_name(int(mechanism))} is not in the token's mechanism list"
    if not info.has(MechanismFlag.GENERATE_KEY_PAIR):
        return f"{info.mechanism} is listed without CKF_GENERATE_KEY_PAIR"
    if spec.is_rsa:
        low, high = _rsa_bits(info)
        if not low <= spec.rsa_bits <= high:
            return f"{info.mechanism} supports {low}-{high} bit moduli, not {spec.rsa_bits}"
        return None
    bits = _EC_BITS[spec]
    # EC sizes are field sizes in bits; 0 means the token does not say.
    if info.max_key_length and not info.min_key_length <= bits <= info.max_key_length:
        return (
            f"{info.mechanism} supports {info.min_key_length}-{info.max_key_length} bit "
            f"curves, not {bits}"
        )
    return None


__all__ = [
    "MechanismSupport",
    "TokenIdentity",
    "keygen_skip_reason",
    "mechanism_info",
    "mechanism_name",
    "offered",
    "offers",
    "read_identity",
]
