"""Misspelled enumerated values get a hint naming the value meant (table-driven)."""

from __future__ import annotations

import pytest

from service.errors import InvalidArgument
from service.hints import spelling_hint
from service.kms.algorithms import (
    KeySpec,
    parse_key_spec,
    parse_message_type,
    parse_protection_level,
    parse_sign_algorithm,
)
from service.pki.algorithms import parse_algorithm


@pytest.mark.parametrize(("value", "hint"), [
    ("EC_P256", "unknown algorithm 'EC_P256'; the Private CA uses ECC_256"),
    ("EC_SM2", "unknown algorithm 'EC_SM2'; the Private CA uses SM2_256"),
    ("ecc_256", "unknown algorithm 'ecc_256'; did you mean ECC_256?"),
    ("RSA2048", "unknown algorithm 'RSA2048'; did you mean RSA_2048?"),
    ("P-256", "unknown algorithm 'P-256' (valid values:"),
])
def test_private_ca_algorithm_hints(value: str, hint: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_algorithm(value)
    assert e.value.message.startswith(hint), e.value.message
    assert "valid values: RSA_1024, RSA_2048" in e.value.message
    assert e.value.reason == "InvalidParameter.Algorithm"


@pytest.mark.parametrize(("parse", "value", "hint"), [
    (parse_key_spec, "ECC_256", "KeySpec 'ECC_256' is not supported; KMS uses EC_P256;"),
    (parse_key_spec, "SM2_256", "KeySpec 'SM2_256' is not supported; KMS uses EC_SM2;"),
    (parse_key_spec, "ec_p256", "KeySpec 'ec_p256' is not supported; did you mean EC_P256?"),
    (parse_protection_level, "hsm", "ProtectionLevel 'hsm' is not supported; did you mean HSM?"),
    (parse_message_type, "DIGST", "MessageType 'DIGST' is not supported; did you mean DIGEST?"),
    (parse_key_spec, "ED25519", "KeySpec 'ED25519' is not supported; valid values:"),
])
def test_kms_hints(parse: object, value: str, hint: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse(value)  # type: ignore[operator]
    assert e.value.message.startswith(hint), e.value.message


def test_sign_algorithm_hint_names_the_allowed_spelling() -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_sign_algorithm(KeySpec.EC_P256, "ECDSA_SHA256")
    assert "did you mean ECDSA_SHA_256?" in e.value.message


def test_no_hint_for_a_value_nothing_like_any() -> None:
    assert spelling_hint("banana", ["ECC_256", "RSA_2048"]) == ""


def test_private_ca_name_types_and_usages_get_hints() -> None:
    from service.pki.names import parse_extended_key_usages, parse_san

    with pytest.raises(InvalidArgument) as e:
        parse_san("dnsname", "a.example.com")
    assert "did you mean dNSName?" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        parse_extended_key_usages(["server_auth"])
    assert "did you mean serverAuth?" in e.value.message
