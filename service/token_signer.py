"""The Signer of service/pki backed by a private key in a PKCS#11 token."""

from __future__ import annotations

import dataclasses

from hsm.signing import SignMechanism, sign
from hsm.token import Token
from service import metrics
from service.pki.signer import SignatureAlgorithm

# Certificate/CRL/CSR signature algorithm -> the token mechanism that produces it.
MECHANISMS: dict[SignatureAlgorithm, SignMechanism] = {
    SignatureAlgorithm.SHA256_RSA: SignMechanism.RSA_PKCS1_SHA256,
    SignatureAlgorithm.SHA384_RSA: SignMechanism.RSA_PKCS1_SHA384,
    SignatureAlgorithm.SHA512_RSA: SignMechanism.RSA_PKCS1_SHA512,
    SignatureAlgorithm.RSASSA_PSS_SHA256: SignMechanism.RSA_PSS_SHA256,
    SignatureAlgorithm.SHA256_ECDSA: SignMechanism.ECDSA_SHA256,
    SignatureAlgorithm.SHA384_ECDSA: SignMechanism.ECDSA_SHA384,
    SignatureAlgorithm.SHA512_ECDSA: SignMechanism.ECDSA_SHA512,
}


@dataclasses.dataclass(frozen=True)
class TokenSigner:
    """Signs with the token key ``key_id``; ECDSA signatures come back DER-encoded."""

    token: Token
    key_id: bytes
    algorithm: SignatureAlgorithm
    public_key_info: bytes

    def __post_init__(self) -> None:
        if self.algorithm not in MECHANISMS:
            raise ValueError(f"no token mechanism produces {self.algorithm.value}")

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` in the token with the mechanism fixed by ``algorithm``."""
        mechanism = MECHANISMS[self.algorithm]
        with metrics.token_operation("sign", mechanism.value):
            return sign(self.token, self.key_id, mechanism, data)
