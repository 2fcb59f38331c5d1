"""The CA lifecycle over the real gRPC API against SoftHSM: async jobs, idempotency, lookups,
private keys, revocation, CRLs (fetched over HTTP), CA revocation, pagination."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import grpc
import pytest
from conftest import Lc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lc_support import (
    code_reason,
    crl_url,
    fetch,
    fetch_crl_listing,
    fetch_crl_with_number_at_least,
    openssl_verify_crl,
    pkilint_crl_errors,
    wait_status,
)
from pca_support import OWNER, Hierarchy, create_hierarchy, make_csr, new_key, pem_to_der
from sqlalchemy import func, select

from hsm.export import TokenRefusedExport, export_private_key
from hsm.keys import KeySpec, generate_key_pair, key_exists, key_ids_labelled, public_key_info
from service.entropy import new_key_id
from service.errors import Unavailable
from service.gen.hsmca.v1 import common_pb2
from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.pki.verify import verify_crl
from service.storage import repo
from service.storage.schema import certificate as cert_t


def _server_req(h: Hierarchy, cn: str, **kw: Any) -> pb.CreateServerCertificateWithCsrRequest:
    kw.setdefault("days", 30)
    return pb.CreateServerCertificateWithCsrRequest(
        parent_identifier=h.sub_id, csr=make_csr(new_key(h.algorithm), cn, [cn]), **kw)


def _custom_req(h: Hierarchy, csr: str, **kw: Any) -> pb.CreateCustomCertificateRequest:
    return pb.CreateCustomCertificateRequest(parent_identifier=h.sub_id, csr=csr,
                                             validity="30d", **kw)


def _rows(lc: Lc) -> int:
    with lc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(cert_t)).scalar_one())


def _fails(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return code_reason(info.value)


# --- asynchronous issuance -----------------------------------------------------------------


@pytest.mark.parametrize("immediately", [None, 0])
def test_async_issuance_completes(lc: Lc, ecc: Hierarchy, immediately: int | None) -> None:
    kw = {} if immediately is None else {"immediately": immediately}
    resp = lc.stub.CreateServerCertificateWithCsr(_server_req(ecc, "async.example", **kw))
    assert resp.identifier and not resp.x509_certificate and not resp.serial_number
    st = wait_status(lc.stub, resp.identifier)
    assert st.status == "ISSUE", st
    info = lc.stub.DescribeClientCertificate(
        pb.DescribeClientCertificateRequest(identifier=resp.identifier)).certificate
    assert info.status == "ISSUE" and info.serial_number == st.serial_number
    cert = x509.load_pem_x509_certificate(info.x509_certificate.encode())
    assert format(cert.serial_number, "x") == st.serial_number
    assert info.common_name == "async.example" and info.algorithm == "ECC_256"
    assert info.certificate_chain.count("BEGIN CERTIFICATE") == 2


def test_bad_async_request_is_refused_and_stores_nothing(lc: Lc, ecc: Hierarchy) -> None:
    before = _rows(lc)
    req = _server_req(ecc, "bad.example", immediately=0)
    req.csr = req.csr.replace("MI", "MX", 1)
    assert _fails(lambda: lc.stub.CreateServerCertificateWithCsr(req))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    req = _server_req(ecc, "bad.example", immediately=0, days=365 * 50)  # beyond the CA
    assert _fails(lambda: lc.stub.CreateServerCertificateWithCsr(req)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Validity")
    assert _rows(lc) == before


def test_async_system_key_issuance_completes(lc: Lc, rsa_h: Hierarchy) -> None:
    # The request is checked in full before it is stored, with a stand-in for the key the
    # job will generate; the job then issues for the key it generated.
    resp = lc.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
        parent_identifier=rsa_h.sub_id, san_type=1, san_value="job@example.com",
        common_name="async key holder", algorithm="RSA_2048", days=10, immediately=0))
    assert wait_status(lc.stub, resp.identifier).status == "ISSUE"
    info = lc.stub.DescribeClientCertificate(
        pb.DescribeClientCertificateRequest(identifier=resp.identifier)).certificate
    cert = x509.load_pem_x509_certificate(info.x509_certificate.encode())
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]


def test_async_job_that_cannot_be_issued_ends_failed(lc: Lc, monkeypatch: Any) -> None:
    h = create_hierarchy(lc, "ECC_256")
    # Hold the job thread back (a claim already under way finishes within the sleep), so
    # the CA is revoked between the job's submission and its run.
    monkeypatch.setattr(lc.service.jobs, "claim", lambda *a, **k: None)
    time.sleep(0.3)
    job = lc.stub.CreateServerCertificateWithCsr(_server_req(h, "late.example", immediately=0))
    lc.stub.UpdateCACertificateStatus(pb.UpdateCACertificateStatusRequest(
        identifier=h.sub_id, status="REVOKE"))
    monkeypatch.undo()
    st = wait_status(lc.stub, job.identifier)
    assert st.status == "FAILED" and "IncorrectStatus.CA" in st.failure_reason, st
    info = lc.stub.DescribeClientCertificate(
        pb.DescribeClientCertificateRequest(identifier=job.identifier)).certificate
    assert info.status == "FAILED" and info.failure_reason and not info.x509_certificate


def test_async_job_retried_after_a_crash_before_reserving_replaces_the_key_left_behind(
        lc: Lc, monkeypatch: Any) -> None:
    # An attempt that died after making the job's key and before its reservation leaves a
    # key labelled with the job's identifier that no row names. The next attempt must not be
    # refused by it (the label is unique): it is destroyed, and the job issued with a new key.
    h = create_hierarchy(lc, "ECC_256")
    monkeypatch.setattr(lc.service.jobs, "claim", lambda *a, **k: None)
    time.sleep(0.3)  # a claim already under way finishes within the sleep
    job = lc.stub.CreateServerCertificate(pb.CreateServerCertificateRequest(
        parent_identifier=h.sub_id, domain="leftover.example", algorithm="ECC_256", days=5,
        immediately=0)).identifier
    software = lc.service.tokens.software
    leftover = new_key_id()
    generate_key_pair(software, KeySpec.EC_P256, key_id=leftover, label=job, exportable=True)
    monkeypatch.undo()
    status = wait_status(lc.stub, job)
    assert status.status == "ISSUE", status
    assert not key_exists(software, leftover)
    (kept,) = key_ids_labelled(software, job)
    issued = lc.stub.DescribeClientCertificate(pb.DescribeClientCertificateRequest(
        identifier=job)).certificate
    cert = x509.load_pem_x509_certificate(issued.x509_certificate.encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert public_key_info(software, kept) == cert.public_key().public_bytes(*spki)


# --- idempotency ---------------------------------------------------------------------------


@pytest.mark.parametrize("immediately", [1, 0])
def test_custom_identifier_is_idempotent(lc: Lc, ecc: Hierarchy, immediately: int) -> None:
    key = f"idem-{uuid.uuid4()}"
    req = _custom_req(ecc, make_csr(new_key("ECC_256"), "idem.example"),
                      custom_identifier=key, immediately=immediately)
    a = lc.stub.CreateCustomCertificate(req)
    if immediately == 0:
        assert wait_status(lc.stub, a.identifier).status == "ISSUE"
    b = lc.stub.CreateCustomCertificate(req)
    req.immediately = 1
    c = lc.stub.CreateCustomCertificate(req)  # asking for the certificate this time
    assert a.identifier == b.identifier == c.identifier
    assert c.certificate and int(x509.load_pem_x509_certificate(
        c.certificate.encode()).serial_number) == int(c.serial_number, 16)
    other = _custom_req(ecc, make_csr(new_key("ECC_256"), "other.example"),
                        custom_identifier=key, immediately=1)
    assert _fails(lambda: lc.stub.CreateCustomCertificate(other)) == \
        (grpc.StatusCode.ALREADY_EXISTS, "AlreadyExists.CustomIdentifier")
    described = lc.stub.DescribeClientCertificate(
        pb.DescribeClientCertificateRequest(identifier=a.identifier)).certificate
    assert described.custom_identifier == key


def _custom_identifier_rows(lc: Lc, key: str) -> int:
    with lc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(cert_t)
                                .where(cert_t.c.custom_identifier == key)).scalar_one())


def test_refused_idempotent_request_leaves_its_custom_identifier_free(lc: Lc,
                                                                    ecc: Hierarchy) -> None:
    key = f"fix-{uuid.uuid4()}"
    csr = make_csr(new_key("ECC_256"), "fix.example")
    bad = _custom_req(ecc, csr, custom_identifier=key, immediately=1,
                      api_passthrough=pb.ApiPassthrough(criticals=["NoSuchExtension"]))
    before = _rows(lc)
    assert _fails(lambda: lc.stub.CreateCustomCertificate(bad)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Criticals")
    assert _rows(lc) == before  # nothing stored, so nothing holds the key
    fixed = lc.stub.CreateCustomCertificate(_custom_req(ecc, csr, custom_identifier=key,
                                                        immediately=1))
    assert fixed.certificate and _custom_identifier_rows(lc, key) == 1


def test_idempotent_call_that_fails_before_reserving_can_be_retried(lc: Lc, ecc: Hierarchy,
                                                                   monkeypatch: Any) -> None:
    from service.errors import Unavailable

    def token_away(prepared: Any) -> bytes:
        raise Unavailable("the token is unavailable: injected")

    key = f"retry-{uuid.uuid4()}"
    req = _custom_req(ecc, make_csr(new_key("ECC_256"), "retry.example"),
                      custom_identifier=key, immediately=1,
                      tags=[common_pb2.Tag(key="team", value="retry")])
    before = _rows(lc)
    monkeypatch.setattr(lc.service.pipeline, "issue", token_away)
    assert _fails(lambda: lc.stub.CreateCustomCertificate(req))[0] == \
        grpc.StatusCode.UNAVAILABLE
    monkeypatch.undo()
    # Nothing was reserved or signed: the job row went with the error, and the retry the
    # error invites issues the certificate (it used to answer FAILED_PRECONDITION forever).
    assert _rows(lc) == before
    again = lc.stub.CreateCustomCertificate(req)
    assert again.certificate and _custom_identifier_rows(lc, key) == 1


def test_custom_identifier_of_a_deleted_certificate_is_not_replayed(lc: Lc,
                                                                   ecc: Hierarchy) -> None:
    key = f"deleted-{uuid.uuid4()}"
    req = _custom_req(ecc, make_csr(new_key("ECC_256"), "deleted.example"),
                      custom_identifier=key, immediately=1)
    issued = lc.stub.CreateCustomCertificate(req)
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=issued.identifier, reason_code=5))
    lc.stub.DeleteClientCertificate(pb.DeleteClientCertificateRequest(
        identifier=issued.identifier))
    # Handing back the deleted certificate would give an identifier every lookup denies.
    code, reason = _fails(lambda: lc.stub.CreateCustomCertificate(req))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION,
                              "IncorrectStatus.Certificate")


def test_racing_identical_requests_yield_one_certificate(lc: Lc, ecc: Hierarchy) -> None:
    key = f"race-{uuid.uuid4()}"
    req = _custom_req(ecc, make_csr(new_key("ECC_256"), "race.example"),
                      custom_identifier=key, immediately=1)
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def call() -> None:
        barrier.wait()
        try:
            results.append(lc.stub.CreateCustomCertificate(req, timeout=60))
        except grpc.RpcError as e:
            results.append(e)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, pb.CreateCustomCertificateResponse) for r in results), results
    assert len({(r.identifier, r.serial_number, r.certificate) for r in results}) == 1
    with lc.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(cert_t)
                         .where(cert_t.c.custom_identifier == key)).scalar_one()
    assert n == 1


# --- private keys --------------------------------------------------------------------------


def _client(lc: Lc, h: Hierarchy, **kw: Any) -> pb.CreateClientCertificateResponse:
    return lc.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
        parent_identifier=h.sub_id, san_type=1, san_value="a@example.com",
        common_name="key holder", days=10, immediately=1, **kw))


def test_private_key_round_trips_for_exportable_system_keys(lc: Lc, rsa_h: Hierarchy) -> None:
    issued = _client(lc, rsa_h)
    resp = lc.stub.DescribeCertificatePrivateKey(pb.DescribeCertificatePrivateKeyRequest(
        identifier=issued.identifier, encrypted_code="correct horse"))
    assert "BEGIN ENCRYPTED PRIVATE KEY" in resp.encrypted_private_key
    key = serialization.load_pem_private_key(resp.encrypted_private_key.encode(),
                                             b"correct horse")
    cert = x509.load_pem_x509_certificate(issued.x509_certificate.encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(resp.encrypted_private_key.encode(), b"wrong")
    long_code = pb.DescribeCertificatePrivateKeyRequest(identifier=issued.identifier,
                                                        encrypted_code="x" * 33)
    assert _fails(lambda: lc.stub.DescribeCertificatePrivateKey(long_code)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.EncryptedCode")


@pytest.mark.parametrize("kw", [{"protection_level": "HSM"}, {"exportable_private_key": False}])
def test_private_key_refused_for_non_exportable_keys(lc: Lc, ecc: Hierarchy,
                                                     hsm_token: Any, kw: Any) -> None:
    issued = _client(lc, ecc, **kw)
    req = pb.DescribeCertificatePrivateKeyRequest(identifier=issued.identifier,
                                                  encrypted_code="pw")
    assert _fails(lambda: lc.stub.DescribeCertificatePrivateKey(req)) == \
        (grpc.StatusCode.PERMISSION_DENIED, "Forbidden.KeyNotExportable")
    # The token itself refuses as well (docs/architecture.md, invariant 1), not only our policy.
    with lc.engine.connect() as conn:
        key_id = conn.execute(select(cert_t.c.key_id).where(
            cert_t.c.identifier == issued.identifier)).scalar_one()
    recipient = new_key("RSA_2048").public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(TokenRefusedExport):
        export_private_key(hsm_token, bytes.fromhex(key_id), recipient)


def test_private_key_of_a_csr_certificate_is_a_clear_error(lc: Lc, ecc: Hierarchy) -> None:
    issued = lc.stub.CreateServerCertificateWithCsr(_server_req(ecc, "csr.example",
                                                                immediately=1))
    req = pb.DescribeCertificatePrivateKeyRequest(identifier=issued.identifier,
                                                  encrypted_code="pw")
    assert _fails(lambda: lc.stub.DescribeCertificatePrivateKey(req)) == \
        (grpc.StatusCode.FAILED_PRECONDITION, "UnsupportedOperation.NoSystemGeneratedKey")


# --- revocation and CRLs -------------------------------------------------------------------


def test_revocation_is_on_the_served_crl(lc: Lc, ecc: Hierarchy) -> None:
    revoked = lc.stub.CreateServerCertificateWithCsr(_server_req(
        ecc, "revoked.example", immediately=1, enable_crl=1))
    kept = lc.stub.CreateServerCertificateWithCsr(_server_req(
        ecc, "kept.example", immediately=1, enable_crl=1))
    revoked_der = pem_to_der(revoked.x509_certificate)
    kept_der = pem_to_der(kept.x509_certificate)
    url = crl_url(revoked_der)
    assert url == f"http://127.0.0.1:{lc.http_port}/crl/{ecc.sub_id}.crl"
    assert lc.crls is not None
    before = lc.crls.publish(ecc.sub_id).crl_number
    when = lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=revoked.identifier, reason_code=1)).revoke_date
    assert when > 0
    again = pb.CreateRevokeClientCertificateRequest(identifier=revoked.identifier,
                                                    reason_code=1)
    assert _fails(lambda: lc.stub.CreateRevokeClientCertificate(again)) == \
        (grpc.StatusCode.FAILED_PRECONDITION, "IncorrectStatus.Certificate")
    bad_reason = pb.CreateRevokeClientCertificateRequest(identifier=kept.identifier,
                                                         reason_code=7)
    assert _fails(lambda: lc.stub.CreateRevokeClientCertificate(bad_reason)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.ReasonCode")

    body, headers = fetch(url)
    assert headers["Content-Type"] == "application/pkix-crl"
    max_age = int(headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    assert 0 < max_age <= 3 * 86400 and headers["ETag"] and headers["Last-Modified"]
    crl = x509.load_der_x509_crl(body)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before  # strictly increasing, re-issued on revocation
    assert crl.next_update_utc is not None
    assert (crl.next_update_utc - crl.last_update_utc).days == 3  # the sub CA's crl_day
    entry = crl.get_revoked_certificate_by_serial_number(int(revoked.serial_number, 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(int(kept.serial_number, 16)) is None
    assert pkilint_crl_errors(body) == []
    verify_crl(body, x509.load_der_x509_certificate(ecc.sub_der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    out = openssl_verify_crl(ecc.root_der, ecc.sub_der, revoked_der, body)
    assert out.returncode != 0 and "certificate revoked" in out.stdout + out.stderr, out
    out = openssl_verify_crl(ecc.root_der, ecc.sub_der, kept_der, body)
    assert out.returncode == 0, out.stdout + out.stderr

    listed = lc.stub.ListRevokeCertificate(pb.ListRevokeCertificateRequest(
        parent_identifier=ecc.sub_id, show_size=100)).certificate_list
    mine = [r for r in listed if r.identifier == revoked.identifier]
    assert len(mine) == 1 and mine[0].serial_number == revoked.serial_number
    assert mine[0].reason_code == 1 and mine[0].revoke_date == when
    assert kept.identifier not in {r.identifier for r in listed}
    # Delete: only revoked ones; afterwards not found, but still on the CRL.
    keep_req = pb.DeleteClientCertificateRequest(identifier=kept.identifier)
    assert _fails(lambda: lc.stub.DeleteClientCertificate(keep_req)) == \
        (grpc.StatusCode.FAILED_PRECONDITION, "IncorrectStatus.Certificate")
    lc.stub.DeleteClientCertificate(pb.DeleteClientCertificateRequest(
        identifier=revoked.identifier))
    gone = pb.DescribeClientCertificateRequest(identifier=revoked.identifier)
    assert _fails(lambda: lc.stub.DescribeClientCertificate(gone)) == \
        (grpc.StatusCode.NOT_FOUND, "NotFound.Identifier")
    later = x509.load_der_x509_crl(lc.crls.publish(ecc.sub_id).der)
    assert later.get_revoked_certificate_by_serial_number(int(revoked.serial_number, 16))


def test_delete_destroys_the_system_key(lc: Lc, ecc: Hierarchy, software_token: Any) -> None:
    from hsm.keys import key_exists

    issued = _client(lc, ecc)
    with lc.engine.connect() as conn:
        key_id = bytes.fromhex(conn.execute(select(cert_t.c.key_id).where(
            cert_t.c.identifier == issued.identifier)).scalar_one())
    assert key_exists(software_token, key_id)  # type: ignore[arg-type]
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=issued.identifier, reason_code=5))
    lc.stub.DeleteClientCertificate(pb.DeleteClientCertificateRequest(
        identifier=issued.identifier))
    assert not key_exists(software_token, key_id)  # type: ignore[arg-type]


def test_a_new_ca_gets_a_crl_from_the_background_thread(lc: Lc) -> None:
    h = create_hierarchy(lc, "ECC_256")
    crl = fetch_crl_with_number_at_least(
        f"http://127.0.0.1:{lc.http_port}/crl/{h.sub_id}.crl", 1)
    assert list(crl) == []
    with pytest.raises(OSError, match="404"):
        fetch(f"http://127.0.0.1:{lc.http_port}/crl/{uuid.uuid4()}.crl")


def test_revoked_ca_issues_nothing_and_is_on_its_parents_crl(lc: Lc) -> None:
    h = create_hierarchy(lc, "ECC_256")
    lc.stub.UpdateCACertificateStatus(pb.UpdateCACertificateStatusRequest(
        identifier=h.sub_id, status="REVOKE"))
    described = lc.stub.DescribeCACertificate(pb.DescribeCACertificateRequest(
        identifier=h.sub_id)).certificate
    assert described.status == "REVOKE"
    assert described.crl_url == f"http://127.0.0.1:{lc.http_port}/crl/{h.sub_id}.crl"
    again = pb.UpdateCACertificateStatusRequest(identifier=h.sub_id, status="REVOKE")
    assert _fails(lambda: lc.stub.UpdateCACertificateStatus(again)) == \
        (grpc.StatusCode.FAILED_PRECONDITION, "IncorrectStatus.CA")
    for immediately in (1, 0):
        req = _server_req(h, "after.example", immediately=immediately)
        assert _fails(lambda r=req: lc.stub.CreateServerCertificateWithCsr(r)) == \
            (grpc.StatusCode.FAILED_PRECONDITION, "IncorrectStatus.CA")
    body, _ = fetch(f"http://127.0.0.1:{lc.http_port}/crl/{h.root_id}.crl")
    crl = x509.load_der_x509_crl(body)
    sub_serial = x509.load_der_x509_certificate(h.sub_der).serial_number
    assert crl.get_revoked_certificate_by_serial_number(sub_serial) is not None
    assert pkilint_crl_errors(body) == []
    assert crl.is_signature_valid(x509.load_der_x509_certificate(h.root_der).public_key())  # type: ignore[arg-type]


def _fail_crl_reissue(lc: Lc, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the re-issue a revocation asks for fail, as a token hiccup, a database lock
    timeout or a crash right after the revocation's commit would; returns the CAs asked.

    Only revocations call publish_if_enabled; the background check calls publish itself.
    """
    assert lc.crls is not None
    asked: list[str] = []

    def unavailable(ca_identifier: str) -> None:
        asked.append(ca_identifier)
        raise Unavailable("the hsm token is unavailable (injected)")

    monkeypatch.setattr(lc.crls, "publish_if_enabled", unavailable)
    return asked


