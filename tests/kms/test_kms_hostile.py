"""Hostile KMS requests: refused with a reason, bounded messages, nothing stored."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from kms_api_support import OpensslCa, rpc_error

from service.gen.hsmca.v1 import common_pb2, kms_pb2

GOOD_SUBJECT = "CN=user,OU=kms,O=hsmca,C=CN"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _request(**overrides: Any) -> Any:
    fields: dict[str, Any] = {"key_spec": "EC_P256", "subject": GOOD_SUBJECT}
    fields.update(overrides)
    return kms_pb2.CreateCertificateRequest(**fields)


CREATE = [
    ("21-tags", _request(tags=[common_pb2.Tag(key=f"k{i}", value="v") for i in range(21)]),
     "InvalidParameter.Tags"),
    ("tag-key-129", _request(tags=[common_pb2.Tag(key="k" * 129, value="v")]),
     "InvalidParameter.Tags"),
    ("tag-value-257", _request(tags=[common_pb2.Tag(key="k", value="v" * 257)]),
     "InvalidParameter.Tags"),
    ("subject-bidi-override", _request(subject="CN=moc.\u202eelgoog,OU=kms,O=hsmca,C=CN"),
     "InvalidParameter.Subject"),
    ("subject-nul", _request(subject="CN=a\\00b,OU=kms,O=hsmca,C=CN"),
     "InvalidParameter.Subject"),
    ("subject-megabyte", _request(subject="CN=" + "\u00e9" * 1_000_000 + ",OU=k,O=h,C=CN"),
     "InvalidParameter.Subject"),
    ("san-wildcard-tld", _request(subject_alternative_names=["*.com"]),
     "InvalidParameter.SubjectAlternativeNames"),
    ("san-invalid-a-label", _request(subject_alternative_names=["xn--zz.example.com"]),
     "InvalidParameter.SubjectAlternativeNames"),
]


@pytest.mark.parametrize(("request_", "reason"), [c[1:] for c in CREATE],
                         ids=[c[0] for c in CREATE])
def test_create_refused(kms: Any, request_: Any, reason: str) -> None:
    before = kms.stub.ListCertificates(kms_pb2.ListCertificatesRequest()).total_count
    assert rpc_error(kms.stub.CreateCertificate, request_) == (INVALID, reason)
    assert kms.stub.ListCertificates(kms_pb2.ListCertificatesRequest()).total_count == before


def test_megabyte_identifier_gets_the_real_reason(kms: Any) -> None:
    """The NOT_FOUND message quotes a short prefix, so the status fits in the metadata."""
    with pytest.raises(grpc.RpcError) as caught:
        kms.stub.GetCertificate(kms_pb2.GetCertificateRequest(certificate_id="x" * 1_000_000))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(caught.value.details()) < 4096


def test_chain_of_eleven_certificates_is_refused(kms: Any, ca: OpensslCa) -> None:
    created = kms.stub.CreateCertificate(_request())
    csr = kms.stub.GetCertificate(
        kms_pb2.GetCertificateRequest(certificate_id=created.certificate_id)).csr
    certificate = ca.issue(csr)
    chain = "".join([ca.chain_pem] * 11)
    request = kms_pb2.UploadCertificateRequest(
        certificate_id=created.certificate_id, certificate=certificate, certificate_chain=chain)
    assert rpc_error(kms.stub.UploadCertificate, request) == (
        INVALID, "InvalidParameter.CertificateChain")
    got = kms.stub.GetCertificate(
        kms_pb2.GetCertificateRequest(certificate_id=created.certificate_id))
    assert got.certificate == ""


def test_oversized_certificate_text_is_refused(kms: Any) -> None:
    created = kms.stub.CreateCertificate(_request())
    request = kms_pb2.UploadCertificateRequest(
        certificate_id=created.certificate_id,
        certificate="-----BEGIN CERTIFICATE-----\n" + "A" * 700_000)
    assert rpc_error(kms.stub.UploadCertificate, request) == (
        INVALID, "InvalidParameter.Certificate")
