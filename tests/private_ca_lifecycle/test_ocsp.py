"""The OCSP responder, checked by OpenSSL's client and pkilint: good, revoked (within a
second), unknown, nonce echoed (1..128 octets; any other length malformedRequest, unsigned);
cached responses cost no token operation; GET and POST; error responses are not cached."""

from __future__ import annotations

import base64
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import ocsp as asn1_ocsp
from audit_support import installed_audit_log
from conftest import Lc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as cx_ocsp
from pca_support import Hierarchy, create_hierarchy, make_csr, new_key, pem_to_der
from pki_checkers import errors, pkilint_ocsp_response

from service import audit
from service.audit.verify import list_records
from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.token_signer import TokenSigner


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


def _with_nonce(request: bytes, nonce: bytes) -> bytes:
    """``request`` with a Nonce extension: extnValue holds the OCTET STRING ``nonce``."""
    parsed = asn1_ocsp.OCSPRequest.load(request)
    parsed["tbs_request"]["request_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
    return parsed.dump(force=True)


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER TLV (contents under 64 KiB)."""
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else \
        bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + content


def _get(lc: Lc, request: bytes) -> tuple[bytes, str | None]:
    """GET /ocsp/<base64 request>: the body and the Cache-Control header."""
    url = (f"http://127.0.0.1:{lc.http_port}/ocsp/"
           + urllib.request.quote(base64.b64encode(request).decode(), safe=""))
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - test URL
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        return resp.read(), resp.headers["Cache-Control"]


@pytest.fixture
def audit_log(lc: Lc, hsm_token: Any) -> Iterator[audit.AuditLog]:
    with installed_audit_log(lc.engine, hsm_token) as log:
        yield log


@pytest.fixture
def ocsp_signatures(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The ResponseData the token signs from now on (CRLs and certificates left out: the
    background publishes CRLs while a test runs)."""
    signed: list[bytes] = []
    real_sign = TokenSigner.sign

    def counting_sign(self: TokenSigner, tbs: bytes) -> bytes:
        try:
            _ = asn1_ocsp.ResponseData.load(tbs, strict=True).native
            signed.append(tbs)
        except ValueError:
            pass
        return real_sign(self, tbs)

    monkeypatch.setattr(TokenSigner, "sign", counting_sign)
    return signed


def test_a_nonce_of_0_or_more_than_128_octets_is_malformed_and_costs_no_signature(
        lc: Lc, ecc: Hierarchy, audit_log: audit.AuditLog,
        ocsp_signatures: list[bytes]) -> None:
    # RFC 9654 2.1: a nonce is 1..128 octets; any other length MUST get malformedRequest.
    assert lc.ocsp is not None
    leaf = _leaf(lc, ecc, "ocsp-nonce.example")
    request = _request(leaf, ecc.sub_der)

    def ocsp_records() -> int:
        with lc.engine.connect() as conn:
            return sum(1 for r in list_records(conn, action="ocsp.sign")
                       if r.writer == audit_log.writer)

    signed, records = lc.ocsp.signed, ocsp_records()
    for nonce in (b"", b"\x5a" * 129, b"\x00" * 16_000):
        resp = asn1_ocsp.OCSPResponse.load(_post(lc, _with_nonce(request, nonce)))
        assert resp["response_status"].native == "malformed_request", len(nonce)
        assert resp["response_bytes"].native is None
    assert (lc.ocsp.signed, ocsp_records(), ocsp_signatures) == (signed, records, [])
    # The bounds themselves are accepted: signed for the request, the nonce echoed.
    for nonce in (b"\x01", bytes(range(128))):
        der = _post(lc, _with_nonce(request, nonce))
        resp = cx_ocsp.load_der_ocsp_response(der)
        assert resp.response_status == cx_ocsp.OCSPResponseStatus.SUCCESSFUL
        assert resp.certificate_status == cx_ocsp.OCSPCertStatus.GOOD
        assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert lc.ocsp.signed == signed + 2
    assert ocsp_records() == records + 2
    assert len(ocsp_signatures) == 2


def test_a_nonce_extension_not_holding_one_der_octet_string_is_malformed(
        lc: Lc, ecc: Hierarchy, ocsp_signatures: list[bytes]) -> None:
    # The length checked is the nonce's own, the OCTET STRING inside extnValue (RFC 9654
    # 2.1): a 128-octet nonce followed by more bytes, a truncated one, or bare bytes are
    # not a Nonce.
    assert lc.ocsp is not None
    leaf = _leaf(lc, ecc, "ocsp-nonce-trailing.example")
    request_list = asn1_ocsp.OCSPRequest.load(_request(leaf, ecc.sub_der))[
        "tbs_request"]["request_list"].dump()
    nonce_oid = asn1_ocsp.TBSRequestExtensionId("nonce").dump()
    for extn_value in (b"\x04\x81\x80" + b"\x01" * 128 + b"\x04\x01\x02",
                       b"\x04\x05\x01\x02\x03", b"\x01" * 32):
        # Encoded by hand: asn1crypto would parse (and re-encode) the nonce it holds.
        extension = _tlv(0x30, nonce_oid + _tlv(0x04, extn_value))
        der = _tlv(0x30, _tlv(0x30, request_list + _tlv(0xA2, _tlv(0x30, extension))))
        resp = asn1_ocsp.OCSPResponse.load(_post(lc, der))
        assert resp["response_status"].native == "malformed_request", extn_value.hex()
    assert ocsp_signatures == []
    # The same encoding with one DER OCTET STRING is answered, the nonce echoed.
    extension = _tlv(0x30, nonce_oid + _tlv(0x04, b"\x04\x01\x07"))
    der = _tlv(0x30, _tlv(0x30, request_list + _tlv(0xA2, _tlv(0x30, extension))))
    good = cx_ocsp.load_der_ocsp_response(_post(lc, der))
    assert good.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"\x07"
    assert len(ocsp_signatures) == 1


def test_error_responses_are_not_cached_and_successful_ones_are(lc: Lc, ecc: Hierarchy
                                                                ) -> None:
    # RFC 5019 6: caching follows a successful response's nextUpdate; an error response
    # (tryLater in an outage, unauthorized, malformedRequest) is not to outlive its cause.
    no_crl = create_hierarchy(lc, "ECC_256", enable_crl=0)  # the sub CA publishes no CRL
    other = _request(_leaf(lc, no_crl, "ocsp-no-store.example"), no_crl.sub_der)
    served = _request(_leaf(lc, ecc, "ocsp-cacheable.example"), ecc.sub_der)
    for request, status in ((other, "unauthorized"),
                            (b"\x30\x03\x02\x01\x01", "malformed_request"),
                            (_with_nonce(served, b""), "malformed_request")):
        body, cache_control = _get(lc, request)
        assert asn1_ocsp.OCSPResponse.load(body)["response_status"].native == status
        assert cache_control == "no-store", status
    # A path that is not base64 at all, and an error response to a POST, likewise.
    post = urllib.request.Request(f"http://127.0.0.1:{lc.http_port}/ocsp", data=other,
                                  headers={"Content-Type": "application/ocsp-request"})
    for req in (f"http://127.0.0.1:{lc.http_port}/ocsp/not*base64", post):
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - test URL
            assert asn1_ocsp.OCSPResponse.load(resp.read())["response_status"].native in (
                "malformed_request", "unauthorized")
            assert resp.headers["Cache-Control"] == "no-store"
    # A successful response keeps its headers: GET cacheable for a minute, POST none.
    body, cache_control = _get(lc, served)
    assert asn1_ocsp.OCSPResponse.load(body)["response_status"].native == "successful"
    assert cache_control == "public, max-age=60, no-transform"
    post = urllib.request.Request(f"http://127.0.0.1:{lc.http_port}/ocsp", data=served,
                                  headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(post, timeout=10) as resp:  # noqa: S310 - test URL
        assert asn1_ocsp.OCSPResponse.load(resp.read())["response_status"].native == \
            "successful"
        assert resp.headers["Cache-Control"] is None
