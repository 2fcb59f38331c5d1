"""Hostile requests to the Private CA: each is refused with a reason and changes nothing.

Every case here ended INTERNAL, was issued (a certificate pkilint rejects), or was stored
without bound before: empty or repeated-type RDNs, control and bidi characters copied from a
CSR, numbers with thousands of digits, wildcard abuse, invalid IDNA A-labels, script URIs,
a client certificate that names nobody, RSA-1024 keys the service would create, and inputs
of a megabyte echoed in the error message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from asn1crypto import csr as acsr
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pca_support import Hierarchy, Pca, make_csr, new_key, snapshot

from service.gen.hsmca.v1 import common_pb2
from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.rpc.client import error_info


def _atv(oid: str, value: str) -> ax509.NameTypeAndValue:
    return ax509.NameTypeAndValue({"type": oid, "value": ax509.DirectoryString(
        name="utf8_string", value=value)})


def raw_csr(rdns: list[list[tuple[str, str]]], sans: list[ax509.GeneralName] | None = None
            ) -> str:
    """A CSR whose subject is exactly ``rdns`` (empty and multi-valued RDNs allowed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    name = ax509.Name(name="", value=ax509.RDNSequence(
        [ax509.RelativeDistinguishedName([_atv(o, v) for o, v in rdn]) for rdn in rdns]))
    attributes = []
    if sans:
        attributes.append({"type": "extension_request", "values": [[{
            "extn_id": "subject_alt_name", "critical": False,
            "extn_value": ax509.GeneralNames(sans)}]]})
    info = acsr.CertificationRequestInfo({
        "version": "v1", "subject": name,
        "subject_pk_info": ax509.PublicKeyInfo.load(spki), "attributes": attributes})
    signature = key.sign(info.dump(), ec.ECDSA(hashes.SHA256()))
    req = acsr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"}, "signature": signature})
    from asn1crypto import pem as apem
    return apem.armor("CERTIFICATE REQUEST", req.dump()).decode()


CN = "2.5.4.3"
O = "2.5.4.10"  # noqa: E741


def _custom_csr(csr_text: str, *, immediately: int = 1) -> Callable[[Pca, Hierarchy], Any]:
    def call(pca: Pca, h: Hierarchy) -> Any:
        return pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
            parent_identifier=h.sub_id, csr=csr_text, validity="1d", immediately=immediately))
    return call


def _server_csr(csr_text: str, *, immediately: int = 1, domain: str = "x.example.test"
                ) -> Callable[[Pca, Hierarchy], Any]:
    def call(pca: Pca, h: Hierarchy) -> Any:
        return pca.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
            parent_identifier=h.sub_id, csr=csr_text, days=1, immediately=immediately,
            domain=domain))
    return call


def _server_domain(domain: str) -> Callable[[Pca, Hierarchy], Any]:
    return _server_csr(make_csr(new_key("ECC_256"), "d.example.test"), domain=domain)


def _custom_passthrough(**kw: Any) -> Callable[[Pca, Hierarchy], Any]:
    def call(pca: Pca, h: Hierarchy) -> Any:
        return pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
            parent_identifier=h.sub_id, csr=make_csr(new_key("ECC_256"), "p.example.test"),
            validity="1d", immediately=1, api_passthrough=pb.ApiPassthrough(**kw)))
    return call


def _san(kind: str, value: str) -> pb.ApiPassthrough:
    return {"extensions": pb.Extensions(subject_alternative_names=[
        pb.SubjectAlternativeName(type=kind, value=value)])}  # type: ignore[return-value]


INVALID = grpc.StatusCode.INVALID_ARGUMENT
BIG = 1_000_000

