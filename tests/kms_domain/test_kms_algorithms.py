"""KMS algorithm enums, the key-spec -> algorithm table and message rules."""

from __future__ import annotations

import pytest

from service.errors import InvalidArgument
from service.kms.algorithms import (
    CSR_SIGNATURE_ALGORITHMS,
    ENCRYPTION_ALGORITHMS,
    SIGN_ALGORITHMS,
    EncryptionAlgorithm,
    KeySpec,
    MessageType,
    SignAlgorithm,
    SignInput,
    check_message,
    check_plaintext,
    parse_encryption_algorithm,
    parse_key_spec,
    parse_message_type,
    parse_protection_level,
    parse_sign_algorithm,
)
from service.pki.signer import SignatureAlgorithm
from service.storage.schema import ProtectionLevel

SIGN_TABLE = [
    # (key spec, algorithm, allowed)
    ("RSA_2048", "RSA_PKCS1_SHA_256", True),
    ("RSA_2048", "RSA_PSS_SHA_256", True),
    ("RSA_2048", "ECDSA_SHA_256", False),
    ("RSA_2048", "SM2DSA", False),
    ("EC_P256", "ECDSA_SHA_256", True),
    ("EC_P256", "RSA_PKCS1_SHA_256", False),
    ("EC_P256", "SM2DSA", False),
    ("EC_SM2", "SM2DSA", True),
    ("EC_SM2", "ECDSA_SHA_256", False),
    ("EC_SM2", "RSA_PSS_SHA_256", False),
    ("RSA_2048", "rsa_pkcs1_sha_256", False),
    ("EC_P256", "", False),
]


@pytest.mark.parametrize(("key_spec", "algorithm", "allowed"), SIGN_TABLE)
def test_sign_algorithm_table(key_spec: str, algorithm: str, allowed: bool) -> None:
    spec = parse_key_spec(key_spec)
    if allowed:
        assert parse_sign_algorithm(spec, algorithm) is SignAlgorithm(algorithm)
        assert SignAlgorithm(algorithm) in SIGN_ALGORITHMS[spec]
    else:
        with pytest.raises(InvalidArgument) as caught:
            parse_sign_algorithm(spec, algorithm)
        assert caught.value.reason == "InvalidParameter.Algorithm"
        assert f"cannot sign with a {key_spec} key" in caught.value.message


ENCRYPT_TABLE = [
    ("RSA_2048", "RSAES_OAEP_SHA_1", True),
    ("RSA_2048", "RSAES_OAEP_SHA_256", True),
    ("RSA_2048", "SM2PKE", False),
    ("EC_SM2", "SM2PKE", True),
    ("EC_SM2", "RSAES_OAEP_SHA_256", False),
    ("EC_P256", "RSAES_OAEP_SHA_1", False),
    ("EC_P256", "SM2PKE", False),
]


@pytest.mark.parametrize(("key_spec", "algorithm", "allowed"), ENCRYPT_TABLE)
def test_encryption_algorithm_table(key_spec: str, algorithm: str, allowed: bool) -> None:
    spec = parse_key_spec(key_spec)
    if allowed:
        assert parse_encryption_algorithm(spec, algorithm) is EncryptionAlgorithm(algorithm)
    else:
        with pytest.raises(InvalidArgument) as caught:
            parse_encryption_algorithm(spec, algorithm)
        assert caught.value.reason == "InvalidParameter.Algorithm"


def test_tables_cover_every_key_spec() -> None:
    assert set(SIGN_ALGORITHMS) == set(KeySpec)
    assert set(ENCRYPTION_ALGORITHMS) == set(KeySpec)
    assert ENCRYPTION_ALGORITHMS[KeySpec.EC_P256] == frozenset()
    assert CSR_SIGNATURE_ALGORITHMS[KeySpec.EC_SM2] is SignatureAlgorithm.SM3_SM2