def test_revocation_stands_and_reaches_the_crl_when_its_reissue_fails(
        lc: Lc, monkeypatch: pytest.MonkeyPatch) -> None:
    h = create_hierarchy(lc, "ECC_256")
    leaf = lc.stub.CreateServerCertificateWithCsr(_server_req(h, "missed.example",
                                                              immediately=1))
    url = f"http://127.0.0.1:{lc.http_port}/crl/{h.sub_id}.crl"
    # The sub CA's first CRL (from the background thread), good for crl_day = 3 days.
    assert fetch_crl_with_number_at_least(url, 1).next_update_utc is not None
    asked = _fail_crl_reissue(lc, monkeypatch)
    req = pb.CreateRevokeClientCertificateRequest(identifier=leaf.identifier, reason_code=1)
    # The revocation is committed: the call says so, and a retry is refused as before.
    when = lc.stub.CreateRevokeClientCertificate(req).revoke_date
    assert when > 0 and asked == [h.sub_id]
    status = lc.stub.DescribeClientCertificateStatus(pb.DescribeClientCertificateStatusRequest(
        identifier=leaf.identifier)).certificate_status[0]
    assert status.status == "REVOKE"
    assert _fails(lambda: lc.stub.CreateRevokeClientCertificate(req)) == \
        (grpc.StatusCode.FAILED_PRECONDITION, "IncorrectStatus.Certificate")
    # The background check (every 0.5 s here) re-issues the CRL that misses it, long
    # before its nextUpdate.
    crl = fetch_crl_listing(url, int(leaf.serial_number, 16))
    entry = crl.get_revoked_certificate_by_serial_number(int(leaf.serial_number, 16))
    assert entry is not None, f"CRL {crl.extensions.get_extension_for_class(x509.CRLNumber)}"
    assert int(entry.revocation_date_utc.timestamp() * 1000) == when
    assert crl.is_signature_valid(x509.load_der_x509_certificate(h.sub_der).public_key())  # type: ignore[arg-type]


