"""service.pki.pem: the one PEM encoder against asn1crypto's, and strict decoding.

``encode`` builds asn1crypto's ``pem.armor`` output directly, since it runs on every
issuance; these tests hold it to the library on generated inputs.
"""

from __future__ import annotations

import pytest
from asn1crypto import pem as asn1_pem
from hypothesis import given
from hypothesis import strategies as st

from service.pki import pem

_LABELS = st.sampled_from(["CERTIFICATE", "CERTIFICATE REQUEST", "X509 CRL", "PUBLIC KEY"])
# A DER value is never empty (at least a tag and a length octet).
_DER = st.binary(min_size=1, max_size=4096)


@given(_DER, _LABELS)
def test_encode_is_what_asn1crypto_armors(der: bytes, label: str) -> None:
    assert pem.encode(der, label) == asn1_pem.armor(label, der).decode("ascii")


@given(st.lists(_DER, min_size=1, max_size=4), _LABELS)
def test_blocks_decode_to_what_was_encoded(ders: list[bytes], label: str) -> None:
    text = "".join(pem.encode(der, label) for der in ders)
    assert pem.decode_blocks(text, (label,)) == ders
    # asn1crypto's lax parser agrees on well-formed input.
    assert [der for _, _, der in asn1_pem.unarmor(text.encode("ascii"), multiple=True)] == ders


@pytest.mark.parametrize(("text", "message"), [
    (pem.encode(b"\x30\x00") + "-----BEGIN CERTIFICATE-----\nMAA=\n", "block 2 has no"),
    (pem.encode(b"\x30\x00").replace("END CERTIFICATE", "END X509 CRL"), "ends as 'X509 CRL'"),
    ("junk\n" + pem.encode(b"\x30\x00"), "before the first PEM block"),
    (pem.encode(b"\x30\x00") + "-----END CERTIFICATE-----\n", "trailing data"),
    ("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\nMAA=\n-----END CERTIFICATE-----\n",
     "has headers"),
    ("-----BEGIN CERTIFICATE-----\nMA!=\n-----END CERTIFICATE-----\n", "not valid base64"),
    ("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n", "is empty"),
    (pem.encode(b"\x30\x00", "PRIVATE KEY"), "is a 'PRIVATE KEY'"),
])
def test_what_a_lax_parser_would_skip_is_refused(text: str, message: str) -> None:
    with pytest.raises(pem.PemError, match=message):
        pem.decode_blocks(text, ("CERTIFICATE",))
