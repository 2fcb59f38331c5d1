"""verify.py caches issuer keys by their SPKI DER: every algorithm and refusal as before."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pkib_support import SoftwareSigner, ec_signer, rsa_signer

from service.errors import Internal
from service.pki.builder import SIGNATURE_ALGORITHM_IDENTIFIERS, assemble_certificate
from service.pki.signer import SignatureAlgorithm
from service.pki.verify import verify_certificate, verify_signature

_SIGNERS = {
    SignatureAlgorithm.SHA256_RSA: rsa_signer(SignatureAlgorithm.SHA256_RSA),
    SignatureAlgorithm.RSASSA_PSS_SHA256: rsa_signer(SignatureAlgorithm.RSASSA_PSS_SHA256),
    SignatureAlgorithm.SHA384_ECDSA: ec_signer(ec.SECP384R1(), SignatureAlgorithm.SHA384_ECDSA),
    SignatureAlgorithm.SHA512_ECDSA: ec_signer(ec.SECP521R1(), SignatureAlgorithm.SHA512_ECDSA),
}


def _fake_certificate(signer: SoftwareSigner, tbs_body: bytes = b"\x02\x01\x05") -> bytes:
    # TBS: [0] v3, serial, signature AlgorithmIdentifier; enough for _split_signed.
    alg = SIGNATURE_ALGORITHM_IDENTIFIERS[signer.algorithm]
    content = b"\xa0\x03\x02\x01\x02" + tbs_body + alg
    tbs = bytes((0x30, len(content))) + content
    return assemble_certificate(tbs, alg, signer.sign(tbs))


@pytest.mark.parametrize("algorithm", list(_SIGNERS), ids=lambda a: a.value)
def test_each_algorithm_verifies_repeatedly(algorithm: SignatureAlgorithm) -> None:
    signer = _SIGNERS[algorithm]
    for _ in range(3):  # the later rounds use the cached key
        verify_certificate(_fake_certificate(signer), signer.public_key_info)
    # bytes-like SPKIs work as before
    verify_certificate(_fake_certificate(signer), bytearray(signer.public_key_info))  # type: ignore[arg-type]


def test_wrong_key_refused_after_right_key_cached() -> None:
    signer = _SIGNERS[SignatureAlgorithm.SHA384_ECDSA]
    other = _SIGNERS[SignatureAlgorithm.SHA512_ECDSA]
    cert = _fake_certificate(signer)
    verify_certificate(cert, signer.public_key_info)
    with pytest.raises(Internal, match="does not verify"):
        verify_certificate(cert, other.public_key_info)
    tampered = bytearray(cert)
    tampered[8] ^= 0x01  # inside the TBS (the version)
    with pytest.raises(Internal, match="does not verify"):
        verify_certificate(bytes(tampered), signer.public_key_info)


def test_key_family_mismatch_and_unloadable_key() -> None:
    rsa = _SIGNERS[SignatureAlgorithm.SHA256_RSA]
    ecdsa = _SIGNERS[SignatureAlgorithm.SHA384_ECDSA]
    sig = rsa.sign(b"data")
    assert verify_signature(rsa.public_key_info, SignatureAlgorithm.SHA256_RSA, b"data", sig)
    for _ in range(2):  # the same answers when the keys come from the cache
        assert not verify_signature(ecdsa.public_key_info, SignatureAlgorithm.SHA256_RSA,
                                    b"data", sig)
        assert not verify_signature(rsa.public_key_info, SignatureAlgorithm.SHA384_ECDSA,
                                    b"data", sig)
        assert not verify_signature(b"\x30\x03\x02\x01\x00", SignatureAlgorithm.SHA256_RSA,
                                    b"data", sig)