def test_ca_revocation_stands_and_reaches_the_parents_crl_when_its_reissue_fails(
        lc: Lc, monkeypatch: pytest.MonkeyPatch) -> None:
    h = create_hierarchy(lc, "ECC_256")
    url = f"http://127.0.0.1:{lc.http_port}/crl/{h.root_id}.crl"
    assert fetch_crl_with_number_at_least(url, 1).next_update_utc is not None
    asked = _fail_crl_reissue(lc, monkeypatch)
    lc.stub.UpdateCACertificateStatus(pb.UpdateCACertificateStatusRequest(
        identifier=h.sub_id, status="REVOKE"))
    assert asked == [h.root_id]
    assert lc.stub.DescribeCACertificate(pb.DescribeCACertificateRequest(
        identifier=h.sub_id)).certificate.status == "REVOKE"
    sub_serial = x509.load_der_x509_certificate(h.sub_der).serial_number
    crl = fetch_crl_listing(url, sub_serial)
    assert crl.get_revoked_certificate_by_serial_number(sub_serial) is not None


# --- lookups, pagination and filters -------------------------------------------------------


def test_pagination_and_filters_return_exact_sets(lc: Lc) -> None:
    h = create_hierarchy(lc, "ECC_256")
    ids = []
    for i in range(5):
        tags = [common_pb2.Tag(key="team", value="a" if i % 2 == 0 else "b")]
        ids.append(lc.stub.CreateServerCertificateWithCsr(_server_req(
            h, f"p{i}.example", immediately=1, tags=tags,
            resource_group_id="rg1" if i < 2 else "rg2")).identifier)
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=ids[4], reason_code=0))

    def listed(**kw: Any) -> list[str]:
        out: list[str] = []
        page = 1
        while True:
            resp = lc.stub.ListClientCertificate(pb.ListClientCertificateRequest(
                parent_identifier=h.sub_id, show_size=2, current_page=page, **kw))
            out += [c.identifier for c in resp.certificate_list]
            assert resp.page_count == (resp.total_count + 1) // 2
            if page >= resp.page_count:
                # Pages are disjoint and together exactly the unpaged listing, in its order.
                whole = lc.stub.ListClientCertificate(pb.ListClientCertificateRequest(
                    parent_identifier=h.sub_id, show_size=100, **kw))
                assert out == [c.identifier for c in whole.certificate_list]
                assert len(out) == len(set(out)) == resp.total_count
                return out
            page += 1

    assert sorted(listed()) == sorted(ids)
    team_a = [common_pb2.Tag(key="team", value="a")]
    assert sorted(listed(tags=team_a)) == sorted([ids[0], ids[2], ids[4]])
    assert sorted(listed(resource_group_id="rg1")) == sorted(ids[:2])
    assert listed(status="REVOKE") == [ids[4]]
    assert sorted(listed(status="ISSUE", tags=team_a)) == sorted(ids[0:3:2])
    first = lc.stub.ListClientCertificate(pb.ListClientCertificateRequest(
        parent_identifier=h.sub_id, show_size=2, current_page=1))
    assert first.total_count == 5 and first.page_count == 3 and first.show_size == 2
    revoked = lc.stub.ListRevokeCertificate(pb.ListRevokeCertificateRequest(
        parent_identifier=h.sub_id))
    assert [r.identifier for r in revoked.certificate_list] == [ids[4]]
    assert revoked.certificate_list[0].reason_code == 0
    by_serial = lc.stub.DescribeClientCertificateForSerialNumber(
        pb.DescribeClientCertificateForSerialNumberRequest(
            serial_number=lc.stub.DescribeClientCertificate(pb.DescribeClientCertificateRequest(
                identifier=ids[1])).certificate.serial_number.upper()))
    assert [c.identifier for c in by_serial.certificate_list] == [ids[1]]
    statuses = lc.stub.DescribeClientCertificateStatus(pb.DescribeClientCertificateStatusRequest(
        identifier=f"{ids[0]},{ids[4]}")).certificate_status
    assert [(s.identifier, s.status) for s in statuses] == [(ids[0], "ISSUE"),
                                                            (ids[4], "REVOKE")]
    assert statuses[1].revoke_time > 0
    bad = pb.ListClientCertificateRequest(status="NOPE")
    assert _fails(lambda: lc.stub.ListClientCertificate(bad)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.Status")


def test_lookup_by_serial_returns_one_certificate_per_issuing_ca(lc: Lc) -> None:
    """Serials are unique per issuer only, so two CAs may both have serial S: the lookup
    returns both, however many certificates the owner has (it once scanned the first
    MAX_PAGE_SIZE rows and past that returned a single row)."""
    import datetime as dt

    serial = str(uuid.uuid4().int >> 2)
    hs = [create_hierarchy(lc, "ECC_256") for _ in range(2)]
    ids = [lc.stub.CreateCustomCertificate(_custom_req(
        h, make_csr(new_key("ECC_256"), "same-serial.example"), immediately=1,
        api_passthrough=pb.ApiPassthrough(serial_number=serial))).identifier for h in hs]

    def lookup(hex_serial: str) -> list[str]:
        return [c.identifier for c in lc.stub.DescribeClientCertificateForSerialNumber(
            pb.DescribeClientCertificateForSerialNumberRequest(
                serial_number=hex_serial)).certificate_list]

    hex_serial = format(int(serial), "x")
    assert sorted(lookup(hex_serial)) == sorted(ids)
    # More than a page of end-entity rows for this owner, inserted directly (issuing them
    # over the API takes seconds): synchronous reservations that were never signed.
    now = dt.datetime.now(dt.UTC)
    with lc.engine.begin() as conn:
        for _ in range(repo.MAX_PAGE_SIZE + 1):
            repo.reserve_certificate(conn, repo.CertificateRow(
                identifier=str(uuid.uuid4()), owner=OWNER, issuer_identifier=hs[0].sub_id,
                status="RESERVED", kind="SERVER", created_at=now, updated_at=now,
                serial=format(uuid.uuid4().int >> 1, "x"), tbs=b"\x30\x00"))
    assert sorted(lookup(hex_serial)) == sorted(ids)
    # Deleted certificates and CA certificates are not found, as by the other lookups.
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=ids[0], reason_code=4))
    lc.stub.DeleteClientCertificate(pb.DeleteClientCertificateRequest(identifier=ids[0]))
    assert lookup(hex_serial) == [ids[1]]
    sub_serial = x509.load_der_x509_certificate(hs[0].sub_der).serial_number
    assert lookup(format(sub_serial, "x")) == []