# (id, call(pca, ecc hierarchy), status, reason)
CASES: list[tuple[str, Callable[[Pca, Hierarchy], Any], grpc.StatusCode, str]] = [
    ("empty-rdn-alone", _custom_csr(raw_csr([[]])), INVALID, "InvalidParameter.Csr"),
    ("empty-rdn-with-cn", _custom_csr(raw_csr([[], [(CN, "a")]])), INVALID,
     "InvalidParameter.Csr"),
    ("empty-rdn-async", _custom_csr(raw_csr([[(CN, "a")], []]), immediately=0), INVALID,
     "InvalidParameter.Csr"),
    ("empty-rdn-server", _server_csr(raw_csr([[(CN, "a")], []])), INVALID,
     "InvalidParameter.Csr"),
    ("empty-rdn-server-async", _server_csr(raw_csr([[], [(CN, "a")]]), immediately=0),
     INVALID, "InvalidParameter.Csr"),
    ("rdn-same-type-twice", _custom_csr(raw_csr([[(O, "a"), (O, "b")], [(CN, "c")]])),
     INVALID, "InvalidParameter.Subject"),
    # A subject has at most one CN (the one authorization checks): refused with the CSR.
    ("csr-two-cns-one-rdn", _custom_csr(raw_csr([[(CN, "a"), (CN, "b")]])), INVALID,
     "InvalidParameter.Csr"),
    ("csr-two-cns", _custom_csr(raw_csr([[(CN, "evil.example.net")], [(CN, "alice")]])),
     INVALID, "InvalidParameter.Csr"),
    ("csr-two-cns-server", _server_csr(raw_csr([[(CN, "a.example.test")], [(CN, "b")]])),
     INVALID, "InvalidParameter.Csr"),
    ("rdn-same-type-twice-async", _custom_csr(raw_csr([[(O, "a"), (O, "b")], [(CN, "c")]]),
                                              immediately=0),
     INVALID, "InvalidParameter.Subject"),
    ("csr-cn-nul", _custom_csr(raw_csr([[(CN, "a\x00b")]])), INVALID,
     "InvalidParameter.Subject"),
    ("csr-cn-bidi-override", _custom_csr(raw_csr([[(CN, "moc.\u202eelgoog")]])), INVALID,
     "InvalidParameter.Subject"),
    ("csr-o-escape", _custom_csr(raw_csr([[(O, "a\x1bb")], [(CN, "c")]])), INVALID,
     "InvalidParameter.Subject"),
    ("serial-thousands-of-digits",
     _custom_passthrough(serial_number="9" * 5000), INVALID, "InvalidParameter.SerialNumber"),
    ("oid-arc-thousands-of-digits",
     _custom_passthrough(subject=pb.ApiPassthroughSubject(
         common_name="a", custom_attributes=[pb.CustomAttribute(
             object_identifier="2.5." + "9" * 5000, value="x")])),
     INVALID, "InvalidParameter.Subject.CustomAttributes"),
    ("eku-oid-thousands-of-digits",
     _custom_passthrough(extensions=pb.Extensions(extended_key_usages=["1." + "7" * 5000])),
     INVALID, "InvalidParameter.ExtendedKeyUsages"),
    ("wildcard-tld", _server_domain("*.com"), INVALID, "InvalidParameter.Domain"),
    ("wildcard-public-suffix", _server_domain("*.co.uk"), INVALID, "InvalidParameter.Domain"),
    ("wildcard-not-leftmost", _server_domain("a.*.example.com"), INVALID,
     "InvalidParameter.Domain"),
    ("bare-wildcard", _server_domain("*"), INVALID, "InvalidParameter.Domain"),
    ("invalid-a-label", _server_domain("xn--zz.example.com"), INVALID,
     "InvalidParameter.Domain"),
    ("csr-wildcard-public-suffix",
     _custom_csr(raw_csr([[(CN, "w")]], [ax509.GeneralName(
         name="dns_name", value=ax509.DNSName(contents=b"*.co.uk"))])),
     INVALID, "InvalidParameter.Csr"),
    ("csr-invalid-a-label",
     _custom_csr(raw_csr([[(CN, "w")]], [ax509.GeneralName(
         name="dns_name", value=ax509.DNSName(contents=b"xn--zz.example.com"))])),
     INVALID, "InvalidParameter.Csr"),
    ("csr-javascript-uri",
     _custom_csr(raw_csr([[(CN, "w")]], [ax509.GeneralName(
         name="uniform_resource_identifier", value=ax509.URI(contents=b"javascript:alert(1)"))])),
     INVALID, "InvalidParameter.Csr"),
    ("passthrough-data-uri", _custom_passthrough(**_san("uniformResourceIdentifier",
                                                        "data:text/html,x")),
     INVALID, "InvalidParameter.SubjectAlternativeNames"),
    ("client-csr-empty-subject-no-san",
     lambda p, h: p.stub.CreateClientCertificateWithCsr(pb.CreateClientCertificateWithCsrRequest(
         parent_identifier=h.sub_id, csr=raw_csr([]), days=1, immediately=1)),
     INVALID, "InvalidParameter.Subject"),
    ("rsa-1024-root",
     lambda p, h: p.stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
         common_name="weak root", algorithm="RSA_1024", years=1)),
     INVALID, "InvalidParameter.Algorithm"),
    ("huge-validity", _custom_passthrough() if False else (
        lambda p, h: p.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
            parent_identifier=h.sub_id, csr=make_csr(new_key("ECC_256"), "v"),
            validity="\u00e9" * BIG, immediately=1))),
     INVALID, "InvalidParameter.Validity"),
    ("huge-parent-identifier",
     lambda p, h: p.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
         parent_identifier="\u00e9" * BIG, csr=make_csr(new_key("ECC_256"), "v"),
         validity="1d", immediately=1)),
     grpc.StatusCode.NOT_FOUND, "NotFound.ParentIdentifier"),
    ("too-many-tags",
     lambda p, h: p.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
         parent_identifier=h.sub_id, domain="t.example.test", days=1, immediately=1,
         tags=[common_pb2.Tag(key=f"k{i}", value="v") for i in range(21)])),
     INVALID, "InvalidParameter.Tags"),
    ("tag-key-too-long",
     lambda p, h: p.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
         parent_identifier=h.sub_id, domain="t.example.test", days=1, immediately=1,
         tags=[common_pb2.Tag(key="k" * 129, value="v")])),
     INVALID, "InvalidParameter.Tags"),
    ("tag-value-too-long",
     lambda p, h: p.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
         parent_identifier=h.sub_id, domain="t.example.test", days=1, immediately=1,
         tags=[common_pb2.Tag(key="k", value="v" * 257)])),
     INVALID, "InvalidParameter.Tags"),
    ("resource-group-too-long",
     lambda p, h: p.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
         parent_identifier=h.sub_id, domain="t.example.test", days=1, immediately=1,
         resource_group_id="r" * 129)),
     INVALID, "InvalidParameter.ResourceGroupId"),
    ("custom-identifier-too-long",
     lambda p, h: p.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
         parent_identifier=h.sub_id, csr=make_csr(new_key("ECC_256"), "v"),
         validity="1d", immediately=1, custom_identifier="c" * 129)),
     INVALID, "InvalidParameter.CustomIdentifier"),
    ("too-many-sans",
     _custom_passthrough(extensions=pb.Extensions(subject_alternative_names=[
         pb.SubjectAlternativeName(type="dNSName", value=f"h{i}.example.test")
         for i in range(101)])),
     INVALID, "InvalidParameter.SubjectAlternativeNames"),
    ("too-many-domains", _server_domain(",".join(f"h{i}.example.test" for i in range(101))),
     INVALID, "InvalidParameter.Domain"),
    ("list-thousand-tag-filters",
     lambda p, h: p.stub.ListClientCertificate(pb.ListClientCertificateRequest(
         tags=[common_pb2.Tag(key=f"k{i}", value="v") for i in range(1000)])),
     INVALID, "InvalidParameter.Tags"),
    ("certificate-over-32-kib",
     _custom_passthrough(subject=pb.ApiPassthroughSubject(
         common_name="a", custom_attributes=[pb.CustomAttribute(
             object_identifier="1.3.6.1.4.1.99999.1", value="v" * 40_000)])),
     INVALID, "InvalidParameter.CertificateSize"),
    ("list-show-size-over-100",
     lambda p, h: p.stub.ListClientCertificate(pb.ListClientCertificateRequest(show_size=101)),
     INVALID, "InvalidParameter.ShowSize"),
]


@pytest.mark.parametrize(("call", "status", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_request_refused(pca: Pca, ecc_ca: Hierarchy, hsm_token: Any,
                                 software_token: Any, call: Callable[[Pca, Hierarchy], Any],
                                 status: grpc.StatusCode, reason: str) -> None:
    before = snapshot(pca, (hsm_token, software_token))
    with pytest.raises(grpc.RpcError) as info:
        call(pca, ecc_ca)
    assert error_info(info.value) == (status, reason), info.value.details()
    assert len(info.value.details()) < 4096
    assert snapshot(pca, (hsm_token, software_token)) == before
