"""SM2 on the SOFTWARE path, checked against the OpenSSL 3 command line (an independent SM2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from asn1crypto import core, keys
from kms_test_support import openssl

from service.errors import InvalidArgument
from service.kms import sm2
from service.kms.csr import build_csr
from service.kms.dn import parse_subject
from service.kms.sm2 import (
    DEFAULT_DISTINGUISHING_ID,
    SM2_CURVE_OID,
    Sm2Signer,
    generate_sm2_private_key,
    sm2_compute_e,
    sm2_decrypt,
    sm2_encrypt,
    sm2_public_key_info,
    sm2_sign,
    sm2_sign_digest,
    sm2_verify,
)
from service.pki.signer import SignatureAlgorithm

DISTID = "distid:" + DEFAULT_DISTINGUISHING_ID.decode()
MESSAGE = b"CertificatePrivateKeySign over SM2 " * 20


@pytest.fixture(scope="module")
def private_pkcs8() -> bytes:
    return generate_sm2_private_key()


@pytest.fixture(scope="module")
def spki(private_pkcs8: bytes) -> bytes:
    return sm2_public_key_info(private_pkcs8)


@pytest.fixture()
def keydir(tmp_path: Path, private_pkcs8: bytes, spki: bytes) -> Path:
    (tmp_path / "key.der").write_bytes(private_pkcs8)
    (tmp_path / "pub.der").write_bytes(spki)
    openssl("pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem", cwd=tmp_path)
    openssl("pkey", "-inform", "DER", "-in", "key.der", "-out", "key.pem", cwd=tmp_path)
    (tmp_path / "msg").write_bytes(MESSAGE)
    return tmp_path


def _openssl_verifies_message(directory: Path, signature: bytes) -> None:
    (directory / "sig").write_bytes(signature)
    pkeyutl = openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-in",
        "msg",
        "-sigfile",
        "sig",
        cwd=directory,
    )
    assert "Signature Verified Successfully" in pkeyutl.stdout
    dgst = openssl(
        "dgst",
        "-sm3",
        "-verify",
        "pub.pem",
        "-sigopt",
        DISTID,
        "-signature",
        "sig",
        "msg",
        cwd=directory,
    )
    assert "Verified OK" in dgst.stdout


def test_key_encoding(private_pkcs8: bytes, spki: bytes) -> None:
    info = keys.PublicKeyInfo.load(spki)
    assert info["algorithm"]["algorithm"].dotted == "1.2.840.10045.2.1"  # id-ecPublicKey
    assert info["algorithm"]["parameters"].chosen.dotted == SM2_CURVE_OID
    assert len(info["public_key"].native) == 65  # uncompressed point
    private = keys.PrivateKeyInfo.load(private_pkcs8)
    assert private["private_key_algorithm"]["parameters"].chosen.dotted == SM2_CURVE_OID


def test_openssl_reads_the_keys(keydir: Path) -> None:
    shown = openssl("pkey", "-in", "key.pem", "-noout", "-text", cwd=keydir)
    assert "ASN1 OID: SM2" in shown.stdout


def test_message_signature_verifies_with_openssl(private_pkcs8: bytes, keydir: Path) -> None:
    _openssl_verifies_message(keydir, Sm2Signer(private_pkcs8).sign(MESSAGE))


def test_signature_needs_the_default_id(private_pkcs8: bytes, keydir: Path) -> None:
    """OpenSSL 3.0 uses an empty ID unless told: the ID really is part of the signature."""
    (keydir / "sig").write_bytes(sm2_sign(private_pkcs8, MESSAGE))
    result = openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-rawin",
        "-digest",
        "sm3",
        "-in",
        "msg",
        "-sigfile",
        "sig",
        cwd=keydir,
        check=False,
    )
    assert result.returncode != 0


def test_digest_signature_verifies_with_openssl(
    private_pkcs8: bytes, spki: bytes, keydir: Path
) -> None:
    """Our Z_A and e (GB/T 32918.2 5.5, 6.1) match OpenSSL's: it verifies over the message."""
    e = sm2_compute_e(spki, MESSAGE)
    signature = sm2_sign_digest(private_pkcs8, e)
    _openssl_verifies_message(keydir, signature)
    # And OpenSSL's pkeyutl without -rawin takes the 32-byte e itself.
    (keydir / "e").write_bytes(e)
    result = openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-in",
        "e",
        "-sigfile",
        "sig",
        cwd=keydir,
    )
    assert "Signature Verified Successfully" in result.stdout