def test_job_that_died_after_reserving_is_resigned_with_its_serial(lc: Lc,
                                                                  ecc: Hierarchy) -> None:
    import datetime as dt

    from sqlalchemy import update

    job = lc.stub.CreateServerCertificateWithCsr(_server_req(ecc, "crash.example"))
    st = wait_status(lc.stub, job.identifier)
    assert st.status == "ISSUE"
    with lc.engine.begin() as conn:
        tbs = conn.execute(select(cert_t.c.tbs).where(
            cert_t.c.identifier == job.identifier)).scalar_one()
        # As a worker killed between step 6 (reserve) and step 9 (record) leaves it.
        conn.execute(update(cert_t).where(cert_t.c.identifier == job.identifier).values(
            status="RESERVED", certificate=None, lease_owner="dead-worker",
            lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    again = wait_status(lc.stub, job.identifier)
    deadline = time.monotonic() + 10
    while again.status != "ISSUE" and time.monotonic() < deadline:
        again = wait_status(lc.stub, job.identifier)
    assert again.status == "ISSUE" and again.serial_number == st.serial_number
    info = lc.stub.DescribeClientCertificate(
        pb.DescribeClientCertificateRequest(identifier=job.identifier)).certificate
    cert = x509.load_pem_x509_certificate(info.x509_certificate.encode())
    assert cert.tbs_certificate_bytes == tbs
