"""AIA and CDP up the chain: a relying party finds every issuer and every CRL from URLs in
the certificates, and OpenSSL then reports a revoked sub CA as revoked."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from conftest import Lc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from lc_support import crl_url, fetch, fetch_crl_listing, fetch_crl_with_number_at_least
from pca_support import create_hierarchy, make_csr, new_key, pem_to_der, pkilint_errors

from service.gen.hsmca.v1 import private_ca_pb2 as pb


def _aia(der: bytes) -> dict[str, str]:
    cert = x509.load_der_x509_certificate(der)
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    assert not aia.critical
    return {d.access_method.dotted_string: str(d.access_location.value) for d in aia.value}


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _crl_pem(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)


def _verify_all(root: bytes, sub: bytes, leaf: bytes, crls: list[bytes]
                ) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for name, data in (("root", _pem(root)), ("sub", _pem(sub)), ("leaf", _pem(leaf))):
            paths[name] = Path(d) / f"{name}.pem"
            paths[name].write_bytes(data)
        crl_args = []
        for i, crl in enumerate(crls):
            p = Path(d) / f"crl{i}.pem"
            p.write_bytes(_crl_pem(crl))
            crl_args += ["-CRLfile", str(p)]
        return subprocess.run(
            ["openssl", "verify", "-crl_check_all", "-CAfile", str(paths["root"]),
             "-untrusted", str(paths["sub"]), *crl_args, str(paths["leaf"])],
            capture_output=True, text=True, check=False)


OCSP = AuthorityInformationAccessOID.OCSP.dotted_string
CA_ISSUERS = AuthorityInformationAccessOID.CA_ISSUERS.dotted_string


def test_issuers_and_crls_are_found_from_the_certificates(lc: Lc) -> None:
    h = create_hierarchy(lc, "ECC_256")
    leaf = pem_to_der(lc.stub.CreateServerCertificateWithCsr(
        pb.CreateServerCertificateWithCsrRequest(
            parent_identifier=h.sub_id, csr=make_csr(new_key("ECC_256"), "aia.example",
                                                     ["aia.example"]),
            days=30, immediately=1, enable_crl=1)).x509_certificate)
    base = f"http://127.0.0.1:{lc.http_port}"
    # Each certificate names its issuer's certificate, served at a stable URL, and the
    # OCSP responder of its (CRL-publishing) issuer.
    assert _aia(leaf) == {OCSP: f"{base}/ocsp", CA_ISSUERS: f"{base}/ca/{h.sub_id}.cer"}
    assert _aia(h.sub_der) == {OCSP: f"{base}/ocsp", CA_ISSUERS: f"{base}/ca/{h.root_id}.cer"}
    assert fetch(_aia(leaf)[CA_ISSUERS])[0] == h.sub_der
    body, headers = fetch(_aia(h.sub_der)[CA_ISSUERS])
    assert body == h.root_der and headers["Content-Type"] == "application/pkix-cert"
    # The sub CA's certificate carries its parent's CRL distribution point.
    assert crl_url(h.sub_der) == f"{base}/crl/{h.root_id}.crl"
    for der in (leaf, h.sub_der):
        assert pkilint_errors(der) == []

    def crls() -> list[bytes]:
        # New CAs get their first CRL from the background thread.
        return [fetch_crl_with_number_at_least(crl_url(der), 1).public_bytes(
            serialization.Encoding.DER) for der in (leaf, h.sub_der)]

    good = _verify_all(fetch(_aia(h.sub_der)[CA_ISSUERS])[0], fetch(_aia(leaf)[CA_ISSUERS])[0],
                       leaf, crls())
    assert good.returncode == 0, good.stdout + good.stderr
    lc.stub.UpdateCACertificateStatus(pb.UpdateCACertificateStatusRequest(
        identifier=h.sub_id, status="REVOKE"))
    sub_serial = x509.load_der_x509_certificate(h.sub_der).serial_number
    root_crl = fetch_crl_listing(crl_url(h.sub_der), sub_serial)
    assert root_crl.get_revoked_certificate_by_serial_number(sub_serial) is not None
    revoked = _verify_all(h.root_der, h.sub_der, leaf, crls())
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr
    assert "error 23 at 1 depth" in revoked.stdout + revoked.stderr  # the sub CA, not the leaf


def test_a_sub_ca_under_a_root_without_crls_has_no_distribution_point(lc: Lc) -> None:
    root = lc.stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
        common_name="hsmca aia root without crl", organization="hsmca", country_code="CN",
        algorithm="ECC_256", years=10, enable_crl=0))
    sub = lc.stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
        parent_identifier=root.identifier, common_name="hsmca aia sub", organization="hsmca",
        country_code="CN", algorithm="ECC_256", years=5, enable_crl=0))
    sub_der = pem_to_der(sub.certificate)
    cert = x509.load_der_x509_certificate(sub_der)
    assert x509.CRLDistributionPoints not in {type(e.value) for e in cert.extensions}
    # No OCSP either (OCSP is on where CRLs are), but the issuer is still named.
    assert _aia(sub_der) == {
        CA_ISSUERS: f"http://127.0.0.1:{lc.http_port}/ca/{root.identifier}.cer"}
    assert pkilint_errors(sub_der) == []
