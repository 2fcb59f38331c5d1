"""KMS Certificates API rules: status transitions, listing, and table-driven rejections.

Every rejection is checked by gRPC status *and* ErrorInfo reason, and leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from kms_api_support import OpensslCa, rpc_error
from pkcs11 import Attribute, ObjectClass

from service.gen.hsmca.v1 import kms_pb2

GOOD_SUBJECT = "CN=user,OU=kms,O=hsmca,C=CN"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = (grpc.StatusCode.NOT_FOUND, "NotFound.CertificateId")
INCORRECT_STATUS = (grpc.StatusCode.FAILED_PRECONDITION, "IncorrectStatus.Certificate")


def _create(kms: Any, key_spec: str = "EC_P256", subject: str = GOOD_SUBJECT) -> str:
    created = kms.stub.CreateCertificate(
        kms_pb2.CreateCertificateRequest(key_spec=key_spec, subject=subject)
    )
    return str(created.certificate_id)


def _upload(kms: Any, ca: OpensslCa, certificate_id: str) -> str:
    csr = kms.stub.GetCertificate(kms_pb2.GetCertificateRequest(certificate_id=certificate_id)).csr
    certificate = ca.issue(csr)
    kms.stub.UploadCertificate(
        kms_pb2.UploadCertificateRequest(
            certificate_id=certificate_id, certificate=certificate, certificate_chain=ca.chain_pem
        )
    )
    return certificate


def _sign(kms: Any, certificate_id: str) -> Any:
    return kms.stub.CertificatePrivateKeySign(
        kms_pb2.CertificatePrivateKeySignRequest(
            certificate_id=certificate_id, algorithm="ECDSA_SHA_256", message=b"m"
        )
    )


def _set_status(kms: Any, certificate_id: str, status: str) -> Any:
    return kms.stub.UpdateCertificateStatus(
        kms_pb2.UpdateCertificateStatusRequest(certificate_id=certificate_id, status=status)
    )


def _status(kms: Any, certificate_id: str) -> str:
    return str(
        kms.stub.DescribeCertificate(
            kms_pb2.DescribeCertificateRequest(certificate_id=certificate_id)
        ).status
    )


def _sign_error(kms: Any, certificate_id: str) -> tuple[grpc.StatusCode, str]:
    return rpc_error(
        kms.stub.CertificatePrivateKeySign,
        kms_pb2.CertificatePrivateKeySignRequest(
            certificate_id=certificate_id, algorithm="ECDSA_SHA_256", message=b"m"
        ),
    )


def _status_error(kms: Any, certificate_id: str, status: str) -> tuple[grpc.StatusCode, str]:
    return rpc_error(
        kms.stub.UpdateCertificateStatus,
        kms_pb2.UpdateCertificateStatusRequest(certificate_id=certificate_id, status=status),
    )


# --- status rules --------------------------------------------------------------------------


def test_status_lifecycle(kms: Any, ca: OpensslCa) -> None:
    certificate_id = _create(kms)
    # PENDING: no certificate yet, so no signing and no activation.
    assert _status(kms, certificate_id) == "PENDING"
    assert _sign_error(kms, certificate_id) == INCORRECT_STATUS
    assert _status_error(kms, certificate_id, "ACTIVE") == INCORRECT_STATUS
    assert _status_error(kms, certificate_id, "INACTIVE") == INCORRECT_STATUS

    _upload(kms, ca, certificate_id)
    assert _status(kms, certificate_id) == "ACTIVE"
    assert _sign(kms, certificate_id).signature_value

    _set_status(kms, certificate_id, "INACTIVE")
    assert _status(kms, certificate_id) == "INACTIVE"
    assert _sign_error(kms, certificate_id) == INCORRECT_STATUS
    # Public-key operations do not need the private key, so they still work.
    assert kms.stub.CertificatePublicKeyVerify(
        kms_pb2.CertificatePublicKeyVerifyRequest(
            certificate_id=certificate_id, algorithm="ECDSA_SHA_256", message=b"m",
            signature_value=b"\x30\x00",
        )
    ).signature_valid is False

    _set_status(kms, certificate_id, "ACTIVE")
    assert _sign(kms, certificate_id).signature_value

    _set_status(kms, certificate_id, "REVOKED")
    assert _status(kms, certificate_id) == "REVOKED"
    assert _sign_error(kms, certificate_id) == INCORRECT_STATUS
    # REVOKED is final: no status change, no re-upload, no export.
    for status in ("ACTIVE", "INACTIVE", "REVOKED"):
        assert _status_error(kms, certificate_id, status) == INCORRECT_STATUS
    csr = kms.stub.GetCertificate(kms_pb2.GetCertificateRequest(certificate_id=certificate_id)).csr
    assert rpc_error(
        kms.stub.UploadCertificate,
        kms_pb2.UploadCertificateRequest(
            certificate_id=certificate_id, certificate=ca.issue(csr), certificate_chain=ca.chain_pem
        ),
    ) == INCORRECT_STATUS
    assert rpc_error(
        kms.stub.ExportCertificate,
        kms_pb2.ExportCertificateRequest(
            certificate_id=certificate_id, export_format="PEM", passphrase="pw"
        ),
    ) == INCORRECT_STATUS
    assert _status(kms, certificate_id) == "REVOKED"


def test_pending_can_be_revoked_and_inactive_rsa_cannot_decrypt(
    kms: Any, ca: OpensslCa
) -> None:
    pending = _create(kms)
    _set_status(kms, pending, "REVOKED")
    assert _status(kms, pending) == "REVOKED"

    rsa_id = _create(kms, key_spec="RSA_2048")
    _upload(kms, ca, rsa_id)
    ciphertext = kms.stub.CertificatePublicKeyEncrypt(
        kms_pb2.CertificatePublicKeyEncryptRequest(
            certificate_id=rsa_id, algorithm="RSAES_OAEP_SHA_256", plaintext=b"secret"
        )
    ).ciphertext_blob
    _set_status(kms, rsa_id, "INACTIVE")
    assert rpc_error(
        kms.stub.CertificatePrivateKeyDecrypt,
        kms_pb2.CertificatePrivateKeyDecryptRequest(
            certificate_id=rsa_id, algorithm="RSAES_OAEP_SHA_256", ciphertext_blob=ciphertext
        ),
    ) == INCORRECT_STATUS


def test_export_of_a_pending_certificate_is_refused(kms: Any) -> None:
    certificate_id = _create(kms)
    assert rpc_error(
        kms.stub.ExportCertificate,
        kms_pb2.ExportCertificateRequest(
            certificate_id=certificate_id, export_format="PEM", passphrase="pw"
        ),
    ) == INCORRECT_STATUS


# --- ListCertificates ----------------------------------------------------------------------


def test_list_pages_and_filters(kms: Any, ca: OpensslCa) -> None:
    tag = uuid.uuid4().hex[:8]
    subject = f"CN=list-{tag},OU=kms,O=hsmca,C=CN"
    ids = [_create(kms, subject=subject) for _ in range(3)]
    _upload(kms, ca, ids[0])

    def page(**kwargs: Any) -> Any:
        return kms.stub.ListCertificates(kms_pb2.ListCertificatesRequest(**kwargs))

    first = page(subject=subject, page_size=2)
    second = page(subject=subject, page_size=2, page_number=2)
    assert (first.total_count, first.page_number, first.page_size) == (3, 1, 2)
    assert [c.certificate_id for c in first.certificates] + [
        c.certificate_id for c in second.certificates
    ] == ids
    assert first.request_id
    active = page(subject=subject, status="ACTIVE")
    assert [c.certificate_id for c in active.certificates] == [ids[0]]
    summary = active.certificates[0]
    assert summary.issuer == "CN=Test Intermediate,O=hsmca tests,C=CN"
    assert summary.status == "ACTIVE" and summary.key_spec == "EC_P256"
    assert summary.created_at.endswith("Z") and summary.not_after.endswith("Z")
    issued_here = page(subject=subject, issuer=summary.issuer)
    assert issued_here.total_count == 1
    assert page(subject=subject, status="PENDING").total_count == 2
    assert page(subject="CN=nobody,OU=kms,O=hsmca,C=CN").total_count == 0


# --- table-driven rejections ---------------------------------------------------------------


def _create_request(**overrides: Any) -> Any:
    fields: dict[str, Any] = {"key_spec": "EC_P256", "subject": GOOD_SUBJECT}
    fields.update(overrides)
    return kms_pb2.CreateCertificateRequest(**fields)


SUBJECT_REASON = "InvalidParameter.Subject"
CSR_BLOCK = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"
CREATE_REJECTIONS = [
    ("missing CN", _create_request(subject="OU=kms,O=hsmca,C=CN"), SUBJECT_REASON),
    ("missing C", _create_request(subject="CN=u,OU=kms,O=hsmca"), SUBJECT_REASON),
    ("missing O", _create_request(subject="CN=u,OU=kms,C=CN"), SUBJECT_REASON),
    ("missing OU", _create_request(subject="CN=u,O=hsmca,C=CN"), SUBJECT_REASON),
    ("three-letter country", _create_request(subject="CN=u,OU=kms,O=hsmca,C=CHN"), SUBJECT_REASON),
    ("unescaped comma", _create_request(subject="CN=a,b,OU=kms,O=hsmca,C=CN"), SUBJECT_REASON),
    ("empty subject", _create_request(subject=""), SUBJECT_REASON),
    (
        "11 SANs",
        _create_request(subject_alternative_names=[f"h{i}.example.com" for i in range(11)]),
        "InvalidParameter.SubjectAlternativeNames",
    ),
    (
        "bad SAN",
        _create_request(subject_alternative_names=["not a host"]),
        "InvalidParameter.SubjectAlternativeNames",
    ),
    ("unknown key spec", _create_request(key_spec="RSA_1024"), "InvalidParameter.KeySpec"),
    (
        "unknown protection level",
        _create_request(protection_level="CLOUD"),
        "InvalidParameter.ProtectionLevel",
    ),
]


def _key_count(token: Any) -> int:
    return token.run(
        lambda s: len(list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})))
    )


@pytest.mark.parametrize(
    ("request_", "reason"),
    [(r, reason) for _, r, reason in CREATE_REJECTIONS],
    ids=[name for name, _, _ in CREATE_REJECTIONS],
)
def test_create_rejections(kms: Any, request_: Any, reason: str) -> None:
    before = kms.stub.ListCertificates(kms_pb2.ListCertificatesRequest()).total_count
    keys_before = _key_count(kms.software_token)
    assert rpc_error(kms.stub.CreateCertificate, request_) == (INVALID, reason)
    assert kms.stub.ListCertificates(kms_pb2.ListCertificatesRequest()).total_count == before
    assert _key_count(kms.software_token) == keys_before


def test_ten_sans_are_accepted(kms: Any) -> None:
    created = kms.stub.CreateCertificate(
        _create_request(subject_alternative_names=[f"h{i}.example.com" for i in range(10)])
    )
    assert created.certificate_id


@pytest.fixture(scope="module")
def ec_active(kms: Any, ca: OpensslCa) -> str:
    certificate_id = _create(kms)
    _upload(kms, ca, certificate_id)
    return certificate_id


@pytest.fixture(scope="module")
def rsa_active(kms: Any, ca: OpensslCa) -> str:
    certificate_id = _create(kms, key_spec="RSA_2048")
    _upload(kms, ca, certificate_id)
    return certificate_id


def _sign_req(cid: str, **kw: Any) -> Any:
    fields: dict[str, Any] = {"certificate_id": cid, "algorithm": "ECDSA_SHA_256", "message": b"m"}
    fields.update(kw)
    return kms_pb2.CertificatePrivateKeySignRequest(**fields)


def _verify_req(cid: str, **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "certificate_id": cid, "algorithm": "ECDSA_SHA_256", "message": b"m",
        "signature_value": b"\x30\x00",
    }
    fields.update(kw)
    return kms_pb2.CertificatePublicKeyVerifyRequest(**fields)


# (name, rpc name, request builder taking (ec id, rsa id), reason)
KEY_USE_REJECTIONS: list[tuple[str, str, Callable[[str, str], Any], str]] = [
    ("RAW 4097 bytes", "CertificatePrivateKeySign",
     lambda ec, rsa: _sign_req(ec, message=b"x" * 4097), "InvalidParameter.Message"),
    ("verify RAW 4097 bytes", "CertificatePublicKeyVerify",
     lambda ec, rsa: _verify_req(ec, message=b"x" * 4097), "InvalidParameter.Message"),
    ("DIGEST of 31 bytes", "CertificatePrivateKeySign",
     lambda ec, rsa: _sign_req(ec, message=b"x" * 31, message_type="DIGEST"),
     "InvalidParameter.Message"),
    ("unknown message type", "CertificatePrivateKeySign",
     lambda ec, rsa: _sign_req(ec, message_type="HASH"), "InvalidParameter.MessageType"),
    ("RSA algorithm on EC key", "CertificatePrivateKeySign",
     lambda ec, rsa: _sign_req(ec, algorithm="RSA_PSS_SHA_256"), "InvalidParameter.Algorithm"),
    ("SM2 algorithm on RSA key", "CertificatePrivateKeySign",
     lambda ec, rsa: _sign_req(rsa, algorithm="SM2DSA"), "InvalidParameter.Algorithm"),
    ("EC key cannot encrypt", "CertificatePublicKeyEncrypt",
     lambda ec, rsa: kms_pb2.CertificatePublicKeyEncryptRequest(
         certificate_id=ec, algorithm="RSAES_OAEP_SHA_256", plaintext=b"p"),
     "InvalidParameter.Algorithm"),
    ("OAEP-SHA256 plaintext too long", "CertificatePublicKeyEncrypt",
     lambda ec, rsa: kms_pb2.CertificatePublicKeyEncryptRequest(
         certificate_id=rsa, algorithm="RSAES_OAEP_SHA_256", plaintext=b"p" * 191),
     "InvalidParameter.Plaintext"),
    ("garbage ciphertext", "CertificatePrivateKeyDecrypt",
     lambda ec, rsa: kms_pb2.CertificatePrivateKeyDecryptRequest(
         certificate_id=rsa, algorithm="RSAES_OAEP_SHA_1", ciphertext_blob=b"\x01" * 256),
     "InvalidParameter.CiphertextBlob"),
    ("short ciphertext", "CertificatePrivateKeyDecrypt",
     lambda ec, rsa: kms_pb2.CertificatePrivateKeyDecryptRequest(
         certificate_id=rsa, algorithm="RSAES_OAEP_SHA_256", ciphertext_blob=b"\x01" * 10),
     "InvalidParameter.CiphertextBlob"),
    ("unknown export format", "ExportCertificate",
     lambda ec, rsa: kms_pb2.ExportCertificateRequest(
         certificate_id=ec, export_format="DER", passphrase="pw"),
     "InvalidParameter.ExportFormat"),
    ("empty passphrase", "ExportCertificate",
     lambda ec, rsa: kms_pb2.ExportCertificateRequest(certificate_id=ec, export_format="PEM"),
     "InvalidParameter.Passphrase"),
    ("1024-byte passphrase", "ExportCertificate",
     lambda ec, rsa: kms_pb2.ExportCertificateRequest(certificate_id=ec, export_format="PEM",
                                                      passphrase="p" * 1024),
     "InvalidParameter.Passphrase"),
    ("unknown status", "UpdateCertificateStatus",
     lambda ec, rsa: kms_pb2.UpdateCertificateStatusRequest(certificate_id=ec, status="PENDING"),
     "InvalidParameter.Status"),
    ("list: page size 101", "ListCertificates",
     lambda ec, rsa: kms_pb2.ListCertificatesRequest(page_size=101), "InvalidParameter.PageSize"),
    ("list: negative page", "ListCertificates",
     lambda ec, rsa: kms_pb2.ListCertificatesRequest(page_number=-1),
     "InvalidParameter.PageNumber"),
    ("list: unknown status", "ListCertificates",
     lambda ec, rsa: kms_pb2.ListCertificatesRequest(status="GONE"), "InvalidParameter.Status"),
    ("upload: not PEM", "UploadCertificate",
     lambda ec, rsa: kms_pb2.UploadCertificateRequest(certificate_id=ec, certificate="hello"),
     "InvalidParameter.Certificate"),
    ("upload: a CSR instead", "UploadCertificate",
     lambda ec, rsa: kms_pb2.UploadCertificateRequest(
         certificate_id=ec,
         certificate=CSR_BLOCK),
     "InvalidParameter.Certificate"),
]


@pytest.mark.parametrize(
    ("rpc", "build", "reason"),
    [(rpc, build, reason) for _, rpc, build, reason in KEY_USE_REJECTIONS],
    ids=[name for name, _, _, _ in KEY_USE_REJECTIONS],
)
def test_key_use_rejections(
    kms: Any, ec_active: str, rsa_active: str, rpc: str,
    build: Callable[[str, str], Any], reason: str,
) -> None:
    assert rpc_error(getattr(kms.stub, rpc), build(ec_active, rsa_active)) == (INVALID, reason)
    assert _status(kms, ec_active) == "ACTIVE"


def test_raw_message_of_4096_bytes_is_accepted(kms: Any, ec_active: str) -> None:
    assert kms.stub.CertificatePrivateKeySign(_sign_req(ec_active, message=b"x" * 4096))


UNKNOWN = str(uuid.uuid4())
UNKNOWN_ID_REQUESTS = [
    ("UploadCertificate", kms_pb2.UploadCertificateRequest(certificate_id=UNKNOWN)),
    ("GetCertificate", kms_pb2.GetCertificateRequest(certificate_id=UNKNOWN)),
    ("DescribeCertificate", kms_pb2.DescribeCertificateRequest(certificate_id=UNKNOWN)),
    ("UpdateCertificateStatus",
     kms_pb2.UpdateCertificateStatusRequest(certificate_id=UNKNOWN, status="ACTIVE")),
    ("DeleteCertificate", kms_pb2.DeleteCertificateRequest(certificate_id=UNKNOWN)),
    ("CertificatePrivateKeySign", _sign_req(UNKNOWN)),
    ("CertificatePublicKeyVerify", _verify_req(UNKNOWN)),
    ("CertificatePublicKeyEncrypt", kms_pb2.CertificatePublicKeyEncryptRequest(
        certificate_id=UNKNOWN, algorithm="RSAES_OAEP_SHA_1", plaintext=b"p")),
    ("CertificatePrivateKeyDecrypt", kms_pb2.CertificatePrivateKeyDecryptRequest(
        certificate_id=UNKNOWN, algorithm="RSAES_OAEP_SHA_1", ciphertext_blob=b"c")),
    ("ExportCertificate", kms_pb2.ExportCertificateRequest(
        certificate_id=UNKNOWN, export_format="PEM", passphrase="pw")),
    ("GetCertificate (empty id)", kms_pb2.GetCertificateRequest()),
]


@pytest.mark.parametrize(
    ("rpc", "request_"), UNKNOWN_ID_REQUESTS, ids=[name for name, _ in UNKNOWN_ID_REQUESTS]
)
def test_unknown_ids_are_not_found(kms: Any, rpc: str, request_: Any) -> None:
    assert rpc_error(getattr(kms.stub, rpc.split(" ")[0]), request_) == NOT_FOUND


def test_another_owner_sees_nothing(kms: Any, ec_active: str) -> None:
    """Rows are owner-scoped: the domain service finds nothing for another tenant."""
    from service.errors import NotFound

    with pytest.raises(NotFound) as info:
        kms.service.describe_certificate("someone-else", ec_active)
    assert info.value.reason == "NotFound.CertificateId"
