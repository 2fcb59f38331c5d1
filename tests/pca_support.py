"""Helpers for the Private CA gRPC tests: CSRs, pkilint, openssl, a running server."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pki_checkers import errors, pkilint_rfc5280
from sqlalchemy import Engine, func, select

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.gen.hsmca.v1 import private_ca_pb2_grpc
from service.storage.schema import ca as ca_t
from service.storage.schema import certificate as cert_t

OWNER = "tenant-test"
BASE_URL = "http://127.0.0.1:8080"


@dataclass
class Pca:
    """A running in-process server with the real PrivateCa servicer."""

    stub: private_ca_pb2_grpc.PrivateCaStub
    engine: Engine
    service: Any
    channel: grpc.Channel


@dataclass(frozen=True)
class Hierarchy:
    """A root and a sub CA created over the API."""

    algorithm: str
    root_id: str
    root_der: bytes
    sub_id: str
    sub_der: bytes


def new_key(algorithm: str) -> Any:
    """A software private key for a CSR: RSA_2048/RSA_1024/ECC_256."""
    if algorithm.startswith("RSA"):
        return rsa.generate_private_key(65537, int(algorithm.split("_")[1]))
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: Any, cn: str, sans: Sequence[str] = ()) -> str:
    """A PEM CSR with CN and dNSName/iPAddress SANs."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if sans:
        names: list[x509.GeneralName] = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def pem_to_der(text: str) -> bytes:
    return x509.load_pem_x509_certificate(text.encode()).public_bytes(
        serialization.Encoding.DER)


def pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pkilint_errors(cert_der: bytes) -> list[tuple[str, str]]:
    """ERROR/FATAL findings of pkilint's RFC 5280 certificate validator."""
    return errors(pkilint_rfc5280(cert_der))


def create_hierarchy(pca: Pca, algorithm: str, *, sub_ekus: tuple[str, ...] = (),
               enable_crl: int = 1) -> Hierarchy:
    """A root and a sub CA of ``algorithm`` created over the API."""
    root = pca.stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
        common_name=f"hsmca test root {algorithm}", organization="hsmca",
        organization_unit="test", country_code="CN", state="Zhejiang", locality="Hangzhou",
        algorithm=algorithm, years=10, enable_crl=1, crl_day=7))
    sub = pca.stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
        parent_identifier=root.identifier, common_name=f"hsmca test sub {algorithm}",
        organization="hsmca", country_code="CN", state="Zhejiang", locality="Hangzhou",
        algorithm=algorithm, years=5, extended_key_usages=list(sub_ekus),
        enable_crl=enable_crl, crl_day=3))
    return Hierarchy(algorithm, root.identifier, pem_to_der(root.certificate),
                     sub.identifier, pem_to_der(sub.certificate))


def service_hierarchy(service: Any, owner: str, name: str) -> str:
    """An ECC_256 root and sub CA made through a PrivateCaService itself (no gRPC): the sub
    CA's identifier."""
    from service.private_ca.requests import CreateRootCa, CreateSubCa, SubjectFields

    root = service.create_root_ca(owner, CreateRootCa(
        SubjectFields(common_name=f"{name} root", organization="hsmca", country="CN"),
        algorithm="ECC_256", years=10))
    sub = service.create_sub_ca(owner, CreateSubCa(
        root.identifier, SubjectFields(common_name=f"{name} sub", organization="hsmca",
                                       country="CN"), algorithm="ECC_256", years=5))
    return str(sub.identifier)


def server_request(parent: str, cn: str, *, immediately: int = 1) -> Any:
    """A service-level CreateServerCertificate for a fresh P-256 CSR with ``cn`` as CN and
    DNS SAN, valid 30 days."""
    from service.private_ca.requests import (
        CreateServerCertificate,
        IssueCommon,
        SubjectFields,
        ValidityPeriod,
    )

    return CreateServerCertificate(
        common=IssueCommon(parent, immediately=immediately),
        subject=SubjectFields(common_name=cn), validity=ValidityPeriod(days=30),
        csr=make_csr(new_key("ECC_256"), cn, [cn]))


def snapshot(pca: Pca, tokens: tuple[Any, ...]) -> tuple[int, ...]:
    """Rows of the CA and certificate tables and objects in each token: a refusal keeps them."""
    with pca.engine.connect() as conn:
        counts = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (ca_t, cert_t)]
    for token in tokens:
        counts.append(token.run(lambda s: len(list(s.get_objects()))))
    return tuple(counts)
