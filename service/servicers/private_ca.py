"""The PrivateCa servicer: proto <-> domain only, one domain call per RPC.

No error handling here: domain code raises service.errors classes and the one interceptor
(service/rpc/interceptor.py) maps them to gRPC statuses with the API's reasons. The RPCs
of the lifecycle (lookup, revocation, private key retrieval, UpdateCACertificateStatus) call
service/private_ca/lifecycle.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc

from service import limits
from service.auth.principal import current_tenant
from service.errors import InvalidArgument
from service.gen.hsmca.v1 import common_pb2, private_ca_pb2, private_ca_pb2_grpc
from service.pki.profiles import KeyUsage
from service.private_ca.crls import CrlPublisher
from service.private_ca.lifecycle import ClientCertificateInfo, Lifecycle
from service.private_ca.requests import (
    ApiPassthrough,
    CaInfo,
    CreateClientCertificate,
    CreateCustomCertificate,
    CreateRootCa,
    CreateServerCertificate,
    CreateSubCa,
    IssueCommon,
    IssuedCertificate,
    PassthroughSubject,
    SubjectFields,
    SystemKey,
    ValidityPeriod,
)
from service.private_ca.service import PrivateCaService
from service.rpc.server import AddServicerFn

__all__ = ["PrivateCaServicer", "add_to_server", "private_ca_servicer_pair"]

add_to_server: AddServicerFn = private_ca_pb2_grpc.add_PrivateCaServicer_to_server


def _tags(tags: Iterable[common_pb2.Tag]) -> dict[str, str]:
    return limits.check_tags(((t.key, t.value) for t in tags), reason="InvalidParameter.Tags")


def _resource_group(value: str) -> str:
    return limits.check_length(value, limits.MAX_RESOURCE_GROUP_ID_CHARS, "resource_group_id",
                               "InvalidParameter.ResourceGroupId")


_R = TypeVar("_R")


def _opt(msg: Any, name: str) -> Any:
    """A proto3 ``optional`` field's value, or None when absent."""
    return getattr(msg, name) if msg.HasField(name) else None


def _validity(msg: Any) -> ValidityPeriod:
    return ValidityPeriod(years=_opt(msg, "years"), months=_opt(msg, "months"),
                          days=_opt(msg, "days"), before_time=_opt(msg, "before_time"),
                          after_time=_opt(msg, "after_time"))


def _issued(response_type: Callable[..., _R], issued: IssuedCertificate) -> _R:
    """The response of the four server/client issuance calls, which share their fields."""
    return response_type(
        x509_certificate=issued.certificate_pem, certificate_chain=issued.chain_pem,
        identifier=issued.identifier, serial_number=issued.serial_number)


def _common(msg: Any) -> IssueCommon:
    return IssueCommon(parent_identifier=msg.parent_identifier,
                       immediately=_opt(msg, "immediately"),
                       enable_crl=_enable(msg.enable_crl, "enable_crl"),
                       tags=_tags(msg.tags),
                       resource_group_id=_resource_group(msg.resource_group_id))


def _enable(value: int, name: str) -> bool:
    if value not in (0, 1):
        raise InvalidArgument(f"{name} must be 0 or 1", reason="InvalidParameter.EnableCrl")
    return value == 1


def _leaf_subject(msg: Any) -> SubjectFields:
    return SubjectFields(common_name=msg.common_name, organization=msg.organization,
                         organization_unit=msg.organization_unit, country=msg.country,
                         state=msg.state, locality=msg.locality)


def _key_usage(ku: private_ca_pb2.KeyUsage) -> KeyUsage:
    return KeyUsage(digital_signature=ku.digital_signature,
                    content_commitment=ku.content_commitment or ku.non_repudiation,
                    key_encipherment=ku.key_encipherment, data_encipherment=ku.data_encipherment,
                    key_agreement=ku.key_agreement, encipher_only=ku.encipher_only,
                    decipher_only=ku.decipher_only)


def _passthrough(ap: private_ca_pb2.ApiPassthrough) -> ApiPassthrough:
    subject = None
    if ap.HasField("subject"):
        s = ap.subject
        subject = PassthroughSubject(
            SubjectFields(common_name=s.common_name, organization=s.organization,
                          organization_unit=s.organization_unit, country=s.country,
                          state=s.state, locality=s.locality),
            tuple((a.object_identifier, a.value) for a in s.custom_attributes))
    ext = ap.extensions
    limits.check_count(len(ext.subject_alternative_names), limits.active().max_sans,
                       "subject alternative names", "InvalidParameter.SubjectAlternativeNames")
    ku = _key_usage(ext.key_usage) if ext.HasField("key_usage") else None
    return ApiPassthrough(
        subject=subject, key_usage=None if ku is None or ku.is_empty() else ku,
        extended_key_usages=tuple(ext.extended_key_usages),
        subject_alternative_names=tuple((n.type, n.value)
                                        for n in ext.subject_alternative_names),
        criticals=tuple(ap.criticals), serial_number=ap.serial_number)


