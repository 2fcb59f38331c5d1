"""The audit key: a non-exportable P-256 key in the hsm token that signs checkpoints.

Found by a fixed CKA_ID and label. ``hsmca serve`` creates it once before the workers
start (PKCS#11 has no atomic "create if absent"); verification reads only its public half,
from the token, never from the database it checks.
"""

from __future__ import annotations

import dataclasses

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm.errors import KeyExists, KeyNotFound
from hsm.keys import KeySpec, generate_key_pair, key_exists, public_key_info
from hsm.signing import SignMechanism, sign
from hsm.token import Token

__all__ = ["AUDIT_KEY_ALGORITHM", "AUDIT_KEY_ID", "AUDIT_KEY_LABEL", "AuditKey",
           "verify_checkpoint_signature"]

AUDIT_KEY_LABEL = "hsmca-audit"
AUDIT_KEY_ID = b"hsmca-audit"
#: ECDSA over P-256 with SHA-256 (hashed in Python, CKM_ECDSA in the token; DER signature).
AUDIT_KEY_ALGORITHM = "ECDSA_SHA256"


@dataclasses.dataclass(frozen=True)
class AuditKey:
    """The token's audit key: signs a checkpoint record's hash."""

    token: Token
    public_key_info: bytes

    @classmethod
    def ensure(cls, token: Token) -> AuditKey:
        """Find the audit key, generating it (non-exportable, sign only) when missing."""
        if not key_exists(token, AUDIT_KEY_ID):
            try:
                generate_key_pair(token, KeySpec.EC_P256, key_id=AUDIT_KEY_ID,
                                  label=AUDIT_KEY_LABEL, exportable=False)
            except KeyExists:
                pass  # another process made it meanwhile
        return cls(token, public_key_info(token, AUDIT_KEY_ID))

    @classmethod
    def existing(cls, token: Token) -> AuditKey:
        """The audit key; KeyNotFound when the token has none."""
        if not key_exists(token, AUDIT_KEY_ID):
            raise KeyNotFound(f"token {token.label!r} holds no audit key "
                              f"(label {AUDIT_KEY_LABEL!r})")
        return cls(token, public_key_info(token, AUDIT_KEY_ID))

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 signature (DER) over ``data`` by the token."""
        return sign(self.token, AUDIT_KEY_ID, SignMechanism.ECDSA_SHA256, data)


def verify_checkpoint_signature(public_key_info: bytes, data: bytes, signature: bytes) -> bool:
    """True if ``signature`` is the audit key's ECDSA-SHA256 signature over ``data``."""
    key = serialization.load_der_public_key(public_key_info)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
