from service.gen.hsmca.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCertificateRequest(_message.Message):
    __slots__ = ("key_spec", "subject", "subject_alternative_names", "exportable_private_key", "protection_level", "tags")
    KEY_SPEC_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ALTERNATIVE_NAMES_FIELD_NUMBER: _ClassVar[int]
    EXPORTABLE_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    key_spec: str
    subject: str
    subject_alternative_names: _containers.RepeatedScalarFieldContainer[str]
    exportable_private_key: bool
    protection_level: str
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    def __init__(self, key_spec: _Optional[str] = ..., subject: _Optional[str] = ..., subject_alternative_names: _Optional[_Iterable[str]] = ..., exportable_private_key: _Optional[bool] = ..., protection_level: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ...) -> None: ...

class CreateCertificateResponse(_message.Message):
    __slots__ = ("certificate_id", "arn", "csr", "request_id")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    ARN_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    arn: str
    csr: str
    request_id: str
    def __init__(self, certificate_id: _Optional[str] = ..., arn: _Optional[str] = ..., csr: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class UploadCertificateRequest(_message.Message):
    __slots__ = ("certificate_id", "certificate", "certificate_chain")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    certificate: str
    certificate_chain: str
    def __init__(self, certificate_id: _Optional[str] = ..., certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ...) -> None: ...

class UploadCertificateResponse(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class GetCertificateRequest(_message.Message):
    __slots__ = ("certificate_id",)
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    def __init__(self, certificate_id: _Optional[str] = ...) -> None: ...

class GetCertificateResponse(_message.Message):
    __slots__ = ("certificate_id", "certificate", "certificate_chain", "csr", "request_id")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    certificate: str
    certificate_chain: str
    csr: str
    request_id: str
    def __init__(self, certificate_id: _Optional[str] = ..., certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., csr: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DescribeCertificateRequest(_message.Message):
    __slots__ = ("certificate_id",)
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    def __init__(self, certificate_id: _Optional[str] = ...) -> None: ...

class DescribeCertificateResponse(_message.Message):
    __slots__ = ("arn", "certificate_id", "key_spec", "protection_level", "exportable_private_key", "subject", "subject_alternative_names", "issuer", "serial", "not_before", "not_after", "signature_algorithm", "status", "subject_key_identifier", "subject_public_key", "tags", "created_at", "updated_at", "request_id")
    ARN_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_SPEC_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EXPORTABLE_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ALTERNATIVE_NAMES_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_KEY_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    arn: str
    certificate_id: str
    key_spec: str
    protection_level: str
    exportable_private_key: bool
    subject: str
    subject_alternative_names: _containers.RepeatedScalarFieldContainer[str]
    issuer: str
    serial: str
    not_before: str
    not_after: str
    signature_algorithm: str
    status: str
    subject_key_identifier: str
    subject_public_key: str
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    created_at: str
    updated_at: str
    request_id: str
    def __init__(self, arn: _Optional[str] = ..., certificate_id: _Optional[str] = ..., key_spec: _Optional[str] = ..., protection_level: _Optional[str] = ..., exportable_private_key: _Optional[bool] = ..., subject: _Optional[str] = ..., subject_alternative_names: _Optional[_Iterable[str]] = ..., issuer: _Optional[str] = ..., serial: _Optional[str] = ..., not_before: _Optional[str] = ..., not_after: _Optional[str] = ..., signature_algorithm: _Optional[str] = ..., status: _Optional[str] = ..., subject_key_identifier: _Optional[str] = ..., subject_public_key: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListCertificatesRequest(_message.Message):
    __slots__ = ("page_number", "page_size", "subject", "issuer", "status")
    PAGE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    page_number: int
    page_size: int
    subject: str
    issuer: str
    status: str
    def __init__(self, page_number: _Optional[int] = ..., page_size: _Optional[int] = ..., subject: _Optional[str] = ..., issuer: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class CertificateSummary(_message.Message):
    __slots__ = ("certificate_id", "arn", "key_spec", "protection_level", "subject", "issuer", "serial", "not_after", "status", "created_at")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    ARN_FIELD_NUMBER: _ClassVar[int]
    KEY_SPEC_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    arn: str
    key_spec: str
    protection_level: str
    subject: str
    issuer: str
    serial: str
    not_after: str
    status: str
    created_at: str
    def __init__(self, certificate_id: _Optional[str] = ..., arn: _Optional[str] = ..., key_spec: _Optional[str] = ..., protection_level: _Optional[str] = ..., subject: _Optional[str] = ..., issuer: _Optional[str] = ..., serial: _Optional[str] = ..., not_after: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListCertificatesResponse(_message.Message):
    __slots__ = ("certificates", "total_count", "page_number", "page_size", "request_id")
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificates: _containers.RepeatedCompositeFieldContainer[CertificateSummary]
    total_count: int
    page_number: int
    page_size: int
    request_id: str
    def __init__(self, certificates: _Optional[_Iterable[_Union[CertificateSummary, _Mapping]]] = ..., total_count: _Optional[int] = ..., page_number: _Optional[int] = ..., page_size: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateCertificateStatusRequest(_message.Message):
    __slots__ = ("certificate_id", "status")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    status: str
    def __init__(self, certificate_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class UpdateCertificateStatusResponse(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class DeleteCertificateRequest(_message.Message):
    __slots__ = ("certificate_id",)
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    def __init__(self, certificate_id: _Optional[str] = ...) -> None: ...

class DeleteCertificateResponse(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class CertificatePrivateKeySignRequest(_message.Message):
    __slots__ = ("certificate_id", "algorithm", "message", "message_type")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    algorithm: str
    message: bytes
    message_type: str
    def __init__(self, certificate_id: _Optional[str] = ..., algorithm: _Optional[str] = ..., message: _Optional[bytes] = ..., message_type: _Optional[str] = ...) -> None: ...

class CertificatePrivateKeySignResponse(_message.Message):
    __slots__ = ("certificate_id", "signature_value", "request_id")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    signature_value: bytes
    request_id: str
    def __init__(self, certificate_id: _Optional[str] = ..., signature_value: _Optional[bytes] = ..., request_id: _Optional[str] = ...) -> None: ...

class CertificatePublicKeyVerifyRequest(_message.Message):
    __slots__ = ("certificate_id", "algorithm", "message", "message_type", "signature_value")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VALUE_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    algorithm: str
    message: bytes
    message_type: str
    signature_value: bytes
    def __init__(self, certificate_id: _Optional[str] = ..., algorithm: _Optional[str] = ..., message: _Optional[bytes] = ..., message_type: _Optional[str] = ..., signature_value: _Optional[bytes] = ...) -> None: ...

class CertificatePublicKeyVerifyResponse(_message.Message):
    __slots__ = ("certificate_id", "signature_valid", "request_id")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VALID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    signature_valid: bool
    request_id: str
    def __init__(self, certificate_id: _Optional[str] = ..., signature_valid: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class CertificatePublicKeyEncryptRequest(_message.Message):
    __slots__ = ("certificate_id", "algorithm", "plaintext")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    algorithm: str
    plaintext: bytes
    def __init__(self, certificate_id: _Optional[str] = ..., algorithm: _Optional[str] = ..., plaintext: _Optional[bytes] = ...) -> None: ...

class CertificatePublicKeyEncryptResponse(_message.Message):
    __slots__ = ("certificate_id", "ciphertext_blob", "request_id")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_BLOB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    ciphertext_blob: bytes
    request_id: str
    def __init__(self, certificate_id: _Optional[str] = ..., ciphertext_blob: _Optional[bytes] = ..., request_id: _Optional[str] = ...) -> None: ...

class CertificatePrivateKeyDecryptRequest(_message.Message):
    __slots__ = ("certificate_id", "algorithm", "ciphertext_blob")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_BLOB_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    algorithm: str
    ciphertext_blob: bytes
    def __init__(self, certificate_id: _Optional[str] = ..., algorithm: _Optional[str] = ..., ciphertext_blob: _Optional[bytes] = ...) -> None: ...

class CertificatePrivateKeyDecryptResponse(_message.Message):
    __slots__ = ("certificate_id", "plaintext", "request_id")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    plaintext: bytes
    request_id: str
    def __init__(self, certificate_id: _Optional[str] = ..., plaintext: _Optional[bytes] = ..., request_id: _Optional[str] = ...) -> None: ...

class ExportCertificateRequest(_message.Message):
    __slots__ = ("certificate_id", "export_format", "passphrase")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    export_format: str
    passphrase: str
    def __init__(self, certificate_id: _Optional[str] = ..., export_format: _Optional[str] = ..., passphrase: _Optional[str] = ...) -> None: ...

class ExportCertificateResponse(_message.Message):
    __slots__ = ("certificate_id", "certificate", "certificate_chain", "private_key", "pkcs12_blob", "request_id")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    PKCS12_BLOB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    certificate: str
    certificate_chain: str
    private_key: str
    pkcs12_blob: bytes
    request_id: str
    def __init__(self, certificate_id: _Optional[str] = ..., certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., private_key: _Optional[str] = ..., pkcs12_blob: _Optional[bytes] = ..., request_id: _Optional[str] = ...) -> None: ...
