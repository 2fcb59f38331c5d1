"""The operations CA: the root that identifies the server and its clients to each other.

Its key is generated once, non-exportable, in the HSM token (P-256, CKA_EXTRACTABLE false;
the token proves it with CKA_NEVER_EXTRACTABLE like every CA key). It signs three kinds of
certificate and one CRL, all outside the tenants' Private CA data:

- the gRPC server certificate (serverAuth; dNSName/iPAddress SANs for the listen names);
- client certificates for principals (clientAuth; a URI SAN when the principal id has a
  scheme, e.g. a SPIFFE ID, else the subject CN);
- the CRL of revoked client certificates, which every worker reloads when it changes.

The server's TLS key and the clients' keys are software keys, written mode 0600: gRPC's
``ssl_server_credentials`` and ``ssl_channel_credentials`` take the private key as bytes,
so a TLS key in the token would need a TLS stack that signs through PKCS#11 (see
docs/security.md). The CA key, which is what makes certificates trustworthy, never leaves
the token.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm.keys import KeySpec, generate_key_pair, key_exists, public_key_info
from hsm.token import Token
from service.pki.builder import (
    SIGNATURE_ALGORITHM_IDENTIFIERS,
    IssuanceRequest,
    Issuer,
    assemble_certificate,
    build_self_signed_tbs,
    build_tbs,
)
from service.pki.crl import RevokedCertificate, assemble_crl, build_tbs_crl
from service.pki.pem import encode as pem_encode
from service.pki.profiles import ProfileKind
from service.pki.serial import new_serial
from service.pki.signer import SignatureAlgorithm
from service.pki.verify import verify_certificate, verify_crl
from service.token_signer import TokenSigner

__all__ = [
    "OPS_CA_KEY_ID",
    "OpsCa",
    "Revocation",
    "der_to_pem",
    "new_client_key",
    "principal_general_name",
    "write_private",
]

#: CKA_ID and CKA_LABEL of the operations CA key in the HSM token.
OPS_CA_KEY_ID = b"hsmca-ops-ca-v1"
OPS_CA_LABEL = "hsmca-ops-ca"
_ALGORITHM = SignatureAlgorithm.SHA256_ECDSA
_CA_YEARS = 10
#: The CRL is re-signed at least this often, so a relying party never sees a stale one.
CRL_VALIDITY = dt.timedelta(days=7)


def der_to_pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    """PEM of one DER object (RFC 7468), as bytes for a file."""
    return pem_encode(der, label).encode("ascii")


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file mode 0600 atomically (readers never see a half-written key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Write a public file (certificate, CRL) atomically, mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def new_client_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and its SubjectPublicKeyInfo DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, spki


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM of a private key, unencrypted (the file mode protects it)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def principal_general_name(principal_id: str) -> asn1x509.GeneralName | None:
    """The URI SAN for an id with a scheme (``spiffe://...``), else None (the id is the CN)."""
    if "://" in principal_id or principal_id.startswith(("urn:", "spiffe:")):
        return asn1x509.GeneralName(name="uniform_resource_identifier", value=principal_id)
    return None


def _server_names(names: tuple[str, ...]) -> asn1x509.GeneralNames:
    out = []
    for name in dict.fromkeys(names):
        try:
            ipaddress.ip_address(name)
            out.append(asn1x509.GeneralName(name="ip_address", value=name))
        except ValueError:
            out.append(asn1x509.GeneralName(name="dns_name", value=name))
    return asn1x509.GeneralNames(out)


@dataclass(frozen=True)
class Revocation:
    """One revoked client certificate."""

    serial: int
    revoked_at: dt.datetime


class OpsCa:
    """The operations CA: certificate ``ca.pem`` on disk, key in the HSM token."""

    def __init__(self, token: Token, certificate_der: bytes) -> None:
        self.token = token
        self.certificate_der = certificate_der
        self.issuer = Issuer.from_certificate(certificate_der, _ALGORITHM)
        self.signer = TokenSigner(token, OPS_CA_KEY_ID, _ALGORITHM, self.issuer.public_key_info)

    @classmethod
    def open_or_create(cls, token: Token, ca_pem: Path, *, now: dt.datetime) -> OpsCa:
        """Load the CA from ``ca_pem``, or generate its key in the token and self-sign it."""
        if ca_pem.exists():
            der = x509.load_pem_x509_certificate(ca_pem.read_bytes()).public_bytes(
                serialization.Encoding.DER)
            if not key_exists(token, OPS_CA_KEY_ID):
                raise RuntimeError(
                    f"{ca_pem} exists but the token holds no operations CA key "
                    f"(CKA_ID {OPS_CA_KEY_ID.hex()}); move the file away to bootstrap a new CA")
            return cls(token, der)
        if key_exists(token, OPS_CA_KEY_ID):
            spki = public_key_info(token, OPS_CA_KEY_ID)
        else:
            spki = generate_key_pair(token, KeySpec.EC_P256, key_id=OPS_CA_KEY_ID,
                                     label=OPS_CA_LABEL, exportable=False).public_key_info
        subject = asn1x509.Name.build({"organization_name": "hsmca",
                                       "common_name": "hsmca operations CA"})
        not_before = now - dt.timedelta(minutes=5)
        tbs = build_self_signed_tbs(subject, spki, _ALGORITHM, new_serial(), not_before,
                                    not_before.replace(year=not_before.year + _CA_YEARS),
                                    path_len=0)
        signer = TokenSigner(token, OPS_CA_KEY_ID, _ALGORITHM, spki)
        der = assemble_certificate(tbs, SIGNATURE_ALGORITHM_IDENTIFIERS[_ALGORITHM],
                                   signer.sign(tbs))
        verify_certificate(der, spki)
        write_public(ca_pem, der_to_pem(der))
        return cls(token, der)

    def _issue(self, profile: ProfileKind, subject: asn1x509.Name,
               sans: asn1x509.GeneralNames | None, spki: bytes, now: dt.datetime,
               days: float) -> bytes:
        not_before = now - dt.timedelta(minutes=5)
        not_after = min(now + dt.timedelta(days=days), self.issuer.not_after)
        tbs = build_tbs(self.issuer, IssuanceRequest(
            profile=profile, subject=subject, public_key_info=spki, serial=new_serial(),
            not_before=not_before, not_after=not_after, subject_alt_names=sans))
        der = assemble_certificate(tbs, self.issuer.signature_algorithm_der,
                                   self.signer.sign(tbs))
        verify_certificate(der, self.issuer.public_key_info)  # invariant 3, docs/architecture.md
        return der

    def issue_server(self, names: tuple[str, ...], spki: bytes, *, now: dt.datetime,
                     days: int) -> bytes:
        """A serverAuth certificate for the listen names."""
        subject = asn1x509.Name.build({"common_name": names[0]})
        return self._issue(ProfileKind.SERVER, subject, _server_names(names), spki, now, days)

    def issue_client(self, principal_id: str, spki: bytes, *, now: dt.datetime,
                     days: float) -> bytes:
        """A clientAuth certificate whose URI SAN (or CN) is the principal id."""
        uri = principal_general_name(principal_id)
        if uri is not None:
            return self._issue(ProfileKind.CLIENT, asn1x509.Name.build({}),
                               asn1x509.GeneralNames([uri]), spki, now, days)
        if len(principal_id) > 64:
            raise ValueError("a principal id without a scheme becomes the subject CN, which "
                             "is at most 64 characters (RFC 5280 ub-common-name)")
        subject = asn1x509.Name.build({"common_name": principal_id})
        return self._issue(ProfileKind.CLIENT, subject, None, spki, now, days)

    def sign_crl(self, revoked: list[Revocation], *, number: int, now: dt.datetime) -> bytes:
        """A complete CRL of the revoked client certificates."""
        tbs = build_tbs_crl(self.issuer, number, now, now + CRL_VALIDITY,
                            [RevokedCertificate(r.serial, r.revoked_at) for r in revoked])
        der = assemble_crl(tbs, self.issuer.signature_algorithm_der, self.signer.sign(tbs))
        verify_crl(der, self.issuer.public_key_info)
        return der


def read_crl(path: Path) -> tuple[int, list[Revocation]]:
    """(CRL number, entries) of the CRL file, or (0, []) when there is none yet."""
    if not path.exists():
        return 0, []
    crl = x509.load_der_x509_crl(path.read_bytes())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number, [Revocation(r.serial_number, r.revocation_date_utc) for r in crl]