@pytest.mark.parametrize(
    ("parse", "value", "reason"),
    [
        (parse_key_spec, "RSA_4096", "InvalidParameter.KeySpec"),
        (parse_key_spec, "ec_p256", "InvalidParameter.KeySpec"),
        (parse_protection_level, "TPM", "InvalidParameter.ProtectionLevel"),
        (parse_message_type, "HASH", "InvalidParameter.MessageType"),
    ],
)
def test_unknown_enum_values(parse: object, value: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(value)  # type: ignore[operator]
    assert caught.value.reason == reason
    assert f"'{value}'" in caught.value.message


def test_defaults() -> None:
    assert parse_protection_level(None) is ProtectionLevel.SOFTWARE
    assert parse_protection_level("") is ProtectionLevel.SOFTWARE
    assert parse_protection_level("HSM") is ProtectionLevel.HSM
    assert parse_message_type(None) is MessageType.RAW
    assert parse_message_type("DIGEST") is MessageType.DIGEST


MESSAGE_TABLE = [
    # (message type, algorithm, length, ok)
    (MessageType.RAW, SignAlgorithm.ECDSA_SHA_256, 0, True),
    (MessageType.RAW, SignAlgorithm.ECDSA_SHA_256, 4096, True),
    (MessageType.RAW, SignAlgorithm.RSA_PSS_SHA_256, 4097, False),
    (MessageType.DIGEST, SignAlgorithm.RSA_PKCS1_SHA_256, 32, True),
    (MessageType.DIGEST, SignAlgorithm.RSA_PKCS1_SHA_256, 31, False),
    (MessageType.DIGEST, SignAlgorithm.ECDSA_SHA_256, 48, False),
    (MessageType.DIGEST, SignAlgorithm.SM2DSA, 32, True),
    (MessageType.DIGEST, SignAlgorithm.SM2DSA, 0, False),
]


@pytest.mark.parametrize(("message_type", "algorithm", "length", "ok"), MESSAGE_TABLE)
def test_message_rules(
    message_type: MessageType, algorithm: SignAlgorithm, length: int, ok: bool
) -> None:
    message = bytes(length)
    if ok:
        assert check_message(message, message_type, algorithm) == message
    else:
        with pytest.raises(InvalidArgument) as caught:
            check_message(message, message_type, algorithm)
        assert caught.value.reason == "InvalidParameter.Message"
        assert f"{length} bytes" in caught.value.message


def test_sm2_digest_message_names_e() -> None:
    with pytest.raises(InvalidArgument, match="SM3 value e"):
        check_message(bytes(20), MessageType.DIGEST, SignAlgorithm.SM2DSA)


@pytest.mark.parametrize(
    ("key_spec", "algorithm", "limit"),
    [
        (KeySpec.RSA_2048, EncryptionAlgorithm.RSAES_OAEP_SHA_1, 214),
        (KeySpec.RSA_2048, EncryptionAlgorithm.RSAES_OAEP_SHA_256, 190),
        (KeySpec.EC_SM2, EncryptionAlgorithm.SM2PKE, 6047),
    ],
)
def test_plaintext_limits(key_spec: KeySpec, algorithm: EncryptionAlgorithm, limit: int) -> None:
    assert check_plaintext(key_spec, algorithm, bytes(limit)) == bytes(limit)
    for bad in (b"", bytes(limit + 1)):
        with pytest.raises(InvalidArgument) as caught:
            check_plaintext(key_spec, algorithm, bad)
        assert caught.value.reason == "InvalidParameter.Plaintext"


def test_sign_input() -> None:
    parsed = SignInput.parse(KeySpec.EC_SM2, "SM2DSA", bytes(32), "DIGEST")
    assert parsed == SignInput(KeySpec.EC_SM2, SignAlgorithm.SM2DSA, MessageType.DIGEST, bytes(32))
    with pytest.raises(InvalidArgument) as caught:
        SignInput(KeySpec.EC_P256, SignAlgorithm.SM2DSA, MessageType.RAW, b"m")
    assert caught.value.reason == "InvalidParameter.Algorithm"
    with pytest.raises(InvalidArgument) as caught:
        SignInput.parse(KeySpec.RSA_2048, "RSA_PSS_SHA_256", bytes(4097), None)
    assert caught.value.reason == "InvalidParameter.Message"
