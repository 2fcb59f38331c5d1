"""Independent checkers: pkilint (RFC 5280, CA/B BR) and the openssl CLI."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from pkilint import loader, pkix
from pkilint.cabf import serverauth
from pkilint.cabf.serverauth import serverauth_constants
from pkilint.pkix import certificate, crl, extension, name
from pkilint.validation import ValidationFindingSeverity

_BAD = (ValidationFindingSeverity.FATAL, ValidationFindingSeverity.ERROR)


def _findings(results) -> list[tuple[str, str]]:
    out = []
    for result in results:
        for fd in result.finding_descriptions:
            out.append((fd.finding.severity.name, f"{fd.finding.code} @ {result.node.path}"))
    return out


def pkilint_rfc5280(cert_der: bytes) -> list[tuple[str, str]]:
    """All findings of pkilint's RFC 5280 certificate validator (as lint_pkix_cert)."""
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS,
                                               extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(cert_der, "cert")
    return _findings(validator.validate(doc.root))


def pkilint_serverauth(cert_der: bytes,
                       cert_type: serverauth_constants.CertificateType | None = None
                       ) -> list[tuple[str, str]]:
    """Findings of pkilint's CA/B Forum TLS BR linter (as lint_cabf_serverauth_cert)."""
    from pkilint import finding_filter

    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(cert_der, "cert")
    if cert_type is None:
        cert_type = serverauth.determine_certificate_type(doc)
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(cert_type))
    results, _ = finding_filter.filter_results(
        serverauth.create_serverauth_finding_filters(cert_type), validator.validate(doc.root))
    return _findings(results)


def pkilint_crl(crl_der: bytes) -> list[tuple[str, str]]:
    """All findings of pkilint's RFC 5280 CRL validator (as lint_crl -t CRL -p PKIX)."""
    validator = crl.create_pkix_crl_validator_container(
        [pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
         pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS)],
        [crl.create_issuer_validator_container([]),
         crl.create_validity_validator_container([]),
         crl.create_extensions_validator_container([])],
    )
    doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(crl_der, "crl")
    return _findings(validator.validate(doc.root))


def pkilint_ocsp_response(response_der: bytes) -> list[tuple[str, str]]:
    """All findings of pkilint's RFC 6960 OCSP response validator (as lint_ocsp_response)."""
    from pkilint.pkix import ocsp

    validator = ocsp.create_pkix_ocsp_response_validator_container(
        [ocsp.create_response_decoder(),
         pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
         pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS)], [])
    doc = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(response_der, "ocsp")
    return _findings(validator.validate(doc.root))


def errors(findings: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [f for f in findings if f[0] in ("FATAL", "ERROR")]


def pem(cert_der: bytes) -> bytes:
    return cx509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM)


def crl_pem(crl_der: bytes) -> bytes:
    return cx509.load_der_x509_crl(crl_der).public_bytes(serialization.Encoding.PEM)


def openssl(args: Sequence[str], files: dict[str, bytes]) -> subprocess.CompletedProcess[str]:
    """Run openssl with ``files`` written to a temp dir; ``{name}`` in args is its path."""
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for fname, data in files.items():
            p = Path(d) / fname
            p.write_bytes(data)
            paths[fname] = str(p)
        argv = ["openssl", *(a.format(**paths) for a in args)]
        return subprocess.run(argv, capture_output=True, text=True, check=False)


def openssl_verify(root_der: bytes, sub_der: bytes, leaf_der: bytes, purpose: str,
                   crl_der: bytes | None = None) -> subprocess.CompletedProcess[str]:
    files = {"root": pem(root_der), "sub": pem(sub_der), "leaf": pem(leaf_der)}
    args = ["verify", "-x509_strict", "-purpose", purpose, "-CAfile", "{root}",
            "-untrusted", "{sub}"]
    if crl_der is not None:
        files["crl"] = crl_pem(crl_der)
        args += ["-crl_check", "-CRLfile", "{crl}"]
    return openssl([*args, "{leaf}"], files)
