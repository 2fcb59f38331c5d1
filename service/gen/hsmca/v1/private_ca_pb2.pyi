from service.gen.hsmca.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRootCACertificateRequest(_message.Message):
    __slots__ = ("common_name", "organization", "organization_unit", "country_code", "state", "locality", "algorithm", "years", "enable_crl", "crl_day", "tags", "resource_group_id")
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    CRL_DAY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    common_name: str
    organization: str
    organization_unit: str
    country_code: str
    state: str
    locality: str
    algorithm: str
    years: int
    enable_crl: int
    crl_day: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    def __init__(self, common_name: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country_code: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., algorithm: _Optional[str] = ..., years: _Optional[int] = ..., enable_crl: _Optional[int] = ..., crl_day: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ...) -> None: ...

class CreateRootCACertificateResponse(_message.Message):
    __slots__ = ("identifier", "certificate", "certificate_chain", "request_id")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    certificate: str
    certificate_chain: str
    request_id: str
    def __init__(self, identifier: _Optional[str] = ..., certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateSubCACertificateRequest(_message.Message):
    __slots__ = ("parent_identifier", "common_name", "organization", "organization_unit", "country_code", "state", "locality", "algorithm", "years", "path_len_constraint", "extended_key_usages", "enable_crl", "crl_day", "tags", "resource_group_id")
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    PATH_LEN_CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_KEY_USAGES_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    CRL_DAY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    parent_identifier: str
    common_name: str
    organization: str
    organization_unit: str
    country_code: str
    state: str
    locality: str
    algorithm: str
    years: int
    path_len_constraint: int
    extended_key_usages: _containers.RepeatedScalarFieldContainer[str]
    enable_crl: int
    crl_day: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    def __init__(self, parent_identifier: _Optional[str] = ..., common_name: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country_code: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., algorithm: _Optional[str] = ..., years: _Optional[int] = ..., path_len_constraint: _Optional[int] = ..., extended_key_usages: _Optional[_Iterable[str]] = ..., enable_crl: _Optional[int] = ..., crl_day: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ...) -> None: ...

class CreateSubCACertificateResponse(_message.Message):
    __slots__ = ("identifier", "certificate", "certificate_chain", "request_id")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    certificate: str
    certificate_chain: str
    request_id: str
    def __init__(self, identifier: _Optional[str] = ..., certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CACertificate(_message.Message):
    __slots__ = ("identifier", "parent_identifier", "certificate_type", "status", "serial_number", "algorithm", "key_size", "sign_algorithm", "subject_dn", "common_name", "organization", "organization_unit", "country_code", "state", "locality", "years", "before_date", "after_date", "x509_certificate", "certificate_chain", "sha2", "path_len_constraint", "extended_key_usages", "enable_crl", "crl_day", "crl_url", "cert_issued_count", "tags", "resource_group_id")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_SIZE_FIELD_NUMBER: _ClassVar[int]
    SIGN_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_DN_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_DATE_FIELD_NUMBER: _ClassVar[int]
    AFTER_DATE_FIELD_NUMBER: _ClassVar[int]
    X509_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    SHA2_FIELD_NUMBER: _ClassVar[int]
    PATH_LEN_CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_KEY_USAGES_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    CRL_DAY_FIELD_NUMBER: _ClassVar[int]
    CRL_URL_FIELD_NUMBER: _ClassVar[int]
    CERT_ISSUED_COUNT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    parent_identifier: str
    certificate_type: str
    status: str
    serial_number: str
    algorithm: str
    key_size: int
    sign_algorithm: str
    subject_dn: str
    common_name: str
    organization: str
    organization_unit: str
    country_code: str
    state: str
    locality: str
    years: int
    before_date: int
    after_date: int
    x509_certificate: str
    certificate_chain: str
    sha2: str
    path_len_constraint: int
    extended_key_usages: _containers.RepeatedScalarFieldContainer[str]
    enable_crl: int
    crl_day: int
    crl_url: str
    cert_issued_count: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    def __init__(self, identifier: _Optional[str] = ..., parent_identifier: _Optional[str] = ..., certificate_type: _Optional[str] = ..., status: _Optional[str] = ..., serial_number: _Optional[str] = ..., algorithm: _Optional[str] = ..., key_size: _Optional[int] = ..., sign_algorithm: _Optional[str] = ..., subject_dn: _Optional[str] = ..., common_name: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country_code: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., years: _Optional[int] = ..., before_date: _Optional[int] = ..., after_date: _Optional[int] = ..., x509_certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., sha2: _Optional[str] = ..., path_len_constraint: _Optional[int] = ..., extended_key_usages: _Optional[_Iterable[str]] = ..., enable_crl: _Optional[int] = ..., crl_day: _Optional[int] = ..., crl_url: _Optional[str] = ..., cert_issued_count: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ...) -> None: ...

class DescribeCACertificateRequest(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    def __init__(self, identifier: _Optional[str] = ...) -> None: ...

class DescribeCACertificateResponse(_message.Message):
    __slots__ = ("certificate", "request_id")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate: CACertificate
    request_id: str
    def __init__(self, certificate: _Optional[_Union[CACertificate, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DescribeCACertificateListRequest(_message.Message):
    __slots__ = ("current_page", "show_size", "identifier", "ca_status")
    CURRENT_PAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CA_STATUS_FIELD_NUMBER: _ClassVar[int]
    current_page: int
    show_size: int
    identifier: str
    ca_status: str
    def __init__(self, current_page: _Optional[int] = ..., show_size: _Optional[int] = ..., identifier: _Optional[str] = ..., ca_status: _Optional[str] = ...) -> None: ...

class DescribeCACertificateListResponse(_message.Message):
    __slots__ = ("certificate_list", "total_count", "page_count", "current_page", "show_size", "request_id")
    CERTIFICATE_LIST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_list: _containers.RepeatedCompositeFieldContainer[CACertificate]
    total_count: int
    page_count: int
    current_page: int
    show_size: int
    request_id: str
    def __init__(self, certificate_list: _Optional[_Iterable[_Union[CACertificate, _Mapping]]] = ..., total_count: _Optional[int] = ..., page_count: _Optional[int] = ..., current_page: _Optional[int] = ..., show_size: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateCACertificateStatusRequest(_message.Message):
    __slots__ = ("identifier", "status")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    status: str
    def __init__(self, identifier: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class UpdateCACertificateStatusResponse(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ApiPassthroughSubject(_message.Message):
    __slots__ = ("country", "state", "locality", "organization", "organization_unit", "common_name", "custom_attributes")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    country: str
    state: str
    locality: str
    organization: str
    organization_unit: str
    common_name: str
    custom_attributes: _containers.RepeatedCompositeFieldContainer[CustomAttribute]
    def __init__(self, country: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., common_name: _Optional[str] = ..., custom_attributes: _Optional[_Iterable[_Union[CustomAttribute, _Mapping]]] = ...) -> None: ...

class CustomAttribute(_message.Message):
    __slots__ = ("object_identifier", "value")
    OBJECT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    object_identifier: str
    value: str
    def __init__(self, object_identifier: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class KeyUsage(_message.Message):
    __slots__ = ("digital_signature", "content_commitment", "non_repudiation", "key_encipherment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only")
    DIGITAL_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    NON_REPUDIATION_FIELD_NUMBER: _ClassVar[int]
    KEY_ENCIPHERMENT_FIELD_NUMBER: _ClassVar[int]
    DATA_ENCIPHERMENT_FIELD_NUMBER: _ClassVar[int]
    KEY_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    ENCIPHER_ONLY_FIELD_NUMBER: _ClassVar[int]
    DECIPHER_ONLY_FIELD_NUMBER: _ClassVar[int]
    digital_signature: bool
    content_commitment: bool
    non_repudiation: bool
    key_encipherment: bool
    data_encipherment: bool
    key_agreement: bool
    encipher_only: bool
    decipher_only: bool
    def __init__(self, digital_signature: _Optional[bool] = ..., content_commitment: _Optional[bool] = ..., non_repudiation: _Optional[bool] = ..., key_encipherment: _Optional[bool] = ..., data_encipherment: _Optional[bool] = ..., key_agreement: _Optional[bool] = ..., encipher_only: _Optional[bool] = ..., decipher_only: _Optional[bool] = ...) -> None: ...

class SubjectAlternativeName(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Extensions(_message.Message):
    __slots__ = ("key_usage", "extended_key_usages", "subject_alternative_names")
    KEY_USAGE_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_KEY_USAGES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ALTERNATIVE_NAMES_FIELD_NUMBER: _ClassVar[int]
    key_usage: KeyUsage
    extended_key_usages: _containers.RepeatedScalarFieldContainer[str]
    subject_alternative_names: _containers.RepeatedCompositeFieldContainer[SubjectAlternativeName]
    def __init__(self, key_usage: _Optional[_Union[KeyUsage, _Mapping]] = ..., extended_key_usages: _Optional[_Iterable[str]] = ..., subject_alternative_names: _Optional[_Iterable[_Union[SubjectAlternativeName, _Mapping]]] = ...) -> None: ...

class ApiPassthrough(_message.Message):
    __slots__ = ("subject", "extensions", "criticals", "serial_number")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    CRITICALS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    subject: ApiPassthroughSubject
    extensions: Extensions
    criticals: _containers.RepeatedScalarFieldContainer[str]
    serial_number: str
    def __init__(self, subject: _Optional[_Union[ApiPassthroughSubject, _Mapping]] = ..., extensions: _Optional[_Union[Extensions, _Mapping]] = ..., criticals: _Optional[_Iterable[str]] = ..., serial_number: _Optional[str] = ...) -> None: ...

class CreateCustomCertificateRequest(_message.Message):
    __slots__ = ("parent_identifier", "csr", "validity", "api_passthrough", "immediately", "enable_crl", "tags", "resource_group_id", "custom_identifier")
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    API_PASSTHROUGH_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATELY_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    parent_identifier: str
    csr: str
    validity: str
    api_passthrough: ApiPassthrough
    immediately: int
    enable_crl: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    custom_identifier: str
    def __init__(self, parent_identifier: _Optional[str] = ..., csr: _Optional[str] = ..., validity: _Optional[str] = ..., api_passthrough: _Optional[_Union[ApiPassthrough, _Mapping]] = ..., immediately: _Optional[int] = ..., enable_crl: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ..., custom_identifier: _Optional[str] = ...) -> None: ...

class CreateCustomCertificateResponse(_message.Message):
    __slots__ = ("identifier", "certificate", "certificate_chain", "serial_number", "request_id")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    certificate: str
    certificate_chain: str
    serial_number: str
    request_id: str
    def __init__(self, identifier: _Optional[str] = ..., certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., serial_number: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateServerCertificateWithCsrRequest(_message.Message):
    __slots__ = ("csr", "domain", "organization", "organization_unit", "country", "common_name", "state", "locality", "algorithm", "parent_identifier", "years", "months", "days", "before_time", "after_time", "immediately", "enable_crl", "tags", "resource_group_id")
    CSR_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATELY_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    csr: str
    domain: str
    organization: str
    organization_unit: str
    country: str
    common_name: str
    state: str
    locality: str
    algorithm: str
    parent_identifier: str
    years: int
    months: int
    days: int
    before_time: int
    after_time: int
    immediately: int
    enable_crl: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    def __init__(self, csr: _Optional[str] = ..., domain: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country: _Optional[str] = ..., common_name: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., algorithm: _Optional[str] = ..., parent_identifier: _Optional[str] = ..., years: _Optional[int] = ..., months: _Optional[int] = ..., days: _Optional[int] = ..., before_time: _Optional[int] = ..., after_time: _Optional[int] = ..., immediately: _Optional[int] = ..., enable_crl: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ...) -> None: ...

class CreateServerCertificateWithCsrResponse(_message.Message):
    __slots__ = ("x509_certificate", "certificate_chain", "identifier", "serial_number", "request_id")
    X509_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    x509_certificate: str
    certificate_chain: str
    identifier: str
    serial_number: str
    request_id: str
    def __init__(self, x509_certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., identifier: _Optional[str] = ..., serial_number: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateServerCertificateRequest(_message.Message):
    __slots__ = ("domain", "organization", "organization_unit", "country", "common_name", "state", "locality", "algorithm", "parent_identifier", "years", "months", "days", "before_time", "after_time", "immediately", "enable_crl", "tags", "resource_group_id", "exportable_private_key", "protection_level")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATELY_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORTABLE_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    domain: str
    organization: str
    organization_unit: str
    country: str
    common_name: str
    state: str
    locality: str
    algorithm: str
    parent_identifier: str
    years: int
    months: int
    days: int
    before_time: int
    after_time: int
    immediately: int
    enable_crl: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    exportable_private_key: bool
    protection_level: str
    def __init__(self, domain: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country: _Optional[str] = ..., common_name: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., algorithm: _Optional[str] = ..., parent_identifier: _Optional[str] = ..., years: _Optional[int] = ..., months: _Optional[int] = ..., days: _Optional[int] = ..., before_time: _Optional[int] = ..., after_time: _Optional[int] = ..., immediately: _Optional[int] = ..., enable_crl: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ..., exportable_private_key: _Optional[bool] = ..., protection_level: _Optional[str] = ...) -> None: ...

class CreateServerCertificateResponse(_message.Message):
    __slots__ = ("x509_certificate", "certificate_chain", "identifier", "serial_number", "request_id")
    X509_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    x509_certificate: str
    certificate_chain: str
    identifier: str
    serial_number: str
    request_id: str
    def __init__(self, x509_certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., identifier: _Optional[str] = ..., serial_number: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateClientCertificateRequest(_message.Message):
    __slots__ = ("san_type", "san_value", "organization", "organization_unit", "country", "common_name", "state", "locality", "algorithm", "parent_identifier", "years", "months", "days", "before_time", "after_time", "immediately", "enable_crl", "tags", "resource_group_id", "exportable_private_key", "protection_level")
    SAN_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAN_VALUE_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATELY_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORTABLE_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    san_type: int
    san_value: str
    organization: str
    organization_unit: str
    country: str
    common_name: str
    state: str
    locality: str
    algorithm: str
    parent_identifier: str
    years: int
    months: int
    days: int
    before_time: int
    after_time: int
    immediately: int
    enable_crl: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    exportable_private_key: bool
    protection_level: str
    def __init__(self, san_type: _Optional[int] = ..., san_value: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country: _Optional[str] = ..., common_name: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., algorithm: _Optional[str] = ..., parent_identifier: _Optional[str] = ..., years: _Optional[int] = ..., months: _Optional[int] = ..., days: _Optional[int] = ..., before_time: _Optional[int] = ..., after_time: _Optional[int] = ..., immediately: _Optional[int] = ..., enable_crl: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ..., exportable_private_key: _Optional[bool] = ..., protection_level: _Optional[str] = ...) -> None: ...

class CreateClientCertificateResponse(_message.Message):
    __slots__ = ("x509_certificate", "certificate_chain", "identifier", "serial_number", "request_id")
    X509_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    x509_certificate: str
    certificate_chain: str
    identifier: str
    serial_number: str
    request_id: str
    def __init__(self, x509_certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., identifier: _Optional[str] = ..., serial_number: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateClientCertificateWithCsrRequest(_message.Message):
    __slots__ = ("csr", "san_type", "san_value", "organization", "organization_unit", "country", "common_name", "state", "locality", "algorithm", "parent_identifier", "years", "months", "days", "before_time", "after_time", "immediately", "enable_crl", "tags", "resource_group_id")
    CSR_FIELD_NUMBER: _ClassVar[int]
    SAN_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAN_VALUE_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATELY_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CRL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    csr: str
    san_type: int
    san_value: str
    organization: str
    organization_unit: str
    country: str
    common_name: str
    state: str
    locality: str
    algorithm: str
    parent_identifier: str
    years: int
    months: int
    days: int
    before_time: int
    after_time: int
    immediately: int
    enable_crl: int
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    def __init__(self, csr: _Optional[str] = ..., san_type: _Optional[int] = ..., san_value: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country: _Optional[str] = ..., common_name: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., algorithm: _Optional[str] = ..., parent_identifier: _Optional[str] = ..., years: _Optional[int] = ..., months: _Optional[int] = ..., days: _Optional[int] = ..., before_time: _Optional[int] = ..., after_time: _Optional[int] = ..., immediately: _Optional[int] = ..., enable_crl: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ...) -> None: ...

class CreateClientCertificateWithCsrResponse(_message.Message):
    __slots__ = ("x509_certificate", "certificate_chain", "identifier", "serial_number", "request_id")
    X509_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    x509_certificate: str
    certificate_chain: str
    identifier: str
    serial_number: str
    request_id: str
    def __init__(self, x509_certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., identifier: _Optional[str] = ..., serial_number: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ClientCertificate(_message.Message):
    __slots__ = ("identifier", "parent_identifier", "certificate_type", "status", "serial_number", "algorithm", "key_size", "sign_algorithm", "subject_dn", "common_name", "organization", "organization_unit", "country_code", "state", "locality", "san", "before_date", "after_date", "x509_certificate", "certificate_chain", "sha2", "revoke_date", "failure_reason", "system_generated_key", "tags", "resource_group_id", "custom_identifier")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_SIZE_FIELD_NUMBER: _ClassVar[int]
    SIGN_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_DN_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_UNIT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    SAN_FIELD_NUMBER: _ClassVar[int]
    BEFORE_DATE_FIELD_NUMBER: _ClassVar[int]
    AFTER_DATE_FIELD_NUMBER: _ClassVar[int]
    X509_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    SHA2_FIELD_NUMBER: _ClassVar[int]
    REVOKE_DATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_GENERATED_KEY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    parent_identifier: str
    certificate_type: str
    status: str
    serial_number: str
    algorithm: str
    key_size: int
    sign_algorithm: str
    subject_dn: str
    common_name: str
    organization: str
    organization_unit: str
    country_code: str
    state: str
    locality: str
    san: str
    before_date: int
    after_date: int
    x509_certificate: str
    certificate_chain: str
    sha2: str
    revoke_date: int
    failure_reason: str
    system_generated_key: bool
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    custom_identifier: str
    def __init__(self, identifier: _Optional[str] = ..., parent_identifier: _Optional[str] = ..., certificate_type: _Optional[str] = ..., status: _Optional[str] = ..., serial_number: _Optional[str] = ..., algorithm: _Optional[str] = ..., key_size: _Optional[int] = ..., sign_algorithm: _Optional[str] = ..., subject_dn: _Optional[str] = ..., common_name: _Optional[str] = ..., organization: _Optional[str] = ..., organization_unit: _Optional[str] = ..., country_code: _Optional[str] = ..., state: _Optional[str] = ..., locality: _Optional[str] = ..., san: _Optional[str] = ..., before_date: _Optional[int] = ..., after_date: _Optional[int] = ..., x509_certificate: _Optional[str] = ..., certificate_chain: _Optional[str] = ..., sha2: _Optional[str] = ..., revoke_date: _Optional[int] = ..., failure_reason: _Optional[str] = ..., system_generated_key: _Optional[bool] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ..., custom_identifier: _Optional[str] = ...) -> None: ...

class DescribeClientCertificateRequest(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    def __init__(self, identifier: _Optional[str] = ...) -> None: ...

class DescribeClientCertificateResponse(_message.Message):
    __slots__ = ("certificate", "request_id")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate: ClientCertificate
    request_id: str
    def __init__(self, certificate: _Optional[_Union[ClientCertificate, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DescribeClientCertificateForSerialNumberRequest(_message.Message):
    __slots__ = ("serial_number",)
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    serial_number: str
    def __init__(self, serial_number: _Optional[str] = ...) -> None: ...

class DescribeClientCertificateForSerialNumberResponse(_message.Message):
    __slots__ = ("certificate_list", "request_id")
    CERTIFICATE_LIST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_list: _containers.RepeatedCompositeFieldContainer[ClientCertificate]
    request_id: str
    def __init__(self, certificate_list: _Optional[_Iterable[_Union[ClientCertificate, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DescribeClientCertificateStatusRequest(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    def __init__(self, identifier: _Optional[str] = ...) -> None: ...

class CertificateStatus(_message.Message):
    __slots__ = ("identifier", "status", "serial_number", "revoke_time", "failure_reason")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    status: str
    serial_number: str
    revoke_time: int
    failure_reason: str
    def __init__(self, identifier: _Optional[str] = ..., status: _Optional[str] = ..., serial_number: _Optional[str] = ..., revoke_time: _Optional[int] = ..., failure_reason: _Optional[str] = ...) -> None: ...

class DescribeClientCertificateStatusResponse(_message.Message):
    __slots__ = ("certificate_status", "request_id")
    CERTIFICATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_status: _containers.RepeatedCompositeFieldContainer[CertificateStatus]
    request_id: str
    def __init__(self, certificate_status: _Optional[_Iterable[_Union[CertificateStatus, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListClientCertificateRequest(_message.Message):
    __slots__ = ("current_page", "show_size", "parent_identifier", "status", "tags", "resource_group_id")
    CURRENT_PAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    current_page: int
    show_size: int
    parent_identifier: str
    status: str
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tag]
    resource_group_id: str
    def __init__(self, current_page: _Optional[int] = ..., show_size: _Optional[int] = ..., parent_identifier: _Optional[str] = ..., status: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.Tag, _Mapping]]] = ..., resource_group_id: _Optional[str] = ...) -> None: ...

class ListClientCertificateResponse(_message.Message):
    __slots__ = ("certificate_list", "total_count", "page_count", "current_page", "show_size", "request_id")
    CERTIFICATE_LIST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_list: _containers.RepeatedCompositeFieldContainer[ClientCertificate]
    total_count: int
    page_count: int
    current_page: int
    show_size: int
    request_id: str
    def __init__(self, certificate_list: _Optional[_Iterable[_Union[ClientCertificate, _Mapping]]] = ..., total_count: _Optional[int] = ..., page_count: _Optional[int] = ..., current_page: _Optional[int] = ..., show_size: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class DescribeCertificatePrivateKeyRequest(_message.Message):
    __slots__ = ("identifier", "encrypted_code")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_CODE_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    encrypted_code: str
    def __init__(self, identifier: _Optional[str] = ..., encrypted_code: _Optional[str] = ...) -> None: ...

class DescribeCertificatePrivateKeyResponse(_message.Message):
    __slots__ = ("encrypted_private_key", "request_id")
    ENCRYPTED_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    encrypted_private_key: str
    request_id: str
    def __init__(self, encrypted_private_key: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateRevokeClientCertificateRequest(_message.Message):
    __slots__ = ("identifier", "reason_code")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    reason_code: int
    def __init__(self, identifier: _Optional[str] = ..., reason_code: _Optional[int] = ...) -> None: ...

class CreateRevokeClientCertificateResponse(_message.Message):
    __slots__ = ("revoke_date", "request_id")
    REVOKE_DATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    revoke_date: int
    request_id: str
    def __init__(self, revoke_date: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListRevokeCertificateRequest(_message.Message):
    __slots__ = ("current_page", "show_size", "parent_identifier")
    CURRENT_PAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    current_page: int
    show_size: int
    parent_identifier: str
    def __init__(self, current_page: _Optional[int] = ..., show_size: _Optional[int] = ..., parent_identifier: _Optional[str] = ...) -> None: ...

class RevokedCertificate(_message.Message):
    __slots__ = ("identifier", "parent_identifier", "serial_number", "revoke_date", "reason_code", "common_name")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVOKE_DATE_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    parent_identifier: str
    serial_number: str
    revoke_date: int
    reason_code: int
    common_name: str
    def __init__(self, identifier: _Optional[str] = ..., parent_identifier: _Optional[str] = ..., serial_number: _Optional[str] = ..., revoke_date: _Optional[int] = ..., reason_code: _Optional[int] = ..., common_name: _Optional[str] = ...) -> None: ...

class ListRevokeCertificateResponse(_message.Message):
    __slots__ = ("certificate_list", "total_count", "page_count", "current_page", "show_size", "request_id")
    CERTIFICATE_LIST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_list: _containers.RepeatedCompositeFieldContainer[RevokedCertificate]
    total_count: int
    page_count: int
    current_page: int
    show_size: int
    request_id: str
    def __init__(self, certificate_list: _Optional[_Iterable[_Union[RevokedCertificate, _Mapping]]] = ..., total_count: _Optional[int] = ..., page_count: _Optional[int] = ..., current_page: _Optional[int] = ..., show_size: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteClientCertificateRequest(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    def __init__(self, identifier: _Optional[str] = ...) -> None: ...

class DeleteClientCertificateResponse(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...
