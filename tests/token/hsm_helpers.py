"""Helpers shared by the token tests: fresh key ids, verification with cryptography."""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from hsm.signing import SignMechanism

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def new_key_id() -> bytes:
    """A random CKA_ID so tests never collide."""
    return os.urandom(16)


def verify(spki_der: bytes, mechanism: SignMechanism, data: bytes, signature: bytes) -> None:
    """Verify a token signature over ``data`` with cryptography; raises InvalidSignature."""
    public = serialization.load_der_public_key(spki_der)
    hash_ = _HASHES[mechanism.hash_name]
    if isinstance(public, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding
        if mechanism is SignMechanism.RSA_PSS_SHA256:
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        else:
            pad = padding.PKCS1v15()
        public.verify(signature, data, pad, hash_)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hash_))
    else:
        raise TypeError(type(public))


def verify_digest(spki_der: bytes, mechanism: SignMechanism, data: bytes, signature: bytes) -> None:
    """Verify a sign_digest signature using a prehashed verification."""
    public = serialization.load_der_public_key(spki_der)
    hash_ = _HASHES[mechanism.hash_name]
    digest = hashlib.new(mechanism.hash_name, data).digest()
    if isinstance(public, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding
        if mechanism is SignMechanism.RSA_PSS_SHA256:
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        else:
            pad = padding.PKCS1v15()
        public.verify(signature, digest, pad, utils.Prehashed(hash_))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hash_)))
    else:
        raise TypeError(type(public))