def test_openssl_signature_verifies_here(spki: bytes, keydir: Path) -> None:
    openssl(
        "pkeyutl",
        "-sign",
        "-inkey",
        "key.pem",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-in",
        "msg",
        "-out",
        "sig",
        cwd=keydir,
    )
    signature = (keydir / "sig").read_bytes()
    assert sm2_verify(spki, MESSAGE, signature, digest=False)
    assert sm2_verify(spki, sm2_compute_e(spki, MESSAGE), signature, digest=True)


def test_verify_table(private_pkcs8: bytes, spki: bytes) -> None:
    signature = sm2_sign(private_pkcs8, MESSAGE)
    e = sm2_compute_e(spki, MESSAGE)
    other_spki = sm2_public_key_info(generate_sm2_private_key())
    flipped = signature[:-1] + bytes([signature[-1] ^ 1])
    cases = [
        (spki, MESSAGE, signature, False, True),
        (spki, e, signature, True, True),
        (spki, MESSAGE + b"x", signature, False, False),
        (spki, bytes(32), signature, True, False),
        (other_spki, MESSAGE, signature, False, False),
        (spki, MESSAGE, flipped, False, False),
        (spki, MESSAGE, b"", False, False),
        (spki, MESSAGE, b"junk", False, False),
        (spki, e, b"\x30\x00", True, False),
        (spki, MESSAGE, signature + b"\x00", False, False),  # trailing data: not DER
    ]
    for key, data, sig, digest, expected in cases:
        assert sm2_verify(key, data, sig, digest=digest) is expected


def test_digest_mode_wants_32_bytes(private_pkcs8: bytes, spki: bytes) -> None:
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(InvalidArgument) as caught:
            sm2_sign_digest(private_pkcs8, bad)
        assert caught.value.reason == "InvalidParameter.Message"
        with pytest.raises(InvalidArgument):
            sm2_verify(spki, bad, b"\x30\x06\x02\x01\x01\x02\x01\x01", digest=True)


def test_signer_protocol(private_pkcs8: bytes, spki: bytes) -> None:
    signer = Sm2Signer(private_pkcs8)
    assert signer.algorithm is SignatureAlgorithm.SM3_SM2
    assert signer.public_key_info == spki
    assert private_pkcs8.hex()[-64:] not in repr(signer)


def test_signer_refuses_other_keys() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="not an SM2 key"):
        Sm2Signer(p256)
    with pytest.raises(ValueError, match="PKCS#8"):
        Sm2Signer(b"not a key")
    with pytest.raises(ValueError, match="not an SM2 public key"):
        sm2_verify(
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            b"m",
            b"s",
            digest=False,
        )


