"""CaAlgorithm properties, parse_algorithm, key_family_of_spki, SM OID registration."""

from __future__ import annotations

import pytest
from asn1crypto import algos, keys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from service.errors import InvalidArgument
from service.pki.algorithms import CaAlgorithm, key_family_of_spki, parse_algorithm
from service.pki.signer import SignatureAlgorithm

TABLE = [
    ("RSA_1024", "RSA", 1024, None, SignatureAlgorithm.SHA256_RSA, "RSA_1024"),
    ("RSA_2048", "RSA", 2048, None, SignatureAlgorithm.SHA256_RSA, "RSA_2048"),
    ("RSA_4096", "RSA", 4096, None, SignatureAlgorithm.SHA256_RSA, "RSA_4096"),
    ("ECC_256", "ECC", 256, "secp256r1", SignatureAlgorithm.SHA256_ECDSA, "EC_P256"),
    ("ECC_384", "ECC", 384, "secp384r1", SignatureAlgorithm.SHA384_ECDSA, "EC_P384"),
    ("ECC_512", "ECC", 521, "secp521r1", SignatureAlgorithm.SHA512_ECDSA, "EC_P521"),
    ("SM2_256", "SM2", 256, "sm2p256v1", SignatureAlgorithm.SM3_SM2, "EC_SM2"),
]


@pytest.mark.parametrize(("name", "family", "bits", "curve", "sig", "spec"), TABLE)
def test_algorithm_properties(name, family, bits, curve, sig, spec) -> None:
    alg = parse_algorithm(name)
    assert alg is CaAlgorithm(name)
    assert (alg.family, alg.key_bits, alg.curve) == (family, bits, curve)
    assert alg.signature_algorithm is sig
    assert alg.hsm_key_spec == spec
    assert CaAlgorithm.for_key(family, curve if curve else bits) is alg


@pytest.mark.parametrize("name", ["rsa_2048", "RSA_3072", "ECC_521", "SM2", "", "Ed25519"])
def test_unknown_algorithm(name: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_algorithm(name)
    assert e.value.reason == "InvalidParameter.Algorithm"
    assert f"unknown algorithm {name!r}" in e.value.message
    assert "RSA_2048" in e.value.message and "SM2_256" in e.value.message


def spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_key_family_of_spki() -> None:
    assert key_family_of_spki(spki(rsa.generate_private_key(65537, 2048).public_key())) == (
        "RSA",
        2048,
    )
    assert key_family_of_spki(spki(ec.generate_private_key(ec.SECP384R1()).public_key())) == (
        "ECC",
        "secp384r1",
    )
    from tongsuopy.crypto import serialization as sm_serialization
    from tongsuopy.crypto.asymciphers import ec as sm_ec

    sm2 = (
        sm_ec.generate_private_key(sm_ec.SM2())
        .public_key()
        .public_bytes(
            sm_serialization.Encoding.DER, sm_serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert key_family_of_spki(keys.PublicKeyInfo.load(sm2)) == ("SM2", "sm2p256v1")
    assert CaAlgorithm.for_key("RSA", 3072) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: spki(ed25519.Ed25519PrivateKey.generate().public_key()),
            "unsupported public key algorithm 'ed25519'",
        ),
        (
            lambda: spki(ec.generate_private_key(ec.SECP256K1()).public_key()),
            "unsupported elliptic curve 'secp256k1'",
        ),
        (lambda: b"\x30\x03\x02\x01\x00", "not a well-formed SubjectPublicKeyInfo"),
    ],
)
def test_key_family_of_spki_refused(make, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        key_family_of_spki(make(), reason="InvalidParameter.PublicKey")
    assert e.value.reason == "InvalidParameter.PublicKey"
    assert message in e.value.message


def test_sm_oids_registered_with_asn1crypto() -> None:
    sig = algos.SignedDigestAlgorithm({"algorithm": "sm3_sm2"})
    assert sig["algorithm"].dotted == "1.2.156.10197.1.501"
    assert algos.SignedDigestAlgorithm.load(sig.dump())["algorithm"].native == "sm3_sm2"
    assert algos.DigestAlgorithmId("sm3").dotted == "1.2.156.10197.1.401"
    assert keys.NamedCurve("sm2p256v1").dotted == "1.2.156.10197.1.301"
