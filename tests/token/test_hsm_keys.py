"""Key generation on real tokens (SoftHSM and opencryptoki): attributes prove non-exportability.

Tests taking ``any_token`` run once per token implementation; key types a token cannot
generate are skipped with the token's own reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hsm_helpers import new_key_id
from token_kinds import require_keygen

from hsm.errors import KeyExists, MechanismUnavailable
from hsm.keys import (
    KeySpec,
    KeyUsage,
    destroy_key,
    generate_key_pair,
    key_exists,
    read_key_attributes,
)

SPECS = [s for s in KeySpec if s is not KeySpec.EC_SM2]


@pytest.fixture
def made(hsm_token: Any) -> Iterator[list[bytes]]:
    """Key ids to destroy after the test."""
    ids: list[bytes] = []
    yield ids
    for key_id in ids:
        destroy_key(hsm_token, key_id)


@pytest.fixture
def made_on(any_token: Any) -> Iterator[list[bytes]]:
    """Key ids to destroy from ``any_token`` after the test."""
    ids: list[bytes] = []
    yield ids
    for key_id in ids:
        destroy_key(any_token, key_id)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.value)
def test_non_exportable_key_attributes(
    any_token: Any, made_on: list[bytes], spec: KeySpec
) -> None:
    require_keygen(any_token, spec)
    key_id = new_key_id()
    made_on.append(key_id)
    key = generate_key_pair(any_token, spec, key_id=key_id, label=key_id.hex(), exportable=False)
    a = read_key_attributes(any_token, key_id)
    assert a == key.attributes
    assert (a.token, a.private, a.sensitive) == (True, True, True)
    assert a.extractable is False
    assert (a.local, a.always_sensitive, a.never_extractable) == (True, True, True)
    assert a.proves_non_exportable
    # Only the usage asked for.
    assert (a.sign, a.decrypt, a.unwrap, a.derive) == (True, False, False, False)
    public = serialization.load_der_public_key(key.public_key_info)
    assert public.key_size == (spec.rsa_bits if spec.is_rsa else int(spec.curve[4:7]))


def test_decrypt_usage_only_when_asked(any_token: Any, made_on: list[bytes]) -> None:
    key_id = new_key_id()
    made_on.append(key_id)
    generate_key_pair(
        any_token,
        KeySpec.RSA_2048,
        key_id=key_id,
        label=key_id.hex(),
        exportable=False,
        usage=KeyUsage.SIGN | KeyUsage.DECRYPT,
    )
    a = read_key_attributes(any_token, key_id)
    assert (a.sign, a.decrypt, a.unwrap, a.derive) == (True, True, False, False)
    assert a.proves_non_exportable


def test_sm2_on_softhsm_is_refused_clearly(hsm_token: Any) -> None:
    key_id = new_key_id()
    with pytest.raises(MechanismUnavailable, match="offers no SM2 mechanism"):
        generate_key_pair(hsm_token, KeySpec.EC_SM2, key_id=key_id, label="sm2", exportable=False)
    assert not key_exists(hsm_token, key_id)


def test_never_generates_over_existing_id_or_label(hsm_token: Any, made: list[bytes]) -> None:
    key_id = new_key_id()
    made.append(key_id)
    label = f"dup-{key_id.hex()}"
    generate_key_pair(hsm_token, KeySpec.EC_P256, key_id=key_id, label=label, exportable=False)
    with pytest.raises(KeyExists, match=key_id.hex()):
        generate_key_pair(
            hsm_token, KeySpec.EC_P256, key_id=key_id, label="other", exportable=False
        )
    other_id = new_key_id()
    with pytest.raises(KeyExists, match=label):
        generate_key_pair(
            hsm_token, KeySpec.EC_P256, key_id=other_id, label=label, exportable=False
        )
    assert not key_exists(hsm_token, other_id)
    assert destroy_key(hsm_token, key_id) == 2  # exactly one pair: nothing was added
    made.clear()
