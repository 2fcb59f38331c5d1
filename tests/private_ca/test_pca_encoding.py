"""The fast DER paths of the issuance service equal the asn1crypto encodings they replace."""

from __future__ import annotations

import datetime as dt

from service.pki.names import SanType, SubjectAltName, build_name, san_extension_value
from service.private_ca.requests import SubjectFields
from service.private_ca.service import _general_names_der, _leaf_subject
from service.storage.repo import CaRow

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_general_names_der_matches_asn1crypto() -> None:
    sans = (SubjectAltName.of(SanType.DNS_NAME, "a.example.test"),
            SubjectAltName.of(SanType.IP_ADDRESS, "10.0.0.1"),
            SubjectAltName.of(SanType.IP_ADDRESS, "2001:db8::1"),
            SubjectAltName.of(SanType.RFC822_NAME, "a@example.test"),
            SubjectAltName.of(SanType.URI, "https://example.test/x"))
    assert _general_names_der(sans) == bytes(san_extension_value(sans).dump())


def test_leaf_subject_matches_build_name_with_ca_defaults() -> None:
    ca = CaRow(identifier="x", owner="o", kind="SUB", common_name="sub", subject_der=b"",
               algorithm="ECC_256", key_token="hsm", key_id="00", public_key_info=b"",
               serial="1", not_before=NOW, not_after=NOW, status="ISSUE", created_at=NOW,
               updated_at=NOW, organization="Org", country_code="CN", state="Zhejiang",
               locality="杭州市")
    got = _leaf_subject(SubjectFields(organization_unit="IT", state="Shanghai"), ca, "h.test")
    want = build_name("h.test", "Org", "IT", "CN", "Shanghai", "杭州市").dump()
    assert got == bytes(want)


def test_cn_fast_encoding_matches_build_name_and_defers_the_rest() -> None:
    import pytest

    from service.errors import InvalidArgument
    from service.private_ca.service import _cn_rdn_der

    def via_build_name(cn: str) -> bytes:
        name = bytes(build_name(cn).dump())
        return name[2:]  # the one RDN inside the short-form SEQUENCE header

    for cn in ("a", "host-1.example.test", "x" * 64, "with inner spaces", "a(b)c=d?*",
               "*.wild.example", "10.0.0.1", "ünïcode.example", "名字"):
        assert _cn_rdn_der(cn) == via_build_name(cn), cn
    for bad in ("x" * 65, " lead", "trail ", "tab\there", "del\x7f"):
        with pytest.raises(InvalidArgument):
            _cn_rdn_der(bad)