def _ca_message(c: CaInfo) -> private_ca_pb2.CACertificate:
    return private_ca_pb2.CACertificate(
        identifier=c.identifier, parent_identifier=c.parent_identifier,
        certificate_type=c.certificate_type, status=c.status, serial_number=c.serial_number,
        algorithm=c.algorithm, key_size=c.key_size, sign_algorithm=c.sign_algorithm,
        subject_dn=c.subject_dn, common_name=c.common_name, organization=c.organization,
        organization_unit=c.organization_unit, country_code=c.country_code, state=c.state,
        locality=c.locality, years=c.years,
        before_date=int(c.not_before.timestamp() * 1000),
        after_date=int(c.not_after.timestamp() * 1000),
        x509_certificate=c.certificate_pem, certificate_chain=c.chain_pem, sha2=c.sha2,
        path_len_constraint=c.path_len_constraint,
        extended_key_usages=list(c.extended_key_usages), enable_crl=int(c.enable_crl),
        crl_day=c.crl_day, crl_url=c.crl_url, cert_issued_count=c.cert_issued_count,
        tags=[common_pb2.Tag(key=k, value=v) for k, v in c.tags.items()])


def _millis(value: dt.datetime | None) -> int:
    return int(value.timestamp() * 1000) if value is not None else 0


def _client_message(c: ClientCertificateInfo) -> private_ca_pb2.ClientCertificate:
    s = c.subject
    return private_ca_pb2.ClientCertificate(
        identifier=c.identifier, parent_identifier=c.parent_identifier,
        certificate_type=c.certificate_type, status=c.status, serial_number=c.serial_number,
        algorithm=c.algorithm, key_size=c.key_size, sign_algorithm=c.sign_algorithm,
        subject_dn=c.subject_dn, common_name=s.get("common_name", ""),
        organization=s.get("organization", ""),
        organization_unit=s.get("organization_unit", ""),
        country_code=s.get("country_code", ""), state=s.get("state", ""),
        locality=s.get("locality", ""), san=c.san, before_date=_millis(c.not_before),
        after_date=_millis(c.not_after), x509_certificate=c.certificate_pem,
        certificate_chain=c.chain_pem, sha2=c.sha2, revoke_date=_millis(c.revoked_at),
        failure_reason=c.failure_reason, system_generated_key=c.system_generated_key,
        tags=[common_pb2.Tag(key=k, value=v) for k, v in c.tags.items()],
        resource_group_id=c.resource_group_id, custom_identifier=c.custom_identifier)


