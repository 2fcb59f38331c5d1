"""service/pki/fast_der.py against the reference (asn1crypto via build_name) on generated inputs."""

from __future__ import annotations

import random
import string

import pytest

from service.errors import InvalidArgument
from service.pki.builder import read_tlv
from service.pki.fast_der import cn_rdn_der, general_names_der
from service.pki.names import SanType, SubjectAltName, build_name, san_extension_value

SEED = 20261207
ALPHABET = string.ascii_letters + string.digits + " -.*=?()_/:,'+@\t\x7f" + "éü名字"


def _outcome(f: object, cn: str) -> bytes | str:
    try:
        return f(cn)  # type: ignore[operator, no-any-return]
    except InvalidArgument as e:
        return f"refused: {e.reason}"


def _generated_cns(n: int) -> list[str]:
    rng = random.Random(SEED)
    out = []
    for _ in range(n):
        length = rng.choice([0, 1, 2, rng.randint(3, 63), 64, 65, rng.randint(66, 80)])
        out.append("".join(rng.choice(ALPHABET) for _ in range(length)))
    return out


@pytest.mark.parametrize("cn", _generated_cns(400))
def test_cn_rdn_equals_build_name_or_both_refuse(cn: str) -> None:
    def reference(value: str) -> bytes:
        name = bytes(build_name(value).dump())
        _, start, _ = read_tlv(name)  # the one RDN inside the Name SEQUENCE
        return name[start:]

    assert _outcome(cn_rdn_der, cn) == _outcome(reference, cn)


def _generated_sans(n: int) -> list[tuple[SubjectAltName, ...]]:
    rng = random.Random(SEED + 1)
    labels = ["a", "host", "x-1", "example", "test", "b0", "very-long-label-" + "z" * 30]
    out = []
    for _ in range(n):
        sans = []
        for _ in range(rng.randint(1, 6)):
            kind = rng.choice(list(SanType))
            if kind is SanType.DNS_NAME:
                value = ".".join(rng.choice(labels) for _ in range(rng.randint(2, 4)))
            elif kind is SanType.IP_ADDRESS:
                value = (f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                         if rng.random() < 0.5 else f"2001:db8::{rng.randint(1, 0xffff):x}")
            elif kind is SanType.RFC822_NAME:
                value = f"{rng.choice(labels)}@{rng.choice(labels)}.example"
            else:
                value = f"https://{rng.choice(labels)}.example/{rng.randint(0, 999)}"
            sans.append(SubjectAltName.of(kind, value))
        out.append(tuple(sans))
    return out


@pytest.mark.parametrize("sans", _generated_sans(200))
def test_general_names_equal_asn1crypto(sans: tuple[SubjectAltName, ...]) -> None:
    assert general_names_der(sans) == bytes(san_extension_value(sans).dump())


def test_the_generated_inputs_cover_both_paths_and_refusals() -> None:
    cns = _generated_cns(400)
    fast = [cn for cn in cns if cn.isascii() and cn.isprintable() and cn == cn.strip()
            and 0 < len(cn) <= 64]
    refused = [cn for cn in cns if isinstance(_outcome(cn_rdn_der, cn), str)]
    assert len(fast) > 50 and len(refused) > 20 and len(cns) - len(fast) - len(refused) > 20
