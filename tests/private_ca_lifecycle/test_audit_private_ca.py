"""The Private CA's key uses and state changes in the audit log, each with its resources and
key, and the log verifies afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from audit_support import audit_table_away, installed_audit_log
from conftest import Lc
from cryptography import x509
from lc_support import wait_status
from pca_support import create_hierarchy, make_csr, new_key, pem_to_der, snapshot
from sqlalchemy import select

from service import audit
from service.audit.verify import list_records, verify_log
from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.storage.schema import audit_record as record_t


@pytest.fixture
def audit_log(lc: Lc, hsm_token: Any) -> Iterator[audit.AuditLog]:
    with installed_audit_log(lc.engine, hsm_token) as log:
        yield log


def _records(lc: Lc, log: audit.AuditLog) -> list[Any]:
    with lc.engine.connect() as conn:
        return [r for r in list_records(conn) if r.writer == log.writer
                and r.action != "audit.checkpoint"]


def test_every_key_use_and_state_change_is_recorded(lc: Lc, audit_log: audit.AuditLog) -> None:
    h = create_hierarchy(lc, "ECC_256")
    leaf = lc.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
        parent_identifier=h.sub_id, csr=make_csr(new_key("ECC_256"), "audit.example",
                                                 ["audit.example"]),
        days=30, immediately=1))
    client = lc.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
        parent_identifier=h.sub_id, san_type=1, san_value="a@example.com",
        common_name="audited key holder", days=10, immediately=1))
    lc.stub.DescribeCertificatePrivateKey(pb.DescribeCertificatePrivateKeyRequest(
        identifier=client.identifier, encrypted_code="not-in-the-log"))
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=client.identifier, reason_code=1))
    lc.stub.DeleteClientCertificate(pb.DeleteClientCertificateRequest(
        identifier=client.identifier))
    queued = lc.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
        parent_identifier=h.sub_id, csr=make_csr(new_key("ECC_256"), "later.example",
                                                 ["later.example"]),
        days=30, immediately=0))
    assert wait_status(lc.stub, queued.identifier).status == "ISSUE"
    lc.stub.UpdateCACertificateStatus(pb.UpdateCACertificateStatusRequest(
        identifier=h.sub_id, status="REVOKE"))
    records = _records(lc, audit_log)
    by_action: dict[str, list[Any]] = {}
    for r in records:
        by_action.setdefault(r.action, []).append(r)
    # Two CA keys generated and two CA certificates signed (root by itself, sub by root).
    assert {json.loads(r.resources)[0] for r in by_action["ca.key.generate"]} == {
        h.root_id, h.sub_id}
    signed_cas = by_action["ca.certificate.sign"]
    assert [json.loads(r.resources) for r in signed_cas] == [[h.root_id, h.root_id],
                                                             [h.sub_id, h.root_id]]
    sub_key = signed_cas[1].key_id  # the root's key signed the sub CA's certificate
    assert sub_key == signed_cas[0].key_id
    # End-entity certificates: signed by the sub CA's key, recorded with their serial.
    signed = {json.loads(r.resources)[0]: r for r in by_action["certificate.sign"]}
    assert set(signed) == {leaf.identifier, client.identifier, queued.identifier}
    # The queued request: stored (a state change of its own), then signed by the job thread.
    (request,) = by_action["certificate.request"]
    assert json.loads(request.resources) == [queued.identifier, h.sub_id]
    assert signed[queued.identifier].principal == "system"
    serial = format(x509.load_der_x509_certificate(
        pem_to_der(leaf.x509_certificate)).serial_number, "x")
    assert json.loads(signed[leaf.identifier].details)["serial"] == serial
    assert all(r.key_token == "hsm" and r.outcome == "SUCCESS" for r in signed.values())
    # The system key: generated, exported, destroyed with the deleted certificate.
    for action in ("key.generate", "key.export", "key.destroy"):
        (r,) = by_action[action]
        assert json.loads(r.resources)[0] == client.identifier, action
    assert by_action["certificate.revoke"][0].reason == ""
    assert json.loads(by_action["certificate.revoke"][0].details)["reason"] == 1
    assert [json.loads(r.resources) for r in by_action["certificate.delete"]] == [
        [client.identifier]]
    assert [json.loads(r.resources) for r in by_action["ca.revoke"]] == [[h.sub_id]]
    # CRLs: re-issued by the sub CA after the revocation, by the root after the CA's.
    crl_cas = {json.loads(r.resources)[0] for r in by_action["crl.sign"]}
    assert {h.sub_id, h.root_id} <= crl_cas
    assert "not-in-the-log" not in " ".join(repr(r) for r in records)
    audit_log.checkpoint()
    with lc.engine.connect() as conn:
        assert audit_log.key is not None
        report = verify_log(conn, audit_log.key.public_key_info)
    assert report.findings == []


def test_a_certificate_and_its_signing_record_commit_together(
        lc: Lc, audit_log: audit.AuditLog) -> None:
    h = create_hierarchy(lc, "ECC_256")
    commits = lc.service.store.commits
    n = 8
    for i in range(n):
        lc.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
            parent_identifier=h.sub_id, csr=make_csr(new_key("ECC_256"), f"c{i}.example",
                                                     [f"c{i}.example"]),
            days=30, immediately=1))
    # One issuance: the reservation commit and the record commit (certificate + audit
    # record); the audit log adds none of its own.
    assert lc.service.store.commits - commits <= 2 * n
    with lc.engine.connect() as conn:
        signs = conn.execute(select(record_t.c.seq).where(
            record_t.c.writer == audit_log.writer,
            record_t.c.action == "certificate.sign")).all()
    assert len(signs) == n


def test_keys_whose_generation_cannot_be_recorded_are_destroyed(
        lc: Lc, audit_log: audit.AuditLog) -> None:
    # A CA key and a system-generated subscriber key, each made before its record failed:
    # the call fails and leaves nothing, in the database or in either token.
    h = create_hierarchy(lc, "ECC_256")
    tokens = (lc.service.tokens.hsm, lc.service.tokens.software)
    before = snapshot(lc, tokens)
    with audit_table_away(lc.engine):
        with pytest.raises(grpc.RpcError):
            lc.stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
                common_name="unrecorded root", organization="hsmca", country_code="CN",
                algorithm="ECC_256", years=1))
        for protection_level in ("HSM", "SOFTWARE"):
            with pytest.raises(grpc.RpcError):
                lc.stub.CreateClientCertificate(pb.CreateClientCertificateRequest(
                    parent_identifier=h.sub_id, san_type=1, san_value="a@example.com",
                    common_name="unrecorded key holder", days=10, immediately=1,
                    protection_level=protection_level))
    assert snapshot(lc, tokens) == before
