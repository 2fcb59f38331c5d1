"""CRL publishing at scale: current CRL only, coalesced re-issues, monotonic thisUpdate."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from cryptography import x509
from lc_support import fetch
from pca_support import OWNER, Hierarchy, create_hierarchy, make_csr, new_key
from sqlalchemy import func, select, update

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.storage import repo
from service.storage.schema import certificate as cert_t
from service.storage.schema import crl as crl_t


def _leaves(lc: Any, h: Hierarchy, n: int) -> list[Any]:
    key = new_key("ECC_256")
    return [lc.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
        parent_identifier=h.sub_id, csr=make_csr(key, f"crl{i}.example"), days=5,
        immediately=1)) for i in range(n)]


def _revoke(lc: Any, identifier: str) -> None:
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=identifier, reason_code=1))


def _history(lc: Any, ca: str) -> list[repo.CrlHistoryRow]:
    with lc.engine.connect() as conn:
        return list(repo.list_crl_history(conn, ca))


@pytest.fixture
def h(lc: Any) -> Hierarchy:
    return create_hierarchy(lc, "ECC_256")


def test_only_the_current_crl_is_kept_with_a_history_of_hashes(lc: Any, h: Hierarchy) -> None:
    import hashlib

    assert lc.crls is not None
    for leaf in _leaves(lc, h, 3):
        _revoke(lc, leaf.identifier)
    row = lc.crls.publish(h.sub_id)
    with lc.engine.connect() as conn:
        stored = conn.execute(select(crl_t.c.crl_number).where(
            crl_t.c.ca_identifier == h.sub_id)).scalars().all()
    assert stored == [row.crl_number]
    history = _history(lc, h.sub_id)
    assert [e.crl_number for e in history][-1] == row.crl_number
    assert len(history) >= 4  # one per revocation (or fewer, coalesced) and this one
    assert history[-1].sha256 == hashlib.sha256(row.der).digest()
    body, _ = fetch(f"http://127.0.0.1:{lc.http_port}/crl/{h.sub_id}.crl")
    assert body == row.der


def test_concurrent_revocations_share_one_reissue(lc: Any, h: Hierarchy,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert lc.crls is not None
    crls = lc.crls
    leaves = _leaves(lc, h, 7)
    real = crls.publish_if_enabled
    first_running, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def publish_if_enabled(ca_identifier: str) -> Any:
        calls.append(1)
        if len(calls) == 1:
            first_running.set()
            release.wait(30)  # the first re-issue is slow; six revocations arrive meanwhile
        return real(ca_identifier)

    monkeypatch.setattr(crls, "publish_if_enabled", publish_if_enabled)
    first = threading.Thread(target=_revoke, args=(lc, leaves[0].identifier))
    first.start()
    assert first_running.wait(30)
    others = [threading.Thread(target=_revoke, args=(lc, leaf.identifier))
              for leaf in leaves[1:]]
    for t in others:
        t.start()
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    while dt.datetime.now() < deadline:  # all six are committed and waiting
        with lc.engine.connect() as conn:
            revoked = conn.execute(select(func.count()).where(
                cert_t.c.issuer_identifier == h.sub_id,
                cert_t.c.status == "REVOKED")).scalar_one()
        if revoked == 7:
            break
    release.set()
    for t in [first, *others]:
        t.join(60)
    # The slow one, then one for the six that waited: not seven.
    assert len(calls) == 2, calls
    crl = x509.load_der_x509_crl(fetch(f"http://127.0.0.1:{lc.http_port}/crl/{h.sub_id}.crl")[0])
    assert {r.serial_number for r in crl} >= {int(leaf.serial_number, 16) for leaf in leaves}


def test_this_update_never_goes_backwards_nor_before_a_listed_revocation(
        lc: Any, h: Hierarchy, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lc.crls is not None
    leaves = _leaves(lc, h, 2)
    _revoke(lc, leaves[0].identifier)  # this process has a CRL and its entries
    # Another replica, its clock an hour ahead, revoked and dated the other one.
    ahead = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    with lc.engine.begin() as conn:
        assert repo.revoke_certificate(conn, OWNER, leaves[1].identifier, 1, now=ahead)
    first = lc.crls.publish(h.sub_id)
    assert first.this_update >= ahead
    # A clock that went back a day issues the next CRL: its thisUpdate does not go back.
    behind = lc.service.now() - dt.timedelta(days=1)
    monkeypatch.setattr(lc.service, "now", lambda: behind)
    second = lc.crls.publish(h.sub_id)
    assert second.crl_number > first.crl_number
    assert second.this_update >= first.this_update
    crl = x509.load_der_x509_crl(second.der)
    assert all(r.revocation_date_utc <= crl.last_update_utc for r in crl)
    history = _history(lc, h.sub_id)
    assert [e.this_update for e in history] == sorted(e.this_update for e in history)


def test_a_crl_that_missed_a_revocation_is_due_whatever_the_clocks(lc: Any, h: Hierarchy) -> None:
    assert lc.crls is not None
    leaf = _leaves(lc, h, 1)[0]
    current = lc.crls.publish(h.sub_id)
    # Revoked after that CRL read its entries, dated long before it (another replica's
    # clock), and its own re-issue never ran (the process died): still due.
    with lc.engine.begin() as conn:
        assert repo.revoke_certificate(conn, OWNER, leaf.identifier, 1,
                                       now=current.this_update - dt.timedelta(hours=2))
        due = repo.list_crl_due(conn, dt.datetime.now(dt.UTC))
    assert h.sub_id in due


def _serials(row: repo.CrlRow | None) -> set[int]:
    assert row is not None
    return {r.serial_number for r in x509.load_der_x509_crl(row.der)}


def test_each_process_reads_only_the_revocations_since_its_last_crl(
        lc: Any, h: Hierarchy, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.private_ca.crls import CrlPublisher

    assert lc.crls is not None
    other = CrlPublisher(lc.service)  # another worker process, with its own entries
    leaves = _leaves(lc, h, 4)
    serials = [int(leaf.serial_number, 16) for leaf in leaves]
    _revoke(lc, leaves[0].identifier)
    assert serials[0] in _serials(other.publish(h.sub_id))  # it reads them all, once
    full_reads: list[str] = []
    real = repo.list_revoked
    monkeypatch.setattr(repo, "list_revoked",
                        lambda conn, ca: full_reads.append(ca) or real(conn, ca))
    with lc.engine.begin() as conn:  # the other process's revocation
        assert repo.revoke_certificate(conn, OWNER, leaves[1].identifier, 4)
    assert _serials(other.publish(h.sub_id)) >= set(serials[:2])
    _revoke(lc, leaves[2].identifier)  # this one reads the other's revocation and its own
    assert _serials(lc.crls.latest(h.sub_id)) >= set(serials[:3])
    _revoke(lc, leaves[3].identifier)
    assert _serials(other.publish(h.sub_id)) >= set(serials)
    assert h.sub_id not in full_reads


def test_a_revoked_row_outside_the_numbering_is_listed_once_every_entry_is_read_again(
        lc: Any, h: Hierarchy, caplog: pytest.LogCaptureFixture) -> None:
    import datetime as dt

    from service.private_ca.crls import CrlPublisher

    leaves = _leaves(lc, h, 2)
    serials = [int(leaf.serial_number, 16) for leaf in leaves]
    each_time = CrlPublisher(lc.service, read_all_every=dt.timedelta(0))
    each_time.publish(h.sub_id)
    # Revoked by something other than repo's revocations: no number, not counted.
    with lc.engine.begin() as conn:
        conn.execute(update(cert_t).where(cert_t.c.identifier == leaves[0].identifier)
                     .values(status="REVOKED", revoked_at=dt.datetime.now(dt.UTC)))
    _revoke(lc, leaves[1].identifier)
    assert _serials(each_time.publish(h.sub_id)) >= set(serials)
    assert "without a revocation_seq" in caplog.text


def test_a_publisher_that_lost_the_number_to_a_crl_listing_as_much_returns_that_one(
        lc: Any, h: Hierarchy, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.private_ca import crls as crls_module
    from service.private_ca.crls import CrlPublisher

    assert lc.crls is not None
    leaf = _leaves(lc, h, 1)[0]
    _revoke(lc, leaf.identifier)
    other = CrlPublisher(lc.service)
    caller = threading.current_thread()
    real = crls_module.verify_crl
    winners: list[repo.CrlRow] = []
    interleaved = threading.Event()

    def verify_crl(der: bytes, spki: bytes) -> None:
        # Another process stores its CRL between this one's read and its store.
        if threading.current_thread() is caller and not interleaved.is_set():
            interleaved.set()
            winners.append(other.publish(h.sub_id))
        real(der, spki)

    monkeypatch.setattr(crls_module, "verify_crl", verify_crl)
    before = len(_history(lc, h.sub_id))
    row = lc.crls.publish(h.sub_id)
    assert winners and row.crl_number == winners[0].crl_number and row.der == winners[0].der
    assert int(leaf.serial_number, 16) in _serials(row)
    assert len(_history(lc, h.sub_id)) == before + 1  # the winner's only
