"""Domain request and result types of the Private CA (one per API operation).

Plain frozen values with the API's parameter names in snake_case; the servicer fills them
from protobuf messages and nothing here knows about grpc. They are also what the
asynchronous jobs and idempotency records store (``dataclasses.asdict`` is JSON-ready).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from service.errors import InvalidArgument
from service.pki.profiles import KeyUsage

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_args(current_page: int, show_size: int) -> tuple[int, int]:
    """Validated (page, size) of a paged call; 0 means the default (page 1, 20 per page)."""
    page = current_page or 1
    size = show_size or DEFAULT_PAGE_SIZE
    if page < 1:
        raise InvalidArgument("current_page must be at least 1",
                              reason="InvalidParameter.CurrentPage")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"show_size must be 1..{MAX_PAGE_SIZE}",
                              reason="InvalidParameter.ShowSize")
    return page, size


@dataclasses.dataclass(frozen=True)
class SubjectFields:
    """The subject DN parameters shared by every create call; "" means not given."""

    common_name: str = ""
    organization: str = ""
    organization_unit: str = ""
    country: str = ""
    state: str = ""
    locality: str = ""


@dataclasses.dataclass(frozen=True)
class CreateRootCa:
    """CreateRootCACertificate."""

    subject: SubjectFields
    algorithm: str
    years: int
    enable_crl: bool = False
    crl_day: int = 0
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resource_group_id: str = ""


@dataclasses.dataclass(frozen=True)
class CreateSubCa:
    """CreateSubCACertificate."""

    parent_identifier: str
    subject: SubjectFields
    algorithm: str
    years: int
    path_len_constraint: int = 0
    extended_key_usages: tuple[str, ...] = ()
    enable_crl: bool = False
    crl_day: int = 0
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resource_group_id: str = ""


@dataclasses.dataclass(frozen=True)
class ValidityPeriod:
    """Years/Months/Days/BeforeTime/AfterTime of the server and client calls (None: unset)."""

    years: int | None = None
    months: int | None = None
    days: int | None = None
    before_time: int | None = None
    after_time: int | None = None


@dataclasses.dataclass(frozen=True)
class IssueCommon:
    """Parameters every end-entity call shares."""

    parent_identifier: str
    immediately: int | None = None  # None: the documented default, 0 (asynchronous)
    enable_crl: bool = False
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resource_group_id: str = ""


@dataclasses.dataclass(frozen=True)
class SystemKey:
    """Where a system-generated key goes (not in the API; see the proto comments)."""

    exportable_private_key: bool | None = None  # None: true
    protection_level: str = ""  # "", SOFTWARE or HSM


@dataclasses.dataclass(frozen=True)
class CreateServerCertificate:
    """CreateServerCertificateWithCsr (csr set) and CreateServerCertificate (csr None)."""

    common: IssueCommon
    subject: SubjectFields
    validity: ValidityPeriod
    csr: str | None = None
    domain: str = ""
    algorithm: str = ""
    key: SystemKey = SystemKey()


@dataclasses.dataclass(frozen=True)
class CreateClientCertificate:
    """CreateClientCertificateWithCsr (csr set) and CreateClientCertificate (csr None)."""

    common: IssueCommon
    subject: SubjectFields
    validity: ValidityPeriod
    csr: str | None = None
    san_type: int = 0
    san_value: str = ""
    algorithm: str = ""
    key: SystemKey = SystemKey()


@dataclasses.dataclass(frozen=True)
class PassthroughSubject:
    """ApiPassthrough.Subject: replaces the CSR's subject."""

    fields: SubjectFields
    custom_attributes: tuple[tuple[str, str], ...] = ()  # (object_identifier, value)


@dataclasses.dataclass(frozen=True)
class ApiPassthrough:
    """ApiPassthrough of CreateCustomCertificate."""

    subject: PassthroughSubject | None = None
    key_usage: KeyUsage | None = None  # None: no keyUsage extension
    extended_key_usages: tuple[str, ...] = ()
    subject_alternative_names: tuple[tuple[str, str], ...] = ()  # (type, value)
    criticals: tuple[str, ...] = ()
    serial_number: str = ""  # decimal; "" means a fresh random serial


@dataclasses.dataclass(frozen=True)
class CreateCustomCertificate:
    """CreateCustomCertificate."""

    common: IssueCommon
    csr: str
    validity: str
    api_passthrough: ApiPassthrough = ApiPassthrough()
    custom_identifier: str = ""


@dataclasses.dataclass(frozen=True)
class CaCreated:
    """Result of the CA create calls."""

    identifier: str
    certificate_pem: str
    chain_pem: str  # the certificates above it, PEM (empty for a root)


@dataclasses.dataclass(frozen=True)
class IssuedCertificate:
    """Result of the end-entity calls."""

    identifier: str
    certificate_pem: str
    serial_number: str  # lower-case hex
    chain_pem: str  # sub CA + root, PEM, when immediately = 2; else ""


@dataclasses.dataclass(frozen=True)
class CaInfo:
    """A CA as DescribeCACertificate reports it."""

    identifier: str
    parent_identifier: str
    certificate_type: str  # ROOT | SUB_ROOT
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
    not_before: dt.datetime
    not_after: dt.datetime
    certificate_pem: str
    chain_pem: str
    sha2: str
    path_len_constraint: int  # -1: none
    extended_key_usages: tuple[str, ...]
    enable_crl: bool
    crl_day: int
    crl_url: str
    cert_issued_count: int
    tags: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class CaPage:
    """One page of DescribeCACertificateList."""

    items: tuple[CaInfo, ...]
    total_count: int
    page_count: int
    current_page: int
    show_size: int
