"""The audit log: records carry the call's context, chains and checkpoints catch tampering.

Tampering is done for real, with SQL behind the service's back, and ``verify`` must name
each change: edited, deleted, reordered and inserted records, removed chains and tails,
forged checkpoint signatures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select, text, update

from service.audit.chain import AuditRecord, record_hash
from service.audit.key import AUDIT_KEY_ID, AuditKey
from service.audit.log import CHECKPOINT_ACTION, SYSTEM_PRINCIPAL, AuditLog, KeyRef
from service.audit.verify import Finding, list_records, verify_log
from service.auth.principal import Principal, acting_as
from service.request_id import serving_request
from service.storage.group_commit import group_committer
from service.storage.schema import audit_checkpoint as checkpoint_t
from service.storage.schema import audit_record as record_t

REPO = Path(__file__).resolve().parents[2]


def _log(engine: Engine, key: AuditKey, writer: str) -> AuditLog:
    return AuditLog(engine, default_tenant="tenant-default", key=key, writer=writer,
                    checkpoint_seconds=3600)


def _findings(engine: Engine, key: AuditKey) -> list[Finding]:
    with engine.connect() as conn:
        return verify_log(conn, key.public_key_info).findings


def _kinds(findings: list[Finding]) -> set[tuple[str, str, int | None]]:
    return {(f.kind, f.writer, f.seq) for f in findings}


def _closed_chain(engine: Engine, key: AuditKey, writer: str = "w-a", n: int = 5) -> AuditLog:
    """A chain: checkpoint (1), n records (2..n+1), closing checkpoint (n+2)."""
    log = _log(engine, key, writer)
    log.start()
    for i in range(n):
        log.record("certificate.sign", resources=[f"cert-{i}"],
                   key=KeyRef("hsm", "ab" * 16), details={"serial": f"{i + 1:x}"})
    log.close()
    return log


def test_a_record_carries_the_call_context(engine: Engine, audit_key: AuditKey) -> None:
    log = _log(engine, audit_key, "w-ctx")
    with acting_as(Principal("alice", "tenant-a")), serving_request("req-1"):
        log.record("certificate.revoke", resources=["cert-1", "ca-1"], reason="keyCompromise",
                   key=KeyRef("hsm", "0a0b"))
    log.record("crl.sign", resources=["ca-1"])
    with engine.connect() as conn:
        first, second = list_records(conn)
    assert (first.principal, first.tenant, first.request_id) == ("alice", "tenant-a", "req-1")
    assert (first.action, first.outcome, first.reason) == ("certificate.revoke", "SUCCESS",
                                                            "keyCompromise")
    assert json.loads(first.resources) == ["cert-1", "ca-1"]
    assert (first.key_token, first.key_id) == ("hsm", "0a0b")
    # Outside a call: the system principal and the configured default tenant.
    assert (second.principal, second.tenant, second.request_id) == (
        SYSTEM_PRINCIPAL, "tenant-default", "")
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.record_hash


def test_list_filters(engine: Engine, audit_key: AuditKey) -> None:
    log = _log(engine, audit_key, "w-list")
    with acting_as(Principal("alice", "t1")):
        log.record("certificate.sign", resources=["c1"])
        log.record("certificate.revoke", resources=["c2"])
    with acting_as(Principal("bob", "t2")):
        log.record("key.export", resources=["c1"], outcome="REFUSED", reason="Forbidden")
    with engine.connect() as conn:
        def actions(**kw: object) -> list[str]:
            return [r.action for r in list_records(conn, **kw)]  # type: ignore[arg-type]
        assert actions(principal="alice") == ["certificate.sign", "certificate.revoke"]
        assert actions(action="certificate.*") == ["certificate.sign", "certificate.revoke"]
        assert actions(resource="c1") == ["certificate.sign", "key.export"]
        assert actions(tenant="t2") == ["key.export"]
        assert actions(resource="c") == []  # whole identifiers, not substrings


def test_an_untouched_log_verifies(engine: Engine, audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key, "w-a")
    _closed_chain(engine, audit_key, "w-b")
    with engine.connect() as conn:
        report = verify_log(conn, audit_key.public_key_info)
    assert report.findings == []
    assert (report.chains, report.records, report.checkpoints) == (2, 14, 4)


def test_verify_names_an_edited_record(engine: Engine, audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key)
    with engine.begin() as conn:
        conn.execute(update(record_t).where(record_t.c.seq == 3)
                     .values(principal="someone-else"))
    assert ("ALTERED", "w-a", 3) in _kinds(_findings(engine, audit_key))


def test_verify_names_a_deleted_record(engine: Engine, audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key)
    with engine.begin() as conn:
        conn.execute(delete(record_t).where(record_t.c.seq == 3))
    assert _kinds(_findings(engine, audit_key)) == {("DELETED", "w-a", 3)}


def test_verify_names_reordered_records(engine: Engine, audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key)
    with engine.begin() as conn:  # swap records 3 and 4
        conn.execute(update(record_t).where(record_t.c.seq == 3).values(seq=-1))
        conn.execute(update(record_t).where(record_t.c.seq == 4).values(seq=3))
        conn.execute(update(record_t).where(record_t.c.seq == -1).values(seq=4))
    findings = _findings(engine, audit_key)
    assert _kinds(findings) == {("REORDERED", "w-a", 3), ("REORDERED", "w-a", 4)}
    assert {f.message for f in findings} == {"record stored at seq 3 was written as seq 4",
                                             "record stored at seq 4 was written as seq 3"}


def test_verify_names_a_record_altered_and_rehashed(engine: Engine,
                                                    audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key)
    with engine.begin() as conn:
        row = conn.execute(select(record_t).where(record_t.c.seq == 3)).mappings().one()
        forged = AuditRecord.from_row({**row, "reason": "nothing to see"})
        conn.execute(update(record_t).where(record_t.c.seq == 3).values(
            reason=forged.reason, record_hash=forged.computed_hash()))
    assert ("BROKEN_LINK", "w-a", 4) in _kinds(_findings(engine, audit_key))


def _forge_after(conn, writer: str) -> None:
    """Append a well-formed record (correct seq, link and hash) to ``writer``'s chain."""
    last = conn.execute(select(record_t).where(record_t.c.writer == writer)
                        .order_by(record_t.c.seq.desc()).limit(1)).mappings().one()
    rec = {**last, "seq": last["seq"] + 1, "action": "certificate.sign",
           "prev_hash": last["record_hash"], "details": "{}"}
    rec["record_hash"] = AuditRecord.from_row({**rec, "record_hash": ""}).computed_hash()
    conn.execute(insert(record_t), [rec])


