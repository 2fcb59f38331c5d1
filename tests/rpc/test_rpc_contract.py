"""The wire contract: service and RPC names, message naming, request_id on every response."""

from __future__ import annotations

from typing import Any

import pytest

from service.gen.hsmca.v1 import kms_pb2, private_ca_pb2

PRIVATE_CA_RPCS = [
    "CreateRootCACertificate", "CreateSubCACertificate", "DescribeCACertificate",
    "DescribeCACertificateList", "UpdateCACertificateStatus", "CreateCustomCertificate",
    "CreateServerCertificateWithCsr", "CreateServerCertificate", "CreateClientCertificate",
    "CreateClientCertificateWithCsr", "DescribeClientCertificate",
    "DescribeClientCertificateForSerialNumber", "DescribeClientCertificateStatus",
    "ListClientCertificate", "DescribeCertificatePrivateKey", "CreateRevokeClientCertificate",
    "ListRevokeCertificate", "DeleteClientCertificate",
]
KMS_RPCS = [
    "CreateCertificate", "UploadCertificate", "GetCertificate", "DescribeCertificate",
    "ListCertificates", "UpdateCertificateStatus", "DeleteCertificate",
    "CertificatePrivateKeySign", "CertificatePublicKeyVerify", "CertificatePublicKeyEncrypt",
    "CertificatePrivateKeyDecrypt", "ExportCertificate",
]
SERVICES = [
    (private_ca_pb2.DESCRIPTOR.services_by_name["PrivateCa"], PRIVATE_CA_RPCS),
    (kms_pb2.DESCRIPTOR.services_by_name["KmsCertificates"], KMS_RPCS),
]
METHODS = [m for service, _ in SERVICES for m in service.methods]


@pytest.mark.parametrize(("service", "rpcs"), SERVICES, ids=lambda x: getattr(x, "name", ""))
def test_rpc_names(service: Any, rpcs: list[str]) -> None:
    assert service.full_name.startswith("hsmca.v1.")
    assert sorted(m.name for m in service.methods) == sorted(rpcs)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_messages(method: Any) -> None:
    assert method.input_type.name == f"{method.name}Request"
    assert method.output_type.name == f"{method.name}Response"
    field = method.output_type.fields_by_name["request_id"]
    assert field.type == field.TYPE_STRING


def test_documented_field_names() -> None:
    # Spot checks of the naming rule (docs/architecture.md "API contract").
    req = private_ca_pb2.CreateCustomCertificateRequest()
    req.api_passthrough.extensions.key_usage.digital_signature = True
    req.parent_identifier = "x"
    assert private_ca_pb2.CreateServerCertificateWithCsrResponse(x509_certificate="c",
                                                                 certificate_chain="d")
    # Absence differs from zero/false for these.
    kms = kms_pb2.CreateCertificateRequest()
    assert not kms.HasField("exportable_private_key")
    server = private_ca_pb2.CreateServerCertificateRequest()
    for name in ("years", "months", "days", "before_time", "after_time", "immediately"):
        assert not server.HasField(name)
