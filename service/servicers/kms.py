"""The KmsCertificates servicer: proto <-> domain only, one domain call per RPC.

No error handling here: domain code raises service.errors classes and the one interceptor
(service/rpc/interceptor.py) maps them to gRPC statuses with the API's reasons.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from service import limits
from service.auth.principal import current_tenant
from service.gen.hsmca.v1 import common_pb2, kms_pb2, kms_pb2_grpc
from service.kms.service import CertificateDescription, KmsCertificatesService
from service.rpc.server import AddServicerFn

__all__ = ["KmsCertificatesServicer", "add_to_server", "kms_servicer_pair"]

add_to_server: AddServicerFn = kms_pb2_grpc.add_KmsCertificatesServicer_to_server


def _rfc3339(value: dt.datetime | None) -> str:
    """RFC 3339 UTC with a Z suffix, as the KMS API returns times; "" when unset."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _description(
    d: CertificateDescription, request_id: str = ""
) -> kms_pb2.DescribeCertificateResponse:
    return kms_pb2.DescribeCertificateResponse(
        arn=d.arn,
        certificate_id=d.certificate_id,
        key_spec=d.key_spec,
        protection_level=d.protection_level,
        exportable_private_key=d.exportable_private_key,
        subject=d.subject,
        subject_alternative_names=list(d.subject_alternative_names),
        issuer=d.issuer,
        serial=d.serial,
        not_before=_rfc3339(d.not_before),
        not_after=_rfc3339(d.not_after),
        signature_algorithm=d.signature_algorithm,
        status=d.status,
        subject_key_identifier=d.subject_key_identifier,
        subject_public_key=d.subject_public_key,
        tags=[common_pb2.Tag(key=k, value=v) for k, v in d.tags],
        created_at=_rfc3339(d.created_at),
        updated_at=_rfc3339(d.updated_at),
    )


