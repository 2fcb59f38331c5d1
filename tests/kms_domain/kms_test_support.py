"""KMS domain test support: a software Signer and an OpenSSL command-line runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from service.pki.signer import SignatureAlgorithm


class SoftwareSigner:
    """A Signer over a cryptography private key (RSA or EC), for tests only."""

    def __init__(
        self,
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        algorithm: SignatureAlgorithm,
    ) -> None:
        self._key = key
        self._algorithm = algorithm

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    @property
    def public_key_info(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        if self._algorithm is SignatureAlgorithm.RSASSA_PSS_SHA256:
            return self._key.sign(
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def openssl(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the openssl command line in ``cwd``; returns the completed process."""
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result
