"""Every use of a KMS certificate's key leaves an audit record, durable before the result
is returned, without secrets; a key use whose record cannot be written returns nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from audit_support import audit_table_away, installed_audit_log
from kms_api_support import OpensslCa
from pkcs11 import Attribute, ObjectClass
from sqlalchemy import Engine, func, select

from service import audit
from service.audit.verify import list_records, verify_log
from service.auth.principal import Principal, acting_as
from service.errors import FailedPrecondition, NotFound, PermissionDenied
from service.request_id import serving_request
from service.storage.schema import kms_certificate as kms_t

OWNER = "default"


@pytest.fixture
def audit_log(kms_engine: Engine, hsm_token: Any) -> Iterator[audit.AuditLog]:
    with installed_audit_log(kms_engine, hsm_token, OWNER) as log:
        yield log


def _mine(engine: Engine, log: audit.AuditLog) -> list[Any]:
    with engine.connect() as conn:
        return [r for r in list_records(conn) if r.writer == log.writer]


def test_key_uses_are_recorded_without_secrets(kms: Any, ca: OpensslCa,
                                               audit_log: audit.AuditLog) -> None:
    service = kms.service
    message = b"the secret message that must not be logged"
    with acting_as(Principal("alice", OWNER)), serving_request("req-kms-1"):
        created = service.create_certificate(OWNER, key_spec="EC_P256",
                                             subject="C=CN,O=hsmca,OU=audit,CN=audit",
                                             protection_level="HSM")
        service.upload_certificate(OWNER, created.certificate_id, ca.issue(created.csr))
        service.private_key_sign(OWNER, created.certificate_id, algorithm="ECDSA_SHA_256",
                                 message=message)
        with pytest.raises(PermissionDenied):
            service.export_certificate(OWNER, created.certificate_id, export_format="PEM",
                                       passphrase="p4ssphrase-not-logged")
        service.delete_certificate(OWNER, created.certificate_id)
    records = [r for r in _mine(kms.engine, audit_log) if r.action != "audit.checkpoint"]
    assert [(r.action, r.outcome) for r in records] == [
        ("kms.key.generate", "SUCCESS"), ("kms.csr.sign", "SUCCESS"),
        ("kms.certificate.upload", "SUCCESS"), ("kms.sign", "SUCCESS"),
        ("kms.key.export", "FAILURE"), ("kms.key.destroy", "SUCCESS")]
    for r in records:
        assert (r.principal, r.tenant, r.request_id) == ("alice", OWNER, "req-kms-1")
        assert json.loads(r.resources) == [created.certificate_id]
        if r.action != "kms.certificate.upload":  # a state change, not a key use
            assert r.key_token == "hsm" and r.key_id
    sign = records[3]
    assert json.loads(sign.details)["message_sha256"] == hashlib.sha256(message).hexdigest()
    assert records[4].reason.startswith("Forbidden.KeyNotExportable")
    everything = " ".join(repr(r) for r in records)
    assert "secret message" not in everything and "p4ssphrase" not in everything
    assert message.hex() not in everything
    audit_log.checkpoint()
    with kms.engine.connect() as conn:
        assert verify_log(conn, audit_log.key.public_key_info).findings == []  # type: ignore[union-attr]


def test_a_signature_whose_record_cannot_be_written_is_not_returned(
        kms: Any, ca: OpensslCa, audit_log: audit.AuditLog) -> None:
    service = kms.service
    created = service.create_certificate(OWNER, key_spec="EC_P256",
                                         subject="C=CN,O=hsmca,OU=audit,CN=audit2",
                                         protection_level="HSM")
    service.upload_certificate(OWNER, created.certificate_id, ca.issue(created.csr))
    with audit_table_away(kms.engine), pytest.raises(Exception, match="audit_record"):
        service.private_key_sign(OWNER, created.certificate_id, algorithm="ECDSA_SHA_256",
                                 message=b"m")
    service.delete_certificate(OWNER, created.certificate_id)


def _private_keys(token: Any) -> int:
    return int(token.run(
        lambda s: len(list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})))))


def _row(kms: Any, certificate_id: str) -> Any:
    with kms.engine.connect() as conn:
        return conn.execute(select(kms_t.c.status, kms_t.c.certificate).where(
            kms_t.c.certificate_id == certificate_id)).one_or_none()


@pytest.mark.parametrize("protection_level", ["HSM", "SOFTWARE"])
def test_a_key_whose_generation_cannot_be_recorded_is_destroyed(
        kms: Any, audit_log: audit.AuditLog, protection_level: str) -> None:
    token = kms.hsm_token if protection_level == "HSM" else kms.software_token
    keys = _private_keys(token)
    with kms.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(kms_t)).scalar_one()
    with audit_table_away(kms.engine), pytest.raises(Exception, match="audit_record"):
        kms.service.create_certificate(OWNER, key_spec="EC_P256", protection_level=protection_level,
                                       subject="C=CN,O=hsmca,OU=audit,CN=unrecorded")
    # Nothing is left: the key made before its record failed is destroyed again.
    assert _private_keys(token) == keys
    with kms.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(kms_t)).scalar_one() == rows


def test_state_changes_that_cannot_be_recorded_change_nothing(
        kms: Any, ca: OpensslCa, audit_log: audit.AuditLog) -> None:
    # Each change and its audit record commit together: without the record the caller gets
    # an error and the certificate is as it was, so the retry the error invites succeeds.
    service = kms.service
    created = service.create_certificate(OWNER, key_spec="EC_P256", protection_level="HSM",
                                         subject="C=CN,O=hsmca,OU=audit,CN=changes")
    cid = created.certificate_id
    certificate = ca.issue(created.csr)
    with audit_table_away(kms.engine), pytest.raises(Exception, match="audit_record"):
        service.upload_certificate(OWNER, cid, certificate)
    assert _row(kms, cid) == ("PENDING", None)
    service.upload_certificate(OWNER, cid, certificate)
    with audit_table_away(kms.engine), pytest.raises(Exception, match="audit_record"):
        service.update_certificate_status(OWNER, cid, "REVOKED")
    assert _row(kms, cid).status == "ACTIVE"
    service.update_certificate_status(OWNER, cid, "REVOKED")
    assert _row(kms, cid).status == "REVOKED"
    keys = _private_keys(kms.hsm_token)
    with audit_table_away(kms.engine), pytest.raises(Exception, match="audit_record"):
        service.delete_certificate(OWNER, cid)
    # Neither the row nor its key went.
    assert _row(kms, cid) is not None and _private_keys(kms.hsm_token) == keys
    service.delete_certificate(OWNER, cid)
    assert _row(kms, cid) is None and _private_keys(kms.hsm_token) == keys - 1
    records = [(r.action, r.outcome) for r in _mine(kms.engine, audit_log)
               if json.loads(r.resources) == [cid]]
    assert [a for a, outcome in records if outcome == "SUCCESS"] == [
        "kms.key.generate", "kms.csr.sign", "kms.certificate.upload", "kms.certificate.status",
        "kms.key.destroy"]


def _changed_after_read(monkeypatch: pytest.MonkeyPatch, service: Any,
                        change: Any) -> None:
    """The next read of a certificate by the service is followed, before the service goes
    on, by ``change`` (a real revocation or deletion through the service): the race of a key
    use with a concurrent call, made to happen every time."""
    real_get = service._get

    def get_then_change(owner: str, certificate_id: str) -> Any:
        row = real_get(owner, certificate_id)
        monkeypatch.setattr(service, "_get", real_get)
        change(owner, certificate_id)
        return row

    monkeypatch.setattr(service, "_get", get_then_change)


@pytest.mark.parametrize("key", [("EC_P256", "HSM"), ("EC_SM2", "SOFTWARE")])
@pytest.mark.parametrize("change", ["revoke", "delete"])
def test_a_key_use_racing_a_revocation_or_deletion_returns_nothing(
        kms: Any, ca: OpensslCa, sm2_ca: OpensslCa, audit_log: audit.AuditLog,
        monkeypatch: pytest.MonkeyPatch, key: tuple[str, str], change: str) -> None:
    # The certificate is revoked or deleted after the service read it as ACTIVE and before
    # the signature is returned: no signature leaves, and the caller learns what happened
    # (IncorrectStatus, NotFound), never INTERNAL.
    service = kms.service
    spec, level = key
    created = service.create_certificate(OWNER, key_spec=spec, protection_level=level,
                                         subject="C=CN,O=hsmca,OU=audit,CN=race")
    issuer = sm2_ca if spec == "EC_SM2" else ca
    service.upload_certificate(OWNER, created.certificate_id, issuer.issue(created.csr))
    if change == "revoke":
        _changed_after_read(monkeypatch, service, lambda owner, cid:
                            service.update_certificate_status(owner, cid, "REVOKED"))
        expected: type[Exception] = FailedPrecondition
    else:
        _changed_after_read(monkeypatch, service, service.delete_certificate)
        expected = NotFound
    algorithm = "SM2DSA" if spec == "EC_SM2" else "ECDSA_SHA_256"
    with pytest.raises(expected):
        service.private_key_sign(OWNER, created.certificate_id, algorithm=algorithm,
                                 message=b"raced")
    signs = [r for r in _mine(kms.engine, audit_log) if r.action == "kms.sign"
             and json.loads(r.resources) == [created.certificate_id]]
    assert [r.outcome for r in signs] == ["FAILURE"]