def test_verify_names_a_record_appended_after_the_closing_checkpoint(
        engine: Engine, audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key)
    with engine.begin() as conn:
        _forge_after(conn, "w-a")
    assert _kinds(_findings(engine, audit_key)) == {("INSERTED", "w-a", 8)}


def test_verify_names_a_forged_chain(engine: Engine, audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key)
    with engine.begin() as conn:
        digest = record_hash("w-forged", 1, __import__("datetime").datetime.now(
            __import__("datetime").UTC), "mallory", "t", "key.export", "[]", None, None,
            "SUCCESS", "", "", "{}", "0" * 64)
        row = conn.execute(select(record_t).where(record_t.c.seq == 2)).mappings().one()
        conn.execute(insert(record_t), [{**row, "writer": "w-forged", "seq": 1,
                                         "principal": "mallory", "record_hash": digest}])
    assert ("INSERTED", "w-forged", 1) in _kinds(_findings(engine, audit_key))


def test_checkpoints_catch_a_removed_tail_and_a_removed_chain(engine: Engine,
                                                              audit_key: AuditKey) -> None:
    a = _log(engine, audit_key, "w-a")
    a.start()
    a.record("certificate.sign", resources=["c1"])
    a.record("certificate.sign", resources=["c2"])  # seq 3, the head when b starts
    b = _log(engine, audit_key, "w-b")
    b.start()  # its first checkpoint names w-a's head (seq 3)
    c = _log(engine, audit_key, "w-c")
    c.start()
    c.record("key.destroy", resources=["k"])
    c.close()
    a.checkpoint()  # names w-c's closing checkpoint (seq 3)
    with engine.begin() as conn:
        conn.execute(delete(record_t).where(record_t.c.writer == "w-a", record_t.c.seq == 3))
        conn.execute(delete(record_t).where(record_t.c.writer == "w-c"))
        conn.execute(delete(checkpoint_t).where(checkpoint_t.c.writer == "w-c"))
    kinds = _kinds(_findings(engine, audit_key))
    assert ("DELETED", "w-a", 3) in kinds  # named by w-b's checkpoint
    assert ("DELETED", "w-c", 3) in kinds  # the whole chain, named by w-a's checkpoint


