"""UploadCertificate accepts SM2 chains signed with OpenSSL 3's default (empty) ID too.

The CAs here are made with the openssl command line: one with `-sigopt distid:...` (GM/T
0015's 1234567812345678), one with OpenSSL's defaults (`openssl x509 -req -sm3` and nothing
else), one with an unrelated ID, which must still be refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from kms_api_support import DISTID, OpensslCa, openssl, rpc_error

from service.gen.hsmca.v1 import kms_pb2


@pytest.fixture(scope="module")
def openssl_default_ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    """SM2 root and intermediate signed with OpenSSL 3's default ID (no -sigopt distid)."""
    return OpensslCa.make(Path(tmp_path_factory.mktemp("sm2-noid-ca")), sm2=True, distid="")


@pytest.fixture(scope="module")
def other_id_ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    """SM2 root and intermediate signed with an ID neither standard nor OpenSSL's default."""
    return OpensslCa.make(Path(tmp_path_factory.mktemp("sm2-alice-ca")), sm2=True,
                          distid="distid:ALICE123@YAHOO.COM")


def _create(kms: Any) -> kms_pb2.CreateCertificateResponse:
    return kms.stub.CreateCertificate(kms_pb2.CreateCertificateRequest(
        key_spec="EC_SM2", subject="CN=sm2 chain ids,OU=kms,O=hsmca,C=CN",
        protection_level="SOFTWARE"))


def _upload(kms: Any, certificate_id: str, certificate: str, chain: str) -> None:
    kms.stub.UploadCertificate(kms_pb2.UploadCertificateRequest(
        certificate_id=certificate_id, certificate=certificate, certificate_chain=chain))


def test_openssl_default_id_chain_verifies_with_openssl_and_uploads(
    kms: Any, openssl_default_ca: OpensslCa, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    created = _create(kms)
    certificate = openssl_default_ca.issue(created.csr)
    # OpenSSL's own verify accepts the chain as made (its default ID on both sides).
    (tmp_path / "leaf.pem").write_text(certificate)
    (tmp_path / "root.pem").write_text(openssl_default_ca.root_pem)
    (tmp_path / "int.pem").write_text(openssl_default_ca.intermediate_pem)
    assert "OK" in openssl("verify", "-CAfile", "root.pem", "-untrusted", "int.pem",
                           "leaf.pem", cwd=tmp_path).stdout
    # ... and with GM/T 0015's ID it does not: the ID really is part of these signatures.
    refused = openssl("verify", "-vfyopt", DISTID, "-CAfile", "root.pem", "-untrusted",
                      "int.pem", "leaf.pem", cwd=tmp_path, check=False)
    assert refused.returncode != 0

    with caplog.at_level(logging.INFO, logger="hsmca.kms"):
        _upload(kms, created.certificate_id, certificate, openssl_default_ca.chain_pem)
    described = kms.stub.DescribeCertificate(
        kms_pb2.DescribeCertificateRequest(certificate_id=created.certificate_id))
    assert described.status == "ACTIVE"
    assert described.signature_algorithm == "SM3WithSM2"
    # Which ID verified is recorded, per link of the chain.
    records = [r.getMessage() for r in caplog.records
               if created.certificate_id in r.getMessage()]
    assert len(records) == 2, records
    assert all("distinguishing ID '' (OpenSSL 3 default)" in m for m in records)


def test_gmt_0015_id_chain_still_uploads_and_says_so(
    kms: Any, sm2_ca: OpensslCa, caplog: pytest.LogCaptureFixture
) -> None:
    created = _create(kms)
    with caplog.at_level(logging.INFO, logger="hsmca.kms"):
        _upload(kms, created.certificate_id, sm2_ca.issue(created.csr), sm2_ca.chain_pem)
    records = [r.getMessage() for r in caplog.records
               if created.certificate_id in r.getMessage()]
    assert len(records) == 2, records
    assert all("'1234567812345678' (GM/T 0015 default)" in m for m in records)


def test_a_chain_signed_under_another_id_is_refused(kms: Any, other_id_ca: OpensslCa) -> None:
    created = _create(kms)
    certificate = other_id_ca.issue(created.csr)
    code, reason = rpc_error(kms.stub.UploadCertificate, kms_pb2.UploadCertificateRequest(
        certificate_id=created.certificate_id, certificate=certificate,
        certificate_chain=other_id_ca.chain_pem))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT,
                              "InvalidParameter.CertificateChain")
