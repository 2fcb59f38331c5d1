"""The fast DER paths of the issuance service equal the asn1crypto encodings they replace."""

from __future__ import annotations

import datetime as dt

from pca_support import Hierarchy, Pca, make_csr, new_key, pem_to_der
from pki_checkers import errors, pkilint_rfc5280, pkilint_serverauth

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.pki.fast_der import cn_rdn_der, general_names_der
from service.pki.names import SanType, SubjectAltName, build_name, san_extension_value
from service.private_ca.plans import leaf_subject_der
from service.private_ca.requests import SubjectFields
from service.storage.repo import CaRow

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_general_names_der_matches_asn1crypto() -> None:
    sans = (SubjectAltName.of(SanType.DNS_NAME, "a.example.test"),
            SubjectAltName.of(SanType.IP_ADDRESS, "10.0.0.1"),
            SubjectAltName.of(SanType.IP_ADDRESS, "2001:db8::1"),
            SubjectAltName.of(SanType.RFC822_NAME, "a@example.test"),
            SubjectAltName.of(SanType.URI, "https://example.test/x"))
    assert general_names_der(sans) == bytes(san_extension_value(sans).dump())


def test_leaf_subject_matches_build_name_with_ca_defaults() -> None:
    ca = CaRow(identifier="x", owner="o", kind="SUB", common_name="sub", subject_der=b"",
               algorithm="ECC_256", key_token="hsm", key_id="00", public_key_info=b"",
               serial="1", not_before=NOW, not_after=NOW, status="ISSUE", created_at=NOW,
               updated_at=NOW, organization="Org", country_code="CN", state="Zhejiang",
               locality="杭州市")
    got = leaf_subject_der(SubjectFields(organization_unit="IT", state="Shanghai"), ca, "h.test")
    want = build_name("h.test", "Org", "IT", "CN", "Shanghai", "杭州市").dump()
    assert got == bytes(want)


def test_cn_fast_encoding_matches_build_name_and_defers_the_rest() -> None:
    import pytest

    from service.errors import InvalidArgument

    def via_build_name(cn: str) -> bytes:
        name = bytes(build_name(cn).dump())
        return name[2:]  # the one RDN inside the short-form SEQUENCE header

    for cn in ("a", "host-1.example.test", "x" * 64, "with inner spaces", "a(b)c=d?*",
               "*.wild.example", "10.0.0.1", "ünïcode.example", "名字"):
        assert cn_rdn_der(cn) == via_build_name(cn), cn
    for bad in ("x" * 65, " lead", "trail ", "tab\there", "del\x7f"):
        with pytest.raises(InvalidArgument):
            cn_rdn_der(bad)


# RFC 5280 4.1.2.4: an attribute's value has the attribute type's syntax. These are not
# DirectoryStrings: (OID, value) -> PrintableString.
TYPED_CUSTOM_ATTRIBUTES = [
    ("1.3.6.1.5.5.7.9.3", "F"),  # gender (RFC 3739)
    ("1.3.6.1.5.5.7.9.4", "US"),  # countryOfCitizenship (RFC 3739)
    ("1.3.6.1.5.5.7.9.5", "DE"),  # countryOfResidence (RFC 3739)
    ("1.3.6.1.4.1.311.60.2.1.3", "CN"),  # jurisdictionCountryName (CA/B EV Guidelines)
    ("2.5.4.20", "+86 571 8888 0000"),  # telephoneNumber (X.520)
]


def _subject_tags(cert_der: bytes) -> dict[str, tuple[int, str]]:
    """{dotted OID: (DER tag of the value, value)} of a certificate's subject."""
    from asn1crypto import x509 as ax509

    from service.pki.builder import read_tlv

    out = {}
    for rdn in ax509.Certificate.load(cert_der)["tbs_certificate"]["subject"].chosen:
        for atv in rdn:
            raw = atv["value"].dump()
            tag, start, end = read_tlv(raw)
            out[atv["type"].dotted] = (tag, raw[start:end].decode())
    return out


