"""Helpers for the lifecycle tests: polling, CRL fetch over HTTP, pkilint CRL, openssl."""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pki_checkers import errors, pkilint_crl

from service.gen.hsmca.v1 import private_ca_pb2 as pb


def wait_status(stub: Any, identifier: str, timeout: float = 30) -> Any:
    """Poll DescribeClientCertificateStatus until the job leaves PENDING."""
    deadline = time.monotonic() + timeout
    while True:
        st = stub.DescribeClientCertificateStatus(
            pb.DescribeClientCertificateStatusRequest(identifier=identifier)).certificate_status[0]
        if st.status != "PENDING" or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def crl_url(cert_der: bytes) -> str:
    """The distribution point URI inside a certificate."""
    cert = x509.load_der_x509_certificate(cert_der)
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    full = cdp[0].full_name
    assert full is not None
    return str(full[0].value)


def fetch(url: str, timeout: float = 10) -> tuple[bytes, dict[str, str]]:
    """GET a URL: body and headers."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - test URL
        return resp.read(), dict(resp.headers.items())


def fetch_crl_with_number_at_least(url: str, number: int, timeout: float = 10
                                   ) -> x509.CertificateRevocationList:
    """Fetch until the served CRL's number reaches ``number`` (the background publishes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            body, _ = fetch(url)
            c = x509.load_der_x509_crl(body)
            n = c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            if n >= number or time.monotonic() > deadline:
                return c
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def fetch_crl_listing(url: str, serial: int, timeout: float = 10
                      ) -> x509.CertificateRevocationList:
    """Fetch until the served CRL lists ``serial`` (the background catches up) or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        c = x509.load_der_x509_crl(fetch(url)[0])
        if (c.get_revoked_certificate_by_serial_number(serial) is not None
                or time.monotonic() > deadline):
            return c
        time.sleep(0.1)


def pkilint_crl_errors(crl_der: bytes) -> list[tuple[str, str]]:
    """ERROR/FATAL findings of pkilint's RFC 5280 CRL validator."""
    return errors(pkilint_crl(crl_der))


def openssl_verify_crl(root_der: bytes, sub_der: bytes, leaf_der: bytes,
                       crl_der: bytes) -> subprocess.CompletedProcess[str]:
    """openssl verify -crl_check with the chain in -CAfile and the CRL in -CRLfile."""
    with tempfile.TemporaryDirectory() as d:
        chain = Path(d) / "chain.pem"
        chain.write_bytes(b"".join(x509.load_der_x509_certificate(c).public_bytes(
            serialization.Encoding.PEM) for c in (sub_der, root_der)))
        leaf = Path(d) / "leaf.pem"
        leaf.write_bytes(x509.load_der_x509_certificate(leaf_der).public_bytes(
            serialization.Encoding.PEM))
        crl_pem = Path(d) / "crl.pem"
        crl_pem.write_bytes(x509.load_der_x509_crl(crl_der).public_bytes(
            serialization.Encoding.PEM))
        return subprocess.run(
            ["openssl", "verify", "-crl_check", "-CAfile", str(chain), "-CRLfile",
             str(crl_pem), str(leaf)], capture_output=True, text=True, check=False)


def code_reason(e: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo reason) of a failed call."""
    from service.rpc.client import error_info

    return error_info(e)  # type: ignore[arg-type]