def test_encryption_round_trip_and_openssl_decrypts(
    private_pkcs8: bytes, spki: bytes, keydir: Path
) -> None:
    for plaintext in (b"x", b"secret data", bytes(range(256)) * 23):
        ciphertext = sm2_encrypt(spki, plaintext)
        assert sm2_decrypt(private_pkcs8, ciphertext) == plaintext
        (keydir / "ct").write_bytes(ciphertext)
        openssl("pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "ct", "-out", "pt", cwd=keydir)
        assert (keydir / "pt").read_bytes() == plaintext
    # C1C3C2 as GM/T 0009: SEQUENCE { INTEGER x, INTEGER y, OCTET STRING C3, OCTET STRING C2 }
    fields = core.Sequence.load((keydir / "ct").read_bytes())
    assert [type(fields[i]) for i in range(4)] == [core.Integer, core.Integer] + [
        core.OctetString
    ] * 2
    assert len(fields[2].native) == 32  # C3 = SM3(x2 || M || y2)
    assert len(fields[3].native) == len(plaintext)


def _all_zero_mask_ciphertext(spki: bytes, plaintext: bytes) -> bytes:
    """A ciphertext whose KDF mask t is all zeros, so C2 is the plaintext: Tongsuo makes one
    in 256 one-byte encryptions."""
    assert len(plaintext) == 1
    for _ in range(20_000):  # ~256 expected; all fail with probability ~e**-78
        ciphertext = sm2._encrypt_once(spki, plaintext)
        if core.Sequence.load(ciphertext)[3].native == plaintext:
            return ciphertext
    pytest.fail("no all-zero mask in 20000 one-byte encryptions")


def test_an_all_zero_mask_ciphertext_is_refused_here_as_by_openssl(
    private_pkcs8: bytes, spki: bytes, keydir: Path
) -> None:
    # GB/T 32918.4 B4: a t of all zeros is an error (OpenSSL 3 checks; Tongsuo does not).
    ciphertext = _all_zero_mask_ciphertext(spki, b"x")
    with pytest.raises(InvalidArgument) as caught:
        sm2_decrypt(private_pkcs8, ciphertext)
    assert caught.value.reason == "InvalidParameter.CiphertextBlob"
    (keydir / "ct").write_bytes(ciphertext)
    refused = subprocess.run(
        ["openssl", "pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "ct", "-out", "pt"],
        cwd=keydir, capture_output=True, check=False)
    assert refused.returncode != 0


def test_encrypt_draws_a_new_k_when_the_mask_is_all_zeros(
    private_pkcs8: bytes, spki: bytes, keydir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GB/T 32918.4 A5: such an encryption carries the plaintext in clear; it is made again.
    # A real one-byte encryption has an all-zero mask once in 256 draws: take one that has not.
    real = next(ct for ct in iter(lambda: sm2._encrypt_once(spki, b"x"), None)
                if core.Sequence.load(ct)[3].native != b"x")
    draws = [_all_zero_mask_ciphertext(spki, b"x"), real]
    calls: list[bytes] = []

    def once(public_key_info: bytes, plaintext: bytes) -> bytes:
        calls.append(plaintext)
        return draws[len(calls) - 1]

    monkeypatch.setattr(sm2, "_encrypt_once", once)
    ciphertext = sm2_encrypt(spki, b"x")
    assert calls == [b"x", b"x"]
    assert ciphertext == draws[1]
    assert core.Sequence.load(ciphertext)[3].native != b"x"
    (keydir / "ct").write_bytes(ciphertext)
    openssl("pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "ct", "-out", "pt", cwd=keydir)
    assert (keydir / "pt").read_bytes() == b"x"


def test_openssl_ciphertext_decrypts_here(private_pkcs8: bytes, keydir: Path) -> None:
    (keydir / "pt").write_bytes(b"from the openssl command line")
    openssl(
        "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "pt", "-out", "ct", cwd=keydir
    )
    assert (
        sm2_decrypt(private_pkcs8, (keydir / "ct").read_bytes()) == b"from the openssl command line"
    )


def test_decrypt_rejects_bad_ciphertexts(private_pkcs8: bytes, spki: bytes) -> None:
    ciphertext = sm2_encrypt(spki, b"secret")
    other = sm2_encrypt(sm2_public_key_info(generate_sm2_private_key()), b"secret")
    for bad in (b"", b"junk", ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), other):
        with pytest.raises(InvalidArgument) as caught:
            sm2_decrypt(private_pkcs8, bad)
        assert caught.value.reason == "InvalidParameter.CiphertextBlob"


def test_encrypt_rejects_empty(spki: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        sm2_encrypt(spki, b"")
    assert caught.value.reason == "InvalidParameter.Plaintext"


def test_sm2_csr_verifies_with_openssl(private_pkcs8: bytes, tmp_path: Path) -> None:
    dn = "CN=userName,OU=kms,O=aliyun,C=CN"
    text = build_csr(parse_subject(dn), ["test1.example.com"], Sm2Signer(private_pkcs8))
    (tmp_path / "req.pem").write_text(text)
    result = openssl("req", "-in", "req.pem", "-verify", "-noout", "-vfyopt", DISTID, cwd=tmp_path)
    assert "verify OK" in result.stdout + result.stderr
    shown = openssl("req", "-in", "req.pem", "-noout", "-text", "-nameopt", "RFC2253", cwd=tmp_path)
    assert f"Subject: {dn}" in shown.stdout
    assert "Signature Algorithm: SM2-with-SM3" in shown.stdout
    assert "DNS:test1.example.com" in shown.stdout