def test_custom_attributes_issued_in_their_own_syntax(pca: Pca, ecc_ca: Hierarchy) -> None:
    resp = pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
        parent_identifier=ecc_ca.sub_id, csr=make_csr(new_key("ECC_256"), "ignored"),
        validity="3d", immediately=1, api_passthrough=pb.ApiPassthrough(
            subject=pb.ApiPassthroughSubject(
                common_name="typed.example.test", custom_attributes=[
                    pb.CustomAttribute(object_identifier=oid, value=value)
                    for oid, value in TYPED_CUSTOM_ATTRIBUTES]),
            extensions=pb.Extensions(subject_alternative_names=[
                pb.SubjectAlternativeName(type="dNSName", value="typed.example.test")]))))
    der = pem_to_der(resp.certificate)
    tags = _subject_tags(der)
    for oid, value in TYPED_CUSTOM_ATTRIBUTES:
        assert tags[oid] == (0x13, value), oid  # PrintableString
    assert errors(pkilint_rfc5280(der)) == []
    # jurisdictionCountryName is decoded by pkilint's CA/B linter only: no FATAL (decoding)
    # finding there. Its other findings are CA/B policy a private CA need not follow.
    assert [f for f in pkilint_serverauth(der) if f[0] == "FATAL"] == []


def test_domain_components_and_email_address_issued_clean(pca: Pca, ecc_ca: Hierarchy) -> None:
    # RFC 4519 2.4: one DNS label per domainComponent. The emailAddress is kept in the normal
    # form of the rfc822Name SAN (domain in lower case), so the two are equal octet for octet
    # (RFC 5280 4.1.2.6; pkilint's pkix.subject_email_address_not_in_san compares them so).
    resp = pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
        parent_identifier=ecc_ca.sub_id, csr=make_csr(new_key("ECC_256"), "ignored"),
        validity="3d", immediately=1, api_passthrough=pb.ApiPassthrough(
            subject=pb.ApiPassthroughSubject(common_name="mail user", custom_attributes=[
                pb.CustomAttribute(object_identifier="0.9.2342.19200300.100.1.25",
                                   value="example"),
                pb.CustomAttribute(object_identifier="0.9.2342.19200300.100.1.25",
                                   value="test"),
                pb.CustomAttribute(object_identifier="1.2.840.113549.1.9.1",
                                   value="Ops@Example.TEST")]),
            extensions=pb.Extensions(subject_alternative_names=[
                pb.SubjectAlternativeName(type="rfc822Name", value="Ops@Example.TEST")]))))
    der = pem_to_der(resp.certificate)
    assert _subject_tags(der)["1.2.840.113549.1.9.1"] == (0x16, "Ops@example.test")
    assert errors(pkilint_rfc5280(der)) == []


def test_csr_subject_at_the_upper_bounds_issued_clean(pca: Pca, ecc_ca: Hierarchy) -> None:
    # RFC 5280 Appendix A bounds count characters (X.680 SIZE on a UTF8String): a CN of 64
    # CJK characters is 192 UTF-8 octets and within ub-common-name. cryptography counts
    # octets, hence _validate=False. CreateCustomCertificate copies the subject as is.
    import warnings

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = new_key("ECC_256")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        name = cx509.Name([
            cx509.NameAttribute(NameOID.ORGANIZATION_NAME, "组" * 64, _validate=False),
            cx509.NameAttribute(NameOID.COMMON_NAME, "字" * 64, _validate=False)])
    csr = cx509.CertificateSigningRequestBuilder().subject_name(name).add_extension(
        cx509.SubjectAlternativeName([cx509.DNSName("cjk.example.test")]), critical=False
    ).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    resp = pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
        parent_identifier=ecc_ca.sub_id, csr=csr, validity="3d", immediately=1))
    der = pem_to_der(resp.certificate)
    assert _subject_tags(der)["2.5.4.3"] == (0x0C, "字" * 64)
    assert errors(pkilint_rfc5280(der)) == []
