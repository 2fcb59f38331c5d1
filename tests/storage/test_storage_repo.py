"""Repository layer on SQLite: round trips, owner scoping, uniqueness, paging and filters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, text
from storage_factories import T0, ca_row, kms_row, new_id, pending_job, reserved_cert

from service.errors import AlreadyExists, FailedPrecondition
from service.storage import repo
from service.storage.repo import CrlRow
from service.storage.schema import CaStatus


def _add_ca(engine: Engine, **kw: object) -> repo.CaRow:
    row = ca_row(**kw)  # type: ignore[arg-type]
    with engine.begin() as conn:
        repo.insert_ca(conn, row)
    return row


# --- CA ---


def test_ca_round_trip(engine: Engine) -> None:
    row = ca_row(extended_key_usages=("1.3.6.1.5.5.7.3.1",), path_len_constraint=0)
    with engine.begin() as conn:
        repo.insert_ca(conn, row)
    with engine.connect() as conn:
        got = repo.get_ca(conn, row.owner, row.identifier)
    assert got == row
    assert got is not None and got.not_after.tzinfo is dt.UTC


def test_ca_other_owner_not_found(engine: Engine) -> None:
    row = _add_ca(engine, owner="alice")
    with engine.connect() as conn:
        assert repo.get_ca(conn, "bob", row.identifier) is None
        assert repo.get_ca(conn, "alice", new_id()) is None
        assert repo.list_cas(conn, "bob").total == 0


def test_ca_issue_and_revoke_transitions(engine: Engine) -> None:
    row = _add_ca(engine, status="RESERVED", certificate=None)
    with engine.begin() as conn:
        repo.mark_ca_issued(conn, row.identifier, b"\x30\x00", now=T0)
        with pytest.raises(FailedPrecondition):
            repo.mark_ca_issued(conn, row.identifier, b"\x30\x00", now=T0)
        later = T0 + dt.timedelta(days=1)
        assert repo.update_ca_status(
            conn,
            row.owner,
            row.identifier,
            "REVOKE",
            expected=["ISSUE"],
            now=later,
            revocation_reason=1,
        )
        assert not repo.update_ca_status(
            conn, row.owner, row.identifier, "REVOKE", expected=["ISSUE"], now=later
        )
        got = repo.get_ca(conn, row.owner, row.identifier)
    assert got is not None
    assert (got.status, got.certificate, got.revoked_at, got.revocation_reason) == (
        "REVOKE",
        b"\x30\x00",
        later,
        1,
    )


def test_list_cas_paging_and_filters(engine: Engine) -> None:
    root = _add_ca(engine)
    subs = [
        _add_ca(
            engine,
            kind="SUB",
            parent_identifier=root.identifier,
            created_at=T0 + dt.timedelta(minutes=i),
        )
        for i in range(5)
    ]
    _add_ca(engine, owner="other")
    with engine.connect() as conn:
        page = repo.list_cas(conn, "default", offset=1, limit=2, kind="SUB")
        assert page.total == 5
        assert [r.identifier for r in page.items] == [s.identifier for s in subs[1:3]]
        by_parent = repo.list_cas(conn, "default", parent_identifier=root.identifier, limit=100)
        assert {r.identifier for r in by_parent.items} == {s.identifier for s in subs}
        assert repo.list_cas(conn, "default", status="REVOKE").total == 0


# --- serial reservation and uniqueness ---


def test_duplicate_serial_per_issuer_is_already_exists(engine: Engine) -> None:
    ca = _add_ca(engine)
    with engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "abc123"))
    with pytest.raises(AlreadyExists) as e, engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "abc123"))
    assert e.value.reason == "AlreadyExists.SerialNumber"
    # The same serial under another issuer is fine (uniqueness is per issuer).
    other = _add_ca(engine)
    with engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(other, "abc123"))


def test_duplicate_custom_identifier_per_owner_is_already_exists(engine: Engine) -> None:
    ca = _add_ca(engine)
    with engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "1", custom_identifier="order-7"))
    with pytest.raises(AlreadyExists) as e, engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "2", custom_identifier="order-7"))
    assert e.value.reason == "AlreadyExists.CustomIdentifier"
    with pytest.raises(AlreadyExists) as e, engine.begin() as conn:
        repo.insert_pending(conn, pending_job(ca, custom_identifier="order-7"))
    assert e.value.reason == "AlreadyExists.CustomIdentifier"
    # Another owner may use the same key.
    other = _add_ca(engine, owner="tenant-b")
    with engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(other, "2", custom_identifier="order-7"))
    with engine.connect() as conn:
        got = repo.get_certificate_by_custom_identifier(conn, "default", "order-7")
    assert got is not None and got.serial == "1"


def test_failed_reservation_changes_nothing(engine: Engine) -> None:
    ca = _add_ca(engine)
    first = reserved_cert(ca, "77", tags={"a": "1"})
    with engine.begin() as conn:
        repo.reserve_certificate(conn, first)
    dup = reserved_cert(ca, "77", tags={"b": "2"})
    with pytest.raises(AlreadyExists), engine.begin() as conn:
        repo.reserve_certificate(conn, dup)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM certificate")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM certificate_tag")).scalar() == 1


def test_a_revocation_waits_for_a_reservation_that_read_its_ca_as_issuing(
        backend: str, engine: Engine) -> None:
    # The reservation re-reads its CA's status in its write transaction (step 6): a CA
    # revoked meanwhile is seen there, and one revoked after the read cannot commit before
    # the reservation does. On SQLite the single writer orders the two transactions; on
    # PostgreSQL (several replicas) the read locks the CA row against the revocation.
    if backend != "postgresql":
        pytest.skip("SQLite: one write transaction at a time orders them already")
    ca = _add_ca(engine)
    revoked = threading.Event()

    def revoke() -> None:
        with engine.begin() as other:
            repo.update_ca_status(other, ca.owner, ca.identifier, CaStatus.REVOKE,
                                  expected=(CaStatus.ISSUE,))
        revoked.set()

    revocation = threading.Thread(target=revoke)
    with engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "78"))
        assert repo.ca_status(conn, ca.identifier) == CaStatus.ISSUE
        revocation.start()
        assert not revoked.wait(0.5), "the revocation committed before the reservation"
    revocation.join(30)
    assert revoked.is_set()
    with engine.connect() as conn:
        assert repo.ca_status(conn, ca.identifier) == CaStatus.REVOKE


@pytest.mark.parametrize("serial", ["", "0", "01", "ABC", "xyz", "1" * 41, None])
def test_reserve_rejects_badly_encoded_serials(engine: Engine, serial: str | None) -> None:
    ca = _add_ca(engine)
    with pytest.raises(ValueError), engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, serial))  # type: ignore[arg-type]


def test_serial_hex() -> None:
    assert repo.serial_hex(0x00FF) == "ff"
    assert repo.serial_hex((1 << 159) + 1) == "8" + "0" * 38 + "1"
    for bad in (0, -1, 1 << 160):
        with pytest.raises(ValueError):
            repo.serial_hex(bad)


def test_certificate_round_trip_and_mark_issued(engine: Engine) -> None:
    ca = _add_ca(engine)
    row = reserved_cert(
        ca,
        "deadbeef",
        tags={"env": "prod"},
        resource_group_id="rg-1",
        key_token="software",
        key_id="aa",
        exportable=True,
        enable_crl=True,
    )
    with engine.begin() as conn:
        repo.reserve_certificate(conn, row)
    with engine.connect() as conn:
        assert repo.get_certificate(conn, row.owner, row.identifier) == row
    t1 = T0 + dt.timedelta(seconds=5)
    with engine.begin() as conn:
        repo.mark_issued(conn, row.identifier, b"\x30\x05cert", now=t1)
        with pytest.raises(FailedPrecondition) as e:
            repo.mark_issued(conn, row.identifier, b"\x30\x05cert", now=t1)
        assert e.value.reason == "IncorrectStatus.Certificate"
    with engine.connect() as conn:
        got = repo.get_certificate(conn, row.owner, row.identifier)
        by_serial = repo.list_certificates_by_serial(conn, row.owner, "deadbeef")
    assert got == dataclasses.replace(
        row, status="ISSUED", certificate=b"\x30\x05cert", updated_at=t1
    )
    assert by_serial == (got,)


def test_mark_failed_only_before_issue(engine: Engine) -> None:
    ca = _add_ca(engine)
    row = reserved_cert(ca, "5")
    with engine.begin() as conn:
        repo.reserve_certificate(conn, row)
        assert repo.mark_failed(conn, row.identifier, "token unavailable")
        assert not repo.mark_failed(conn, row.identifier, "again")
        got = repo.get_certificate(conn, row.owner, row.identifier)
    assert got is not None and (got.status, got.failure_reason) == ("FAILED", "token unavailable")


def test_revoke_delete_and_crl_entries(engine: Engine) -> None:
    ca = _add_ca(engine)
    rows = [reserved_cert(ca, s) for s in ("a1", "a2", "a3")]
    with engine.begin() as conn:
        for r in rows:
            repo.reserve_certificate(conn, r)
            repo.mark_issued(conn, r.identifier, b"\x30\x00")
    t = T0 + dt.timedelta(days=2)
    with engine.begin() as conn:
        assert not repo.revoke_certificate(conn, "someone-else", rows[0].identifier, 1, now=t)
        assert not repo.delete_certificate(conn, "default", rows[0].identifier)  # not revoked
        assert repo.revoke_certificate(conn, "default", rows[0].identifier, 1, now=t)
        assert not repo.revoke_certificate(conn, "default", rows[0].identifier, 1, now=t)
        assert repo.revoke_certificate(conn, "default", rows[1].identifier, 4, now=t)
        assert repo.delete_certificate(conn, "default", rows[1].identifier, now=t)
    with engine.connect() as conn:
        assert repo.get_certificate(conn, "default", rows[1].identifier) is None
        revoked = repo.list_revoked(conn, ca.identifier)
        listed = repo.list_certificates(conn, "default", status="REVOKED")
    assert {(e.serial, e.revocation_reason) for e in revoked} == {("a1", 1), ("a2", 4)}
    assert all(e.revoked_at == t for e in revoked)
    assert [r.identifier for r in listed.items] == [rows[0].identifier]


def test_revocations_are_numbered_per_ca_in_commit_order(engine: Engine) -> None:
    cas = [_add_ca(engine), _add_ca(engine)]
    rows = [reserved_cert(cas[i % 2], s) for i, s in enumerate(("a1", "a2", "a3", "a4", "a5"))]
    with engine.begin() as conn:
        for r in rows:
            repo.reserve_certificate(conn, r)
        for r in rows[:4]:
            repo.mark_issued(conn, r.identifier, b"\x30\x00")
    # Later revocations dated earlier (another replica's clock): numbered as committed.
    for i, r in enumerate((rows[2], rows[0], rows[1], rows[3])):
        with engine.begin() as conn:
            assert repo.revoke_certificate(conn, "default", r.identifier, 1,
                                           now=T0 - dt.timedelta(hours=i))
    with engine.begin() as conn:  # a leftover reservation revoked counts as well
        assert repo.revoke_reserved(conn, rows[4].identifier, "gone", now=T0)
    with engine.connect() as conn:
        since = {ca.identifier: [(e.serial, e.revocation_seq) for e in
                                 repo.list_revoked_since(conn, ca.identifier, 0)]
                 for ca in cas}
        later = repo.list_revoked_since(conn, cas[0].identifier, 1)
        counts = [repo.get_ca_any_owner(conn, ca.identifier) for ca in cas]
    assert since == {cas[0].identifier: [("a3", 1), ("a1", 2), ("a5", 3)],
                     cas[1].identifier: [("a2", 1), ("a4", 2)]}
    assert [e.serial for e in later] == ["a1", "a5"]
    assert [c.revocation_count if c else None for c in counts] == [3, 2]


def test_certificates_by_serial_one_per_issuer(engine: Engine) -> None:
    # Serials are unique per issuer only: each CA may have its own certificate "5e".
    cas = [_add_ca(engine) for _ in range(3)]
    rows = [reserved_cert(ca, "5e") for ca in cas]
    others = [reserved_cert(cas[0], "5f"), reserved_cert(_add_ca(engine, owner="other"), "5e")]
    with engine.begin() as conn:
        for r in rows + others:
            repo.reserve_certificate(conn, r)
        repo.mark_issued(conn, rows[2].identifier, b"\x30\x00")
        assert repo.revoke_certificate(conn, "default", rows[2].identifier, 1)
        assert repo.delete_certificate(conn, "default", rows[2].identifier)
    with engine.connect() as conn:
        found = repo.list_certificates_by_serial(conn, "default", "5e")
        assert {r.identifier for r in found} == {rows[0].identifier, rows[1].identifier}
        assert repo.list_certificates_by_serial(conn, "default", "5e", kinds=["CLIENT"]) == ()


def test_certificate_other_owner_not_found(engine: Engine) -> None:
    ca = _add_ca(engine)
    row = reserved_cert(ca, "99", custom_identifier="k")
    with engine.begin() as conn:
        repo.reserve_certificate(conn, row)
    with engine.connect() as conn:
        assert repo.get_certificate(conn, "intruder", row.identifier) is None
        assert repo.list_certificates_by_serial(conn, "intruder", "99") == ()
        assert repo.get_certificate_by_custom_identifier(conn, "intruder", "k") is None
        assert repo.list_certificates(conn, "intruder").total == 0


def test_list_certificates_paging_and_filters(engine: Engine) -> None:
    ca1, ca2 = _add_ca(engine), _add_ca(engine)
    made: dict[str, repo.CertificateRow] = {}
    specs = [
        # name, issuer, issued?, tags, resource group
        ("c0", ca1, True, {"env": "prod", "team": "a"}, "rg-1"),
        ("c1", ca1, True, {"env": "prod"}, "rg-2"),
        ("c2", ca1, False, {"env": "dev"}, "rg-1"),
        ("c3", ca2, True, {"env": "prod", "team": "a"}, None),
        ("c4", ca2, True, {}, "rg-1"),
        ("c5", ca1, True, {"env": "prod", "team": "b"}, "rg-1"),
    ]
    with engine.begin() as conn:
        for i, (name, issuer, issued, tags, rg) in enumerate(specs):
            row = reserved_cert(
                issuer,
                format(i + 1, "x"),
                tags=tags,
                resource_group_id=rg,
                created_at=T0 + dt.timedelta(seconds=i),
            )
            repo.reserve_certificate(conn, row)
            if issued:
                repo.mark_issued(conn, row.identifier, b"\x30\x00")
            made[name] = row
        repo.reserve_certificate(
            conn,
            reserved_cert(
                ca_row(owner="x"),
                "ff",
                owner="x",
                issuer_identifier=ca1.identifier,
                tags={"env": "prod"},
            ),
        )

    def names(page: repo.Page[repo.CertificateRow]) -> list[str]:
        by_id = {r.identifier: n for n, r in made.items()}
        return [by_id[r.identifier] for r in page.items]

    cases = [
        ({}, ["c0", "c1", "c2", "c3", "c4", "c5"]),
        ({"issuer_identifier": ca1.identifier}, ["c0", "c1", "c2", "c5"]),
        ({"status": "ISSUED"}, ["c0", "c1", "c3", "c4", "c5"]),
        ({"status": ["RESERVED"]}, ["c2"]),
        ({"tags": {"env": "prod"}}, ["c0", "c1", "c3", "c5"]),
        ({"tags": {"env": "prod", "team": "a"}}, ["c0", "c3"]),
        ({"tags": {"team": "a"}, "issuer_identifier": ca2.identifier}, ["c3"]),
        ({"resource_group_id": "rg-1"}, ["c0", "c2", "c4", "c5"]),
        ({"resource_group_id": "rg-1", "status": "ISSUED", "tags": {"env": "prod"}}, ["c0", "c5"]),
        ({"tags": {"env": "nope"}}, []),
    ]
    with engine.connect() as conn:
        for filters, expected in cases:
            page = repo.list_certificates(conn, "default", limit=100, **filters)  # type: ignore[arg-type]
            assert names(page) == expected, filters
            assert page.total == len(expected), filters
        p1 = repo.list_certificates(conn, "default", offset=0, limit=4)
        p2 = repo.list_certificates(conn, "default", offset=4, limit=4)
        p3 = repo.list_certificates(conn, "default", offset=8, limit=4)
    assert (p1.total, p2.total, p3.total) == (6, 6, 6)
    assert names(p1) + names(p2) == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert p3.items == ()


@pytest.mark.parametrize("limit", [1, 3, 7, 40])
def test_pages_found_by_key_are_the_ordered_rows(engine: Engine, limit: int) -> None:
    # Many rows share a created_at (ties broken by identifier); filtered pages, one issuer's.
    ca1, ca2 = ca_row(), ca_row()
    with engine.begin() as conn:
        repo.insert_ca(conn, ca1)
        repo.insert_ca(conn, ca2)
        for i in range(37):
            issuer = ca1 if i % 3 else ca2
            repo.reserve_certificate(conn, reserved_cert(
                issuer, format(i + 1, "x"), kind="SERVER" if i % 4 else "CLIENT",
                created_at=T0 + dt.timedelta(seconds=i // 5)))
    for filters in ({}, {"issuer_identifier": ca1.identifier}, {"kinds": ["CLIENT"]}):
        with engine.connect() as conn:
            everything = repo.list_certificates(conn, "default", limit=repo.MAX_PAGE_SIZE,
                                                **filters)  # type: ignore[arg-type]
            expected = [r.identifier for r in everything.items]
            assert expected == [r.identifier for r in sorted(
                everything.items, key=lambda r: (r.created_at, r.identifier))]
            got: list[str] = []
            for offset in range(0, len(expected) + limit, limit):
                page = repo.list_certificates(conn, "default", offset=offset, limit=limit,
                                              **filters)  # type: ignore[arg-type]
                assert page.total == len(expected)
                assert len(page.items) == max(0, min(limit, len(expected) - offset))
                got += [r.identifier for r in page.items]
        assert got == expected, filters


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0), (0, repo.MAX_PAGE_SIZE + 1)])
def test_bad_paging_arguments(engine: Engine, offset: int, limit: int) -> None:
    with pytest.raises(ValueError), engine.connect() as conn:
        repo.list_certificates(conn, "default", offset=offset, limit=limit)


# --- timestamps ---


def test_timestamps_are_aware_utc_in_and_out(engine: Engine) -> None:
    cst = dt.timezone(dt.timedelta(hours=8))
    local = dt.datetime(2026, 3, 1, 8, 0, tzinfo=cst)
    row = ca_row(not_before=local)
    with engine.begin() as conn:
        repo.insert_ca(conn, row)
        got = repo.get_ca(conn, row.owner, row.identifier)
    assert got is not None
    assert got.not_before == dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)
    assert got.not_before.tzinfo is dt.UTC


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        repo.insert_ca(conn, ca_row(created_at=dt.datetime(2026, 1, 1)))


# --- CRLs ---


def test_crl_numbers_strictly_increase_per_ca(engine: Engine) -> None:
    ca1, ca2 = _add_ca(engine), _add_ca(engine)
    with engine.begin() as conn:
        assert [repo.next_crl_number(conn, ca1.identifier) for _ in range(3)] == [1, 2, 3]
        assert repo.next_crl_number(conn, ca2.identifier) == 1
    with engine.begin() as conn:
        assert repo.next_crl_number(conn, ca1.identifier) == 4


def test_crl_store_latest_and_due(engine: Engine) -> None:
    ca1, ca2 = _add_ca(engine), _add_ca(engine)
    _add_ca(engine, enable_crl=False)
    _add_ca(engine, status="RESERVED")

    def crl(ca: repo.CaRow, number: int, next_update: dt.datetime) -> CrlRow:
        return CrlRow(ca.identifier, number, ca.owner, T0, next_update, b"crl%d" % number, T0)

    with engine.begin() as conn:
        repo.insert_crl(conn, crl(ca1, 1, T0 + dt.timedelta(days=1)))
        repo.insert_crl(conn, crl(ca1, 2, T0 + dt.timedelta(days=8)))
    with pytest.raises(AlreadyExists) as e, engine.begin() as conn:
        repo.insert_crl(conn, crl(ca1, 2, T0))
    assert e.value.reason == "AlreadyExists.CrlNumber"
    with engine.connect() as conn:
        latest = repo.get_latest_crl(conn, ca1.identifier)
        assert latest is not None and latest.crl_number == 2 and latest.der == b"crl2"
        assert repo.get_latest_crl(conn, ca2.identifier) is None
        # ca2 has no CRL yet: due. ca1's current CRL is good for 8 days.
        assert repo.list_crl_due(conn, T0 + dt.timedelta(days=2)) == (ca2.identifier,)
        assert set(repo.list_crl_due(conn, T0 + dt.timedelta(days=9))) == {
            ca1.identifier,
            ca2.identifier,
        }


def test_crl_due_when_it_may_miss_a_revocation(engine: Engine) -> None:
    # A revocation the CRL did not count (committed after it read its entries; its own
    # re-issue failed or never ran) makes the CRL due now, whatever the clocks say.
    ca = _add_ca(engine)
    earlier, later = reserved_cert(ca, "b1"), reserved_cert(ca, "b2")
    second = dt.timedelta(seconds=1)
    soon = T0 + dt.timedelta(hours=1)
    with engine.begin() as conn:
        for r in (earlier, later):
            repo.reserve_certificate(conn, r)
            repo.mark_issued(conn, r.identifier, b"\x30\x00")
        assert repo.revoke_certificate(conn, "default", earlier.identifier, 1, now=T0)
        repo.insert_crl(conn, CrlRow(ca.identifier, 1, ca.owner, T0 + second,
                                     T0 + dt.timedelta(days=7), b"crl1", T0 + second,
                                     revocation_count=1))
    with engine.connect() as conn:
        assert repo.list_crl_due(conn, soon) == ()
    with engine.begin() as conn:
        # Dated an hour before the CRL (a replica whose clock is behind): still counted.
        assert repo.revoke_certificate(conn, "default", later.identifier, 1,
                                       now=T0 - dt.timedelta(hours=1))
    with engine.connect() as conn:
        assert repo.list_crl_due(conn, soon) == (ca.identifier,)
    with engine.begin() as conn:
        repo.insert_crl(conn, CrlRow(ca.identifier, 2, ca.owner, T0 + 2 * second,
                                     T0 + dt.timedelta(days=7), b"crl2", T0 + 2 * second,
                                     revocation_count=2))
    with engine.connect() as conn:
        assert repo.list_crl_due(conn, soon) == ()


# --- KMS certificates ---


def test_kms_round_trip_scoping_update_delete(engine: Engine) -> None:
    row = kms_row(wrapped_private_key=b"wrapped")
    with engine.begin() as conn:
        repo.insert_kms_certificate(conn, row)
    with engine.connect() as conn:
        assert repo.get_kms_certificate(conn, row.owner, row.certificate_id) == row
        assert repo.get_kms_certificate(conn, "other", row.certificate_id) is None
    uploaded = dataclasses.replace(
        row,
        certificate="PEM",
        certificate_chain="CHAIN",
        issuer="CN=ca",
        serial="0a",
        not_before=T0,
        not_after=T0 + dt.timedelta(days=1),
        signature_algorithm="SHA256withECDSA",
        status="ACTIVE",
        updated_at=T0 + dt.timedelta(hours=1),
    )
    with engine.begin() as conn:
        assert repo.update_kms_certificate(conn, uploaded, expected_status=["PENDING"])
        assert not repo.update_kms_certificate(conn, uploaded, expected_status=["PENDING"])
        assert repo.get_kms_certificate(conn, row.owner, row.certificate_id) == uploaded
        assert not repo.update_kms_certificate_status(
            conn, "other", row.certificate_id, "REVOKED", expected=["ACTIVE"]
        )
        assert repo.update_kms_certificate_status(
            conn, row.owner, row.certificate_id, "REVOKED", expected=["ACTIVE", "INACTIVE"]
        )
        assert not repo.update_kms_certificate_status(
            conn, row.owner, row.certificate_id, "ACTIVE", expected=["ACTIVE", "INACTIVE"]
        )
        assert not repo.delete_kms_certificate(conn, "other", row.certificate_id)
        assert repo.delete_kms_certificate(conn, row.owner, row.certificate_id)
        assert repo.get_kms_certificate(conn, row.owner, row.certificate_id) is None


def test_kms_list_filters(engine: Engine) -> None:
    rows = [
        kms_row(
            subject="CN=a,OU=kms,O=x,C=CN",
            issuer="CN=ca1",
            status="ACTIVE",
            created_at=T0 + dt.timedelta(seconds=1),
        ),
        kms_row(
            subject="CN=b,OU=kms,O=x,C=CN",
            issuer="CN=ca1",
            status="INACTIVE",
            created_at=T0 + dt.timedelta(seconds=2),
        ),
        kms_row(
            subject="CN=a,OU=kms,O=x,C=CN",
            issuer="CN=ca2",
            status="ACTIVE",
            created_at=T0 + dt.timedelta(seconds=3),
        ),
        kms_row(
            subject="CN=a,OU=kms,O=x,C=CN",
            status="PENDING",
            created_at=T0 + dt.timedelta(seconds=4),
        ),
        kms_row(owner="other", subject="CN=a,OU=kms,O=x,C=CN", issuer="CN=ca1", status="ACTIVE"),
    ]
    with engine.begin() as conn:
        for r in rows:
            repo.insert_kms_certificate(conn, r)
    cases = [
        ({}, [0, 1, 2, 3]),
        ({"subject": "CN=a,OU=kms,O=x,C=CN"}, [0, 2, 3]),
        ({"issuer": "CN=ca1"}, [0, 1]),
        ({"status": "ACTIVE"}, [0, 2]),
        ({"status": "ACTIVE", "issuer": "CN=ca1", "subject": "CN=a,OU=kms,O=x,C=CN"}, [0]),
    ]
    with engine.connect() as conn:
        for filters, expected in cases:
            page = repo.list_kms_certificates(conn, "default", limit=50, **filters)  # type: ignore[arg-type]
            assert [r.certificate_id for r in page.items] == [
                rows[i].certificate_id for i in expected
            ], filters
            assert page.total == len(expected)
        page = repo.list_kms_certificates(conn, "default", offset=3, limit=2)
    assert page.total == 4 and [r.certificate_id for r in page.items] == [rows[3].certificate_id]