class PrivateCaServicer(private_ca_pb2_grpc.PrivateCaServicer):
    """hsmca.v1.PrivateCa over :class:`PrivateCaService`.

    Every call acts for the tenant of the caller's authenticated principal (``_owner``).
    """

    def __init__(self, service: PrivateCaService, lifecycle: Lifecycle | None = None) -> None:
        self._service = service
        self._lifecycle = lifecycle or Lifecycle(service, CrlPublisher(service))

    @property
    def _owner(self) -> str:
        return current_tenant()

    # --- lookup and lifecycle --------------------------------------------------------

    def UpdateCACertificateStatus(
        self, request: private_ca_pb2.UpdateCACertificateStatusRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.UpdateCACertificateStatusResponse:
        """Revoke a CA (ISSUE -> REVOKE)."""
        self._lifecycle.update_ca_status(self._owner, request.identifier, request.status)
        return private_ca_pb2.UpdateCACertificateStatusResponse()

    def DescribeClientCertificate(
        self, request: private_ca_pb2.DescribeClientCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DescribeClientCertificateResponse:
        """Describe one end-entity certificate."""
        info = self._lifecycle.describe(self._owner, request.identifier)
        return private_ca_pb2.DescribeClientCertificateResponse(
            certificate=_client_message(info))

    def DescribeClientCertificateForSerialNumber(
        self, request: private_ca_pb2.DescribeClientCertificateForSerialNumberRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DescribeClientCertificateForSerialNumberResponse:
        """Describe the end-entity certificates with a serial number."""
        infos = self._lifecycle.describe_by_serial(self._owner, request.serial_number)
        return private_ca_pb2.DescribeClientCertificateForSerialNumberResponse(
            certificate_list=[_client_message(i) for i in infos])

    def DescribeClientCertificateStatus(
        self, request: private_ca_pb2.DescribeClientCertificateStatusRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DescribeClientCertificateStatusResponse:
        """Statuses of comma-separated certificate identifiers."""
        statuses = self._lifecycle.statuses(self._owner, request.identifier)
        return private_ca_pb2.DescribeClientCertificateStatusResponse(certificate_status=[
            private_ca_pb2.CertificateStatus(
                identifier=s.identifier, status=s.status, serial_number=s.serial_number,
                revoke_time=_millis(s.revoked_at), failure_reason=s.failure_reason)
            for s in statuses])

    def ListClientCertificate(
        self, request: private_ca_pb2.ListClientCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.ListClientCertificateResponse:
        """List end-entity certificates, one page."""
        r = request
        page = self._lifecycle.list(self._owner, current_page=r.current_page,
                                    show_size=r.show_size, parent_identifier=r.parent_identifier,
                                    status=r.status, tags=_tags(r.tags),
                                    resource_group_id=_resource_group(r.resource_group_id))
        return private_ca_pb2.ListClientCertificateResponse(
            certificate_list=[_client_message(c) for c in page.items],
            total_count=page.total_count, page_count=page.page_count,
            current_page=page.current_page, show_size=page.show_size)

    def DescribeCertificatePrivateKey(
        self, request: private_ca_pb2.DescribeCertificatePrivateKeyRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DescribeCertificatePrivateKeyResponse:
        """A system-generated exportable key as encrypted PKCS#8 PEM."""
        pem = self._lifecycle.private_key(self._owner, request.identifier,
                                          request.encrypted_code)
        return private_ca_pb2.DescribeCertificatePrivateKeyResponse(encrypted_private_key=pem)

    def CreateRevokeClientCertificate(
        self, request: private_ca_pb2.CreateRevokeClientCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateRevokeClientCertificateResponse:
        """Revoke an end-entity certificate (RFC 5280 reason code)."""
        when = self._lifecycle.revoke(self._owner, request.identifier, request.reason_code)
        return private_ca_pb2.CreateRevokeClientCertificateResponse(revoke_date=_millis(when))

    def ListRevokeCertificate(
        self, request: private_ca_pb2.ListRevokeCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.ListRevokeCertificateResponse:
        """List revoked end-entity certificates, one page."""
        r = request
        page = self._lifecycle.list_revoked(self._owner, current_page=r.current_page,
                                            show_size=r.show_size,
                                            parent_identifier=r.parent_identifier)
        return private_ca_pb2.ListRevokeCertificateResponse(
            certificate_list=[private_ca_pb2.RevokedCertificate(
                identifier=i.identifier, parent_identifier=i.parent_identifier,
                serial_number=i.serial_number, revoke_date=_millis(i.revoked_at),
                reason_code=i.reason_code, common_name=i.common_name) for i in page.items],
            total_count=page.total_count, page_count=page.page_count,
            current_page=page.current_page, show_size=page.show_size)

    def DeleteClientCertificate(
        self, request: private_ca_pb2.DeleteClientCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DeleteClientCertificateResponse:
        """Delete a revoked certificate (and its system-generated key)."""
        self._lifecycle.delete(self._owner, request.identifier)
        return private_ca_pb2.DeleteClientCertificateResponse()

    # --- CA hierarchy and issuance -----------------------------------------------------

    def CreateRootCACertificate(
        self, request: private_ca_pb2.CreateRootCACertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateRootCACertificateResponse:
        """Create a self-signed root CA."""
        r = request
        created = self._service.create_root_ca(self._owner, CreateRootCa(
            subject=SubjectFields(r.common_name, r.organization, r.organization_unit,
                                  r.country_code, r.state, r.locality),
            algorithm=r.algorithm, years=r.years,
            enable_crl=_enable(r.enable_crl, "enable_crl"), crl_day=r.crl_day,
            tags=_tags(r.tags), resource_group_id=_resource_group(r.resource_group_id)))
        return private_ca_pb2.CreateRootCACertificateResponse(
            identifier=created.identifier, certificate=created.certificate_pem,
            certificate_chain=created.chain_pem)

    def CreateSubCACertificate(
        self, request: private_ca_pb2.CreateSubCACertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateSubCACertificateResponse:
        """Create a subordinate CA under a root."""
        r = request
        created = self._service.create_sub_ca(self._owner, CreateSubCa(
            parent_identifier=r.parent_identifier,
            subject=SubjectFields(r.common_name, r.organization, r.organization_unit,
                                  r.country_code, r.state, r.locality),
            algorithm=r.algorithm, years=r.years, path_len_constraint=r.path_len_constraint,
            extended_key_usages=tuple(r.extended_key_usages),
            enable_crl=_enable(r.enable_crl, "enable_crl"), crl_day=r.crl_day,
            tags=_tags(r.tags), resource_group_id=_resource_group(r.resource_group_id)))
        return private_ca_pb2.CreateSubCACertificateResponse(
            identifier=created.identifier, certificate=created.certificate_pem,
            certificate_chain=created.chain_pem)

    def DescribeCACertificate(
        self, request: private_ca_pb2.DescribeCACertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DescribeCACertificateResponse:
        """Describe one CA."""
        info = self._service.describe_ca(self._owner, request.identifier)
        return private_ca_pb2.DescribeCACertificateResponse(certificate=_ca_message(info))

    def DescribeCACertificateList(
        self, request: private_ca_pb2.DescribeCACertificateListRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DescribeCACertificateListResponse:
        """List CAs, one page."""
        page = self._service.list_cas(self._owner, current_page=request.current_page,
                                      show_size=request.show_size,
                                      identifier=request.identifier,
                                      ca_status=request.ca_status)
        return private_ca_pb2.DescribeCACertificateListResponse(
            certificate_list=[_ca_message(c) for c in page.items],
            total_count=page.total_count, page_count=page.page_count,
            current_page=page.current_page, show_size=page.show_size)

    def CreateCustomCertificate(
        self, request: private_ca_pb2.CreateCustomCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateCustomCertificateResponse:
        """Issue a certificate with caller-chosen subject, extensions and serial."""
        r = request
        issued = self._service.create_custom_certificate(self._owner, CreateCustomCertificate(
            common=_common(r), csr=r.csr, validity=r.validity,
            api_passthrough=_passthrough(r.api_passthrough),
            custom_identifier=limits.check_length(
                r.custom_identifier, limits.MAX_CUSTOM_IDENTIFIER_CHARS, "custom_identifier",
                "InvalidParameter.CustomIdentifier")))
        return private_ca_pb2.CreateCustomCertificateResponse(
            identifier=issued.identifier, certificate=issued.certificate_pem,
            certificate_chain=issued.chain_pem, serial_number=issued.serial_number)

    def CreateServerCertificateWithCsr(
        self, request: private_ca_pb2.CreateServerCertificateWithCsrRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateServerCertificateWithCsrResponse:
        """Issue a server certificate for the caller's CSR."""
        r = request
        issued = self._service.create_server_certificate(self._owner, CreateServerCertificate(
            common=_common(r), subject=_leaf_subject(r), validity=_validity(r), csr=r.csr,
            domain=r.domain, algorithm=r.algorithm))
        return _issued(private_ca_pb2.CreateServerCertificateWithCsrResponse, issued)

    def CreateServerCertificate(
        self, request: private_ca_pb2.CreateServerCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateServerCertificateResponse:
        """Issue a server certificate for a key the service generates."""
        r = request
        issued = self._service.create_server_certificate(self._owner, CreateServerCertificate(
            common=_common(r), subject=_leaf_subject(r), validity=_validity(r), csr=None,
            domain=r.domain, algorithm=r.algorithm,
            key=SystemKey(_opt(r, "exportable_private_key"), r.protection_level)))
        return _issued(private_ca_pb2.CreateServerCertificateResponse, issued)

    def CreateClientCertificate(
        self, request: private_ca_pb2.CreateClientCertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateClientCertificateResponse:
        """Issue a client certificate for a key the service generates."""
        r = request
        issued = self._service.create_client_certificate(self._owner, CreateClientCertificate(
            common=_common(r), subject=_leaf_subject(r), validity=_validity(r), csr=None,
            san_type=r.san_type, san_value=r.san_value, algorithm=r.algorithm,
            key=SystemKey(_opt(r, "exportable_private_key"), r.protection_level)))
        return _issued(private_ca_pb2.CreateClientCertificateResponse, issued)

    def CreateClientCertificateWithCsr(
        self, request: private_ca_pb2.CreateClientCertificateWithCsrRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.CreateClientCertificateWithCsrResponse:
        """Issue a client certificate for the caller's CSR."""
        r = request
        issued = self._service.create_client_certificate(self._owner, CreateClientCertificate(
            common=_common(r), subject=_leaf_subject(r), validity=_validity(r), csr=r.csr,
            san_type=r.san_type, san_value=r.san_value, algorithm=r.algorithm))
        return _issued(private_ca_pb2.CreateClientCertificateWithCsrResponse, issued)


def private_ca_servicer_pair(
    service: PrivateCaService, lifecycle: Lifecycle | None = None
) -> tuple[AddServicerFn, PrivateCaServicer]:
    """The (add_fn, servicer) pair build_server takes."""
    return add_to_server, PrivateCaServicer(service, lifecycle)
