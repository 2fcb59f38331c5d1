"""The OCSP responder, checked by OpenSSL's client and pkilint: good, revoked (within a
second), unknown, nonce echoed; cached responses cost no token operation; GET and POST."""

from __future__ import annotations

import base64
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from asn1crypto import ocsp as asn1_ocsp
from conftest import Lc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as cx_ocsp
from pca_support import Hierarchy, create_hierarchy, make_csr, new_key, pem_to_der
from pki_checkers import errors, pkilint_ocsp_response

from service.gen.hsmca.v1 import private_ca_pb2 as pb


def _leaf(lc: Lc, h: Hierarchy, cn: str) -> bytes:
    return pem_to_der(lc.stub.CreateServerCertificateWithCsr(
        pb.CreateServerCertificateWithCsrRequest(
            parent_identifier=h.sub_id, csr=make_csr(new_key(h.algorithm), cn, [cn]),
            days=30, immediately=1)).x509_certificate)


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _openssl_ocsp(lc: Lc, h: Hierarchy, *args: str, leaf: bytes | None = None
                  ) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as d:
        files = {"root": h.root_der, "sub": h.sub_der}
        if leaf is not None:
            files["leaf"] = leaf
        paths = {}
        for name, der in files.items():
            paths[name] = Path(d) / f"{name}.pem"
            paths[name].write_bytes(_pem(der))
        target = ["-cert", str(paths["leaf"])] if leaf is not None else []
        return subprocess.run(
            ["openssl", "ocsp", "-issuer", str(paths["sub"]), *target,
             "-url", f"http://127.0.0.1:{lc.http_port}/ocsp", "-CAfile", str(paths["root"]),
             "-verify_other", str(paths["sub"]), "-resp_text", *args],
            capture_output=True, text=True, timeout=60, check=False)


def _request(leaf: bytes, issuer: bytes) -> bytes:
    builder = cx_ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(leaf), x509.load_der_x509_certificate(issuer),
        hashes.SHA1())  # noqa: S303 - RFC 5019's CertID hash
    return builder.build().public_bytes(serialization.Encoding.DER)


def _post(lc: Lc, body: bytes) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{lc.http_port}/ocsp", data=body,
                                 headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - test URL
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        return resp.read()


def test_good_then_revoked_within_a_second_and_unknown(lc: Lc) -> None:
    h = create_hierarchy(lc, "ECC_256")
    leaf = _leaf(lc, h, "ocsp-good.example")
    good = _openssl_ocsp(lc, h, leaf=leaf)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Response verify OK" in good.stderr + good.stdout
    assert ": good" in good.stdout
    # OpenSSL sends a nonce by default and checks that the response echoes it.
    assert "WARNING: no nonce" not in good.stdout + good.stderr
    assert "Nonce" in good.stdout
    # Warm the cache without a nonce, then revoke: within a second the responder says so.
    assert ": good" in _openssl_ocsp(lc, h, "-no_nonce", leaf=leaf).stdout
    assert _revoke(lc, leaf, reason=1)
    started = time.monotonic()
    while True:
        revoked = _openssl_ocsp(lc, h, "-no_nonce", leaf=leaf)
        if ": revoked" in revoked.stdout or time.monotonic() - started > 5:
            break
    assert ": revoked" in revoked.stdout, revoked.stdout + revoked.stderr
    assert "Reason: keyCompromise" in revoked.stdout
    assert "Response verify OK" in revoked.stderr + revoked.stdout
    unknown = _openssl_ocsp(lc, h, "-serial", "0x1234567890abcdef")
    assert "0x1234567890abcdef: unknown" in unknown.stdout, unknown.stdout + unknown.stderr


def test_revocation_is_served_within_one_second(lc: Lc) -> None:
    assert lc.ocsp is not None
    h = create_hierarchy(lc, "ECC_256")
    leaf = _leaf(lc, h, "ocsp-fast.example")
    request = _request(leaf, h.sub_der)
    first = cx_ocsp.load_der_ocsp_response(_post(lc, request))
    assert first.certificate_status == cx_ocsp.OCSPCertStatus.GOOD
    _revoke(lc, leaf, reason=4)
    revoked_at = time.monotonic()
    while True:
        resp = cx_ocsp.load_der_ocsp_response(_post(lc, request))
        if resp.certificate_status == cx_ocsp.OCSPCertStatus.REVOKED:
            break
        assert time.monotonic() - revoked_at < 1.0, "revocation not visible within 1 s"
        time.sleep(0.02)
    assert resp.revocation_reason == x509.ReasonFlags.superseded


def _revoke(lc: Lc, leaf: bytes, *, reason: int) -> bool:
    serial = format(x509.load_der_x509_certificate(leaf).serial_number, "x")
    found = lc.stub.DescribeClientCertificateForSerialNumber(
        pb.DescribeClientCertificateForSerialNumberRequest(serial_number=serial))
    identifier = found.certificate_list[0].identifier
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=identifier, reason_code=reason))
    return True


def test_cached_responses_cost_no_token_operation_and_get_equals_post(lc: Lc) -> None:
    assert lc.ocsp is not None
    h = create_hierarchy(lc, "ECC_256")
    leaf = _leaf(lc, h, "ocsp-cache.example")
    request = _request(leaf, h.sub_der)
    first = _post(lc, request)
    signed = lc.ocsp.signed
    for _ in range(20):
        assert _post(lc, request) == first
    time.sleep(0.6)  # past the recheck interval: the status is read again, not re-signed
    assert _post(lc, request) == first
    url = (f"http://127.0.0.1:{lc.http_port}/ocsp/"
           + urllib.request.quote(base64.b64encode(request).decode(), safe=""))
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - test URL
        assert resp.read() == first
        assert "max-age" in resp.headers["Cache-Control"]
    assert lc.ocsp.signed == signed


def test_responses_pass_pkilint(lc: Lc) -> None:
    h = create_hierarchy(lc, "RSA_2048")
    leaf = _leaf(lc, h, "ocsp-lint.example")
    good = _post(lc, _request(leaf, h.sub_der))
    _revoke(lc, leaf, reason=1)
    time.sleep(0.6)
    revoked = _post(lc, _request(leaf, h.sub_der))
    assert cx_ocsp.load_der_ocsp_response(revoked).certificate_status == \
        cx_ocsp.OCSPCertStatus.REVOKED
    for der in (good, revoked):
        assert errors(pkilint_ocsp_response(der)) == []
        parsed = asn1_ocsp.OCSPResponse.load(der)
        assert parsed["response_status"].native == "successful"


def test_a_request_for_another_issuer_is_unauthorized_and_garbage_is_malformed(
        lc: Lc, ecc: Hierarchy) -> None:
    h = create_hierarchy(lc, "ECC_256", enable_crl=0)  # the sub CA publishes no CRL
    leaf = _leaf(lc, h, "ocsp-no-crl.example")
    resp = asn1_ocsp.OCSPResponse.load(_post(lc, _request(leaf, h.sub_der)))
    assert resp["response_status"].native == "unauthorized"
    bad = asn1_ocsp.OCSPResponse.load(_post(lc, b"\x30\x03\x02\x01\x01"))
    assert bad["response_status"].native == "malformed_request"
    # A CertID with serial 0 (never a certificate's, RFC 5280 4.1.2.2) is refused as such.
    request = asn1_ocsp.OCSPRequest.load(_request(leaf, h.sub_der))
    request["tbs_request"]["request_list"][0]["req_cert"]["serial_number"] = 0
    zero = asn1_ocsp.OCSPResponse.load(_post(lc, request.dump(force=True)))
    assert zero["response_status"].native == "malformed_request"