def test_verify_names_a_forged_or_missing_checkpoint_signature(
        engine: Engine, audit_key: AuditKey) -> None:
    _closed_chain(engine, audit_key)
    with engine.begin() as conn:
        conn.execute(update(checkpoint_t).where(checkpoint_t.c.seq == 1)
                     .values(signature=b"\x30\x06\x02\x01\x01\x02\x01\x01"))
        conn.execute(delete(checkpoint_t).where(checkpoint_t.c.seq == 7))
    kinds = _kinds(_findings(engine, audit_key))
    assert ("CHECKPOINT", "w-a", 1) in kinds and ("CHECKPOINT", "w-a", 7) in kinds


def test_checkpoints_are_signed_by_the_non_exportable_token_key(
        hsm_token, audit_key: AuditKey) -> None:
    from hsm.keys import read_key_attributes

    attributes = read_key_attributes(hsm_token, AUDIT_KEY_ID)
    assert attributes.proves_non_exportable and attributes.sign and not attributes.decrypt


def test_a_record_rolled_back_with_its_batch_leaves_no_gap(engine: Engine,
                                                          audit_key: AuditKey) -> None:
    log = _log(engine, audit_key, "w-gc")
    log.start()

    def boom(conn) -> None:
        raise RuntimeError("this operation fails")

    outcomes = group_committer(engine).run_many([
        log.op(log.entry("certificate.sign", resources=["c1"])),
        boom,
        log.op(log.entry("certificate.sign", resources=["c2"])),
    ])
    assert [e is None for _, e in outcomes] == [True, False, True]
    log.record("certificate.sign", resources=["c3"])
    log.close()
    with engine.connect() as conn:
        seqs = [r.seq for r in list_records(conn)]
    assert sorted(seqs) == [1, 2, 3, 4, 5]
    assert _findings(engine, audit_key) == []


def test_concurrent_writers_keep_one_contiguous_chain(engine: Engine,
                                                      audit_key: AuditKey) -> None:
    log = _log(engine, audit_key, "w-threads")
    log.start()

    def work(i: int) -> None:
        for j in range(20):
            log.record("certificate.sign", resources=[f"c-{i}-{j}"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    with engine.connect() as conn:
        report = verify_log(conn, audit_key.public_key_info)
    assert report.findings == [] and report.records == 162


def test_records_after_the_last_checkpoint_are_reported_unanchored(
        engine: Engine, audit_key: AuditKey) -> None:
    log = _log(engine, audit_key, "w-open")
    log.start()
    log.record("certificate.sign")
    log.record("certificate.sign")
    with engine.connect() as conn:
        report = verify_log(conn, audit_key.public_key_info)
    assert report.ok and report.unanchored == {"w-open": 2}


def _cli(db_url: str, softhsm_state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HSMCA_DATABASE_URL": db_url,
           "HSMCA_HSM_PIN_SOURCE": f"file:{softhsm_state / 'user.pin'}",
           "HSMCA_SOFTWARE_PIN_SOURCE": f"file:{softhsm_state / 'user.pin'}"}
    env.pop("HSMCA_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "service.cli", "audit", *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_the_audit_command(engine: Engine, db_url: str, audit_key: AuditKey,
                           softhsm_state: Path) -> None:
    _closed_chain(engine, audit_key)
    ok = _cli(db_url, softhsm_state, "verify")
    assert ok.returncode == 0, ok.stderr
    assert "0 finding(s)" in ok.stderr
    listed = _cli(db_url, softhsm_state, "list", "--action", "certificate.sign",
                  "--resource", "cert-2")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert json.loads(line)["resources"] == ["cert-2"]
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_record SET reason = 'x' WHERE seq = 4"))
        conn.execute(text("DELETE FROM audit_record WHERE seq = 2"))
    bad = _cli(db_url, softhsm_state, "verify", "--json")
    assert bad.returncode == 1
    found = {(f["kind"], f["seq"]) for f in map(json.loads, bad.stdout.splitlines())}
    assert found == {("ALTERED", 4), ("DELETED", 2)}


@pytest.mark.parametrize("action", [CHECKPOINT_ACTION])
def test_checkpoint_records_name_every_active_chain(engine: Engine, audit_key: AuditKey,
                                                    action: str) -> None:
    _closed_chain(engine, audit_key, "w-a", n=1)
    b = _log(engine, audit_key, "w-b")
    first = b.checkpoint()
    assert first is not None and first.action == action
    heads = json.loads(first.details)["heads"]
    assert heads == {"w-a": [3, heads["w-a"][1]]}