class KmsCertificatesServicer(kms_pb2_grpc.KmsCertificatesServicer):
    """hsmca.v1.KmsCertificates over :class:`KmsCertificatesService`.

    Every call acts for the tenant of the caller's authenticated principal.
    """

    def __init__(self, service: KmsCertificatesService) -> None:
        self._service = service

    def _owner(self, context: grpc.ServicerContext) -> str:
        return current_tenant()

    def CreateCertificate(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.CreateCertificateResponse:
        """CreateCertificate."""
        created = self._service.create_certificate(
            self._owner(context),
            key_spec=request.key_spec,
            subject=request.subject,
            subject_alternative_names=list(request.subject_alternative_names),
            exportable_private_key=(
                request.exportable_private_key
                if request.HasField("exportable_private_key")
                else None
            ),
            protection_level=request.protection_level,
            tags=limits.check_tags(((t.key, t.value) for t in request.tags),
                                   reason="InvalidParameter.Tags"),
        )
        return kms_pb2.CreateCertificateResponse(
            certificate_id=created.certificate_id, arn=created.arn, csr=created.csr
        )

    def UploadCertificate(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.UploadCertificateResponse:
        """UploadCertificate."""
        self._service.upload_certificate(
            self._owner(context),
            request.certificate_id,
            request.certificate,
            request.certificate_chain,
        )
        return kms_pb2.UploadCertificateResponse()

    def GetCertificate(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.GetCertificateResponse:
        """GetCertificate."""
        content = self._service.get_certificate(self._owner(context), request.certificate_id)
        return kms_pb2.GetCertificateResponse(
            certificate_id=content.certificate_id,
            certificate=content.certificate,
            certificate_chain=content.certificate_chain,
            csr=content.csr,
        )

    def DescribeCertificate(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.DescribeCertificateResponse:
        """DescribeCertificate."""
        return _description(
            self._service.describe_certificate(self._owner(context), request.certificate_id)
        )

    def ListCertificates(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.ListCertificatesResponse:
        """ListCertificates."""
        page = self._service.list_certificates(
            self._owner(context),
            page_number=request.page_number,
            page_size=request.page_size,
            subject=request.subject,
            issuer=request.issuer,
            status=request.status,
        )
        return kms_pb2.ListCertificatesResponse(
            certificates=[
                kms_pb2.CertificateSummary(
                    certificate_id=d.certificate_id,
                    arn=d.arn,
                    key_spec=d.key_spec,
                    protection_level=d.protection_level,
                    subject=d.subject,
                    issuer=d.issuer,
                    serial=d.serial,
                    not_after=_rfc3339(d.not_after),
                    status=d.status,
                    created_at=_rfc3339(d.created_at),
                )
                for d in page.certificates
            ],
            total_count=page.total_count,
            page_number=page.page_number,
            page_size=page.page_size,
        )

    def UpdateCertificateStatus(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.UpdateCertificateStatusResponse:
        """UpdateCertificateStatus."""
        self._service.update_certificate_status(
            self._owner(context), request.certificate_id, request.status
        )
        return kms_pb2.UpdateCertificateStatusResponse()

    def DeleteCertificate(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.DeleteCertificateResponse:
        """DeleteCertificate."""
        self._service.delete_certificate(self._owner(context), request.certificate_id)
        return kms_pb2.DeleteCertificateResponse()

    def CertificatePrivateKeySign(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.CertificatePrivateKeySignResponse:
        """CertificatePrivateKeySign."""
        signature = self._service.private_key_sign(
            self._owner(context),
            request.certificate_id,
            algorithm=request.algorithm,
            message=request.message,
            message_type=request.message_type,
        )
        return kms_pb2.CertificatePrivateKeySignResponse(
            certificate_id=request.certificate_id, signature_value=signature
        )

    def CertificatePublicKeyVerify(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.CertificatePublicKeyVerifyResponse:
        """CertificatePublicKeyVerify."""
        valid = self._service.public_key_verify(
            self._owner(context),
            request.certificate_id,
            algorithm=request.algorithm,
            message=request.message,
            signature=request.signature_value,
            message_type=request.message_type,
        )
        return kms_pb2.CertificatePublicKeyVerifyResponse(
            certificate_id=request.certificate_id, signature_valid=valid
        )

    def CertificatePublicKeyEncrypt(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.CertificatePublicKeyEncryptResponse:
        """CertificatePublicKeyEncrypt."""
        ciphertext = self._service.public_key_encrypt(
            self._owner(context),
            request.certificate_id,
            algorithm=request.algorithm,
            plaintext=request.plaintext,
        )
        return kms_pb2.CertificatePublicKeyEncryptResponse(
            certificate_id=request.certificate_id, ciphertext_blob=ciphertext
        )

    def CertificatePrivateKeyDecrypt(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.CertificatePrivateKeyDecryptResponse:
        """CertificatePrivateKeyDecrypt."""
        plaintext = self._service.private_key_decrypt(
            self._owner(context),
            request.certificate_id,
            algorithm=request.algorithm,
            ciphertext=request.ciphertext_blob,
        )
        return kms_pb2.CertificatePrivateKeyDecryptResponse(
            certificate_id=request.certificate_id, plaintext=plaintext
        )

    def ExportCertificate(
        self, request: Any, context: grpc.ServicerContext
    ) -> kms_pb2.ExportCertificateResponse:
        """ExportCertificate."""
        exported = self._service.export_certificate(
            self._owner(context),
            request.certificate_id,
            export_format=request.export_format,
            passphrase=request.passphrase,
        )
        return kms_pb2.ExportCertificateResponse(
            certificate_id=exported.certificate_id,
            certificate=exported.certificate,
            certificate_chain=exported.certificate_chain,
            private_key=exported.private_key,
            pkcs12_blob=exported.pkcs12,
        )


def kms_servicer_pair(
    service: KmsCertificatesService,
) -> tuple[AddServicerFn, KmsCertificatesServicer]:
    """The (add function, servicer) pair build_server takes."""
    return add_to_server, KmsCertificatesServicer(service)
