"""Every rejection: exact gRPC status and reason, and nothing stored, no key left behind."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from pca_support import Hierarchy, Pca, make_csr, new_key, snapshot

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.rpc.client import error_info

DUP_SERIAL = "987654321987654321"


def _bad_signature_csr() -> str:
    pem_text = make_csr(new_key("ECC_256"), "bad.example.test")
    csr = x509.load_pem_x509_csr(pem_text.encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature's last INTEGER
    import base64
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _server(h: Hierarchy, **kw: Any) -> Callable[[Pca], Any]:
    def call(pca: Pca) -> Any:
        fields: dict[str, Any] = {"parent_identifier": h.sub_id, "days": 30, "immediately": 1,
                                  "domain": "x.example.test"}
        fields.update(kw)
        if "csr" not in fields:
            fields["csr"] = make_csr(new_key(h.algorithm), "x.example.test")
        return pca.stub.CreateServerCertificateWithCsr(
            pb.CreateServerCertificateWithCsrRequest(**fields))
    return call


def _custom(h: Hierarchy, serial: str = "", ekus: tuple[str, ...] = ("serverAuth",),
            ku: pb.KeyUsage | None = None, *, immediately: int = 1,
            criticals: tuple[str, ...] = (), custom_identifier: str = ""
            ) -> Callable[[Pca], Any]:
    def call(pca: Pca) -> Any:
        return pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
            parent_identifier=h.sub_id, csr=make_csr(new_key(h.algorithm), "c.example.test"),
            validity="30d", immediately=immediately, custom_identifier=custom_identifier,
            api_passthrough=pb.ApiPassthrough(
                extensions=pb.Extensions(
                    key_usage=ku if ku is not None else pb.KeyUsage(digital_signature=True),
                    extended_key_usages=list(ekus)),
                criticals=list(criticals), serial_number=serial)))
    return call


def _custom_attribute(h: Hierarchy, oid: str, value: str) -> Callable[[Pca], Any]:
    """CreateCustomCertificate with api_passthrough.subject: a CN and one custom attribute."""
    def call(pca: Pca) -> Any:
        return pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
            parent_identifier=h.sub_id, csr=make_csr(new_key(h.algorithm), "a"),
            validity="1d", immediately=1, api_passthrough=pb.ApiPassthrough(
                subject=pb.ApiPassthroughSubject(common_name="a", custom_attributes=[
                    pb.CustomAttribute(object_identifier=oid, value=value)]))))
    return call


def _csr_subject(h: Hierarchy, *attributes: tuple[x509.ObjectIdentifier, str]
                 ) -> Callable[[Pca], Any]:
    """CreateCustomCertificate copying a CSR subject that cryptography would refuse to build."""
    def call(pca: Pca) -> Any:
        key = new_key(h.algorithm)
        with warnings.catch_warnings():  # cryptography warns of the lengths it was told to allow
            warnings.simplefilter("ignore", UserWarning)
            name = x509.Name([x509.NameAttribute(oid, value, _validate=False)
                              for oid, value in attributes])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).add_extension(
            x509.SubjectAlternativeName([x509.DNSName("csr.example.test")]), critical=False
        ).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
        return pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
            parent_identifier=h.sub_id, csr=csr, validity="1d", immediately=1))
    return call


# (id, call(pca, rsa, ecc, client_only), status, reason)
CASES: list[tuple[str, Callable[..., Any], grpc.StatusCode, str]] = [
    ("bad-csr-signature",
     lambda p, r, e, c: _server(e, csr=_bad_signature_csr())(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Csr"),
    ("trailing-pem-data",
     lambda p, r, e, c: _server(e, csr=make_csr(new_key("ECC_256"), "t.example.test")
                                + "trailing garbage\n")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Csr"),
    ("rsa-1024-csr",
     lambda p, r, e, c: _server(r, csr=make_csr(new_key("RSA_1024"), "w.example.test"))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Csr"),
    ("csr-family-differs-from-ca",
     lambda p, r, e, c: _server(r, csr=make_csr(new_key("ECC_256"), "f.example.test"))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Csr"),
    ("sub-ca-family-mismatch",
     lambda p, r, e, c: p.stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
         parent_identifier=r.root_id, common_name="ecc under rsa", algorithm="ECC_256",
         years=1)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Algorithm"),
    ("sub-ca-beyond-root",
     lambda p, r, e, c: p.stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
         parent_identifier=r.root_id, common_name="too long", algorithm="RSA_2048",
         years=20)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Validity"),
    ("leaf-validity-beyond-ca", lambda p, r, e, c: _server(e, days=None, years=6)(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Validity"),
    ("custom-validity-beyond-ca",
     lambda p, r, e, c: p.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
         parent_identifier=e.sub_id, csr=make_csr(new_key("ECC_256"), "v"), validity="9y",
         immediately=1)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Validity"),
    ("root-issues-leaf",
     lambda p, r, e, c: _server(Hierarchy(e.algorithm, e.root_id, b"", e.root_id, b""))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ParentIdentifier"),
    ("duplicate-custom-serial", lambda p, r, e, c: _custom(e, DUP_SERIAL)(p),
     grpc.StatusCode.ALREADY_EXISTS, "AlreadyExists.SerialNumber"),
    ("unknown-parent",
     lambda p, r, e, c: _server(Hierarchy(e.algorithm, "", b"", "no-such-ca", b""))(p),
     grpc.StatusCode.NOT_FOUND, "NotFound.ParentIdentifier"),
    ("unknown-parent-of-sub-ca",
     lambda p, r, e, c: p.stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
         parent_identifier="no-such-ca", common_name="x", algorithm="ECC_256", years=1)),
     grpc.StatusCode.NOT_FOUND, "NotFound.ParentIdentifier"),
    ("eku-outside-sub-ca-custom", lambda p, r, e, c: _custom(c, ekus=("serverAuth",))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ExtendedKeyUsages"),
    # RFC 5280 4.2.1.3: "only for enciphering" and "only for deciphering" contradict.
    ("ku-encipher-only-and-decipher-only",
     lambda p, r, e, c: _custom(e, ku=pb.KeyUsage(key_agreement=True, encipher_only=True,
                                                  decipher_only=True))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.KeyUsage"),
    ("eku-outside-sub-ca-server", lambda p, r, e, c: _server(c)(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ExtendedKeyUsages"),
    ("unknown-critical",
     lambda p, r, e, c: _custom(e, criticals=("NoSuchExtension",))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Criticals"),
    ("sub-ca-any-eku",
     lambda p, r, e, c: p.stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
         parent_identifier=e.root_id, common_name="any eku", algorithm="ECC_256", years=1,
         extended_key_usages=["serverAuth", "any"])),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ExtendedKeyUsages"),
    # The same refusals when the request would be stored first: as an asynchronous job
    # (immediately = 0, the API default) or under a custom_identifier. Each is checked in
    # full before anything is stored, not left to fail when the job runs.
    ("async-duplicate-custom-serial",
     lambda p, r, e, c: _custom(e, DUP_SERIAL, immediately=0)(p),
     grpc.StatusCode.ALREADY_EXISTS, "AlreadyExists.SerialNumber"),
    ("async-eku-outside-sub-ca-custom",
     lambda p, r, e, c: _custom(c, ekus=("serverAuth",), immediately=0)(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ExtendedKeyUsages"),
    ("async-eku-outside-sub-ca-server", lambda p, r, e, c: _server(c, immediately=0)(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ExtendedKeyUsages"),
    ("async-unknown-critical",
     lambda p, r, e, c: _custom(e, criticals=("NoSuchExtension",), immediately=0)(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Criticals"),
    ("async-system-key-eku-outside-sub-ca",
     lambda p, r, e, c: p.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
         parent_identifier=c.sub_id, domain="k.example.test", days=1, immediately=0)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ExtendedKeyUsages"),
    ("idempotent-unknown-critical",
     lambda p, r, e, c: _custom(e, criticals=("NoSuchExtension",),
                                custom_identifier="rejected-critical")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Criticals"),
    ("idempotent-duplicate-custom-serial",
     lambda p, r, e, c: _custom(e, DUP_SERIAL, custom_identifier="rejected-serial")(p),
     grpc.StatusCode.ALREADY_EXISTS, "AlreadyExists.SerialNumber"),
    ("sm2-ca-on-softhsm",
     lambda p, r, e, c: p.stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
         common_name="sm2 root", algorithm="SM2_256", years=1)),
     grpc.StatusCode.FAILED_PRECONDITION, "UnsupportedOperation.Algorithm"),
    # immediately = 0 / unset is asynchronous issuance; 3 is no documented value.
    ("immediately-out-of-range", lambda p, r, e, c: _server(e, immediately=3)(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Immediately"),
    ("system-key-other-family",
     lambda p, r, e, c: p.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
         parent_identifier=e.sub_id, algorithm="RSA_2048", days=1, immediately=1)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Algorithm"),
    ("no-validity",
     lambda p, r, e, c: p.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
         parent_identifier=e.sub_id, immediately=1)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Validity"),
    ("unknown-protection-level",
     lambda p, r, e, c: p.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
         domain="k.example.test", parent_identifier=e.sub_id, days=7, immediately=1,
         protection_level="TPM")),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ProtectionLevel"),
    ("exportable-hsm-key",
     lambda p, r, e, c: p.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
         domain="k.example.test", parent_identifier=e.sub_id, days=7, immediately=1,
         protection_level="HSM", exportable_private_key=True)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ExportablePrivateKey"),
    ("bad-domain", lambda p, r, e, c: _server(e, domain="bad..example")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Domain"),
    # X.520 / RFC 5280 Appendix A: countryName is an ISO 3166 code ("UK" is not; GB is).
    ("root-country-not-iso-3166",
     lambda p, r, e, c: p.stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
         common_name="uk root", country_code="UK", algorithm="ECC_256", years=1)),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject.Country"),
    ("leaf-country-not-iso-3166", lambda p, r, e, c: _server(e, country="QQ")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject.Country"),
    # RFC 3739 dateOfBirth is a GeneralizedTime, not a string: refused, not UTF8String.
    ("custom-attribute-date-of-birth",
     lambda p, r, e, c: _custom_attribute(e, "1.3.6.1.5.5.7.9.1", "19700101000000Z")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject.CustomAttributes"),
    # RFC 4519 2.4: a domainComponent is one DNS label; emailAddress is an addr-spec.
    ("custom-attribute-dc-not-a-label",
     lambda p, r, e, c: _custom_attribute(e, "0.9.2342.19200300.100.1.25", "exa mple")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject.CustomAttributes"),
    ("custom-attribute-email-not-an-address",
     lambda p, r, e, c: _custom_attribute(e, "1.2.840.113549.1.9.1", "not-an-email")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject.CustomAttributes"),
    # CreateCustomCertificate copies the CSR subject: the lint holds it to RFC 5280
    # Appendix A's SIZE (1..ub-...) bounds (pkilint FATAL otherwise).
    ("csr-subject-cn-100",
     lambda p, r, e, c: _csr_subject(e, (NameOID.COMMON_NAME, "a" * 100))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject"),
    ("csr-subject-o-100",
     lambda p, r, e, c: _csr_subject(e, (NameOID.ORGANIZATION_NAME, "a" * 100),
                                     (NameOID.COMMON_NAME, "x"))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject"),
    ("csr-subject-cn-empty", lambda p, r, e, c: _csr_subject(e, (NameOID.COMMON_NAME, ""))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject"),
    # RFC 5280 4.1.2.6: an e-mail address in the subject also needs an rfc822Name SAN.
    ("subject-email-without-rfc822-san",
     lambda p, r, e, c: _custom_attribute(e, "1.2.840.113549.1.9.1", "ops@example.test")(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject"),
    ("csr-subject-email-without-rfc822-san",
     lambda p, r, e, c: _csr_subject(e, (NameOID.COMMON_NAME, "mail user"),
                                     (NameOID.EMAIL_ADDRESS, "ops@example.test"))(p),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject"),
    ("bad-matter-attribute",
     lambda p, r, e, c: p.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
         parent_identifier=e.sub_id, csr=make_csr(new_key("ECC_256"), "m"), validity="1d",
         immediately=1, api_passthrough=pb.ApiPassthrough(subject=pb.ApiPassthroughSubject(
             common_name="m", custom_attributes=[pb.CustomAttribute(
                 object_identifier="1.3.6.1.4.1.37244.1.1", value="xyz")])))),
     grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Subject.CustomAttributes"),
]


@pytest.fixture(scope="module")
def used_serial(pca: Pca, ecc_ca: Hierarchy) -> str:
    _custom(ecc_ca, DUP_SERIAL)(pca)
    return DUP_SERIAL


@pytest.mark.parametrize(("call", "status", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rejection(pca: Pca, rsa_ca: Hierarchy, ecc_ca: Hierarchy, client_only_ca: Hierarchy,
                   used_serial: str, hsm_token: Any, software_token: Any,
                   call: Callable[..., Any], status: grpc.StatusCode, reason: str) -> None:
    before = snapshot(pca, (hsm_token, software_token))
    with pytest.raises(grpc.RpcError) as info:
        call(pca, rsa_ca, ecc_ca, client_only_ca)
    assert error_info(info.value) == (status, reason), info.value.details()
    assert info.value.details()  # a clear message, not just a code
    # Invariant 5: a rejected request changes nothing, in the database or the tokens.
    assert snapshot(pca, (hsm_token, software_token)) == before
