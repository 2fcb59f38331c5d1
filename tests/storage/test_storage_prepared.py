"""Prepared statements (service/storage/prepared.py) store what SQLAlchemy's path stores.

The issuance hot path (reserve_certificate, mark_issued, ca_status) runs its SQL on the
DBAPI cursor; these tests hold it to conn.execute's results: the same stored values, the
same exceptions (IntegrityError -> AlreadyExists with its reason), the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, create_engine, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, InvalidRequestError, StatementError
from storage_factories import T0, ca_row, new_id, pending_job, reserved_cert

from service.errors import AlreadyExists
from service.storage import repo
from service.storage.db import migrate
from service.storage.prepared import Prepared
from service.storage.schema import UtcDateTime, _sqlite_utc_text
from service.storage.schema import certificate as cert_t
from service.storage.schema import certificate_tag as tag_t

CST = dt.timezone(dt.timedelta(hours=8))


def _add_ca(engine: Engine, **kw: Any) -> repo.CaRow:
    row = ca_row(**kw)
    with engine.begin() as conn:
        repo.insert_ca(conn, row)
    return row


def _stored(engine: Engine, identifier: str) -> dict[str, Any]:
    """The certificate row as the database holds it (no SQLAlchemy type conversion)."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT * FROM certificate WHERE identifier = :i"), {"i": identifier}).mappings().one()
        tags = conn.execute(text(
            "SELECT tag_key, tag_value FROM certificate_tag WHERE certificate_identifier = :i "
            "ORDER BY tag_key"), {"i": identifier}).all()
    out = dict(row)
    out["_tags"] = [tuple(t) for t in tags]
    return out


def _sqlalchemy_insert(engine: Engine, row: repo.CertificateRow) -> None:
    """The reference: the same row through conn.execute."""
    with engine.begin() as conn:
        conn.execute(insert(cert_t), repo._cert_values(row))  # noqa: SLF001
        if row.tags:
            conn.execute(insert(tag_t), [
                {"certificate_identifier": row.identifier, "tag_key": k, "tag_value": v}
                for k, v in row.tags.items()])


_ROWS = {
    "reserved": lambda ca: reserved_cert(
        ca, "1",
        # Non-UTC aware times, microseconds, a timestamp without them.
        created_at=dt.datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=CST),
        updated_at=T0,
        not_before=dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.UTC),
        not_after=dt.datetime(2027, 1, 1, 0, 0, 0, 999999, tzinfo=dt.UTC),
        sans=(("dNSName", "a.example"), ("iPAddress", "192.0.2.1"), ("rfc822Name", "é@x")),
        tags={"env": "prod", "team": "pki"},
        key_token="software", key_id="aa", exportable=False, enable_crl=True,
        resource_group_id="rg-1", custom_identifier="order-1"),
    "pending": lambda ca: pending_job(
        ca, request={"common_name": "alice", "days": 30, "nested": {"a": [1, None, True]}},
        lease_owner="w1", lease_expires_at=dt.datetime(2026, 1, 1, 12, 0, 1, tzinfo=dt.UTC),
        attempts=3),
    "nones": lambda ca: reserved_cert(ca, "2", common_name=None, subject_der=None, sans=(),
                                      not_before=None, not_after=None, tags={}),
}


@pytest.mark.parametrize("kind", sorted(_ROWS))
def test_fast_insert_stores_what_sqlalchemy_stores(engine: Engine, kind: str) -> None:
    ca = _add_ca(engine)
    fast = _ROWS[kind](ca)
    reference = dataclasses.replace(fast, identifier=new_id(), serial=(
        None if fast.serial is None else fast.serial + "0"), custom_identifier=None)
    fast = dataclasses.replace(fast, custom_identifier=None)
    with engine.begin() as conn:
        if fast.status == "PENDING":
            repo.insert_pending(conn, fast)
        else:
            repo.reserve_certificate(conn, fast)
    _sqlalchemy_insert(engine, reference)
    got, want = _stored(engine, fast.identifier), _stored(engine, reference.identifier)
    for key in ("identifier", "serial"):
        got.pop(key), want.pop(key)
    assert got == want
    # And reads back as the row it was (times in UTC).
    with engine.connect() as conn:
        assert repo.get_certificate(conn, fast.owner, fast.identifier) == dataclasses.replace(
            fast, created_at=fast.created_at.astimezone(dt.UTC))


@pytest.mark.sqlite_only(reason="checks SQLite's own text encodings of the values")
def test_stored_text_is_what_sqlite_sees(engine: Engine) -> None:
    # Not only equal to the reference: the expected encodings themselves.
    ca = _add_ca(engine)
    row = _ROWS["reserved"](ca)
    with engine.begin() as conn:
        repo.reserve_certificate(conn, row)
    stored = _stored(engine, row.identifier)
    assert stored["created_at"] == "2026-03-01 00:00:00.123456"
    assert stored["not_after"] == "2027-01-01 00:00:00.999999"
    assert stored["updated_at"] == "2026-01-01 12:00:00.000000"
    assert stored["sans"] == ('[{"type": "dNSName", "value": "a.example"}, {"type": "iPAddress",'
                              ' "value": "192.0.2.1"}, {"type": "rfc822Name", "value": '
                              '"\\u00e9@x"}]')
    assert stored["tags"] == '{"env": "prod", "team": "pki"}'
    assert stored["request"] == "null"  # JSON null, as SQLAlchemy stores None in JSON
    assert (stored["exportable"], stored["enable_crl"], stored["asynchronous"]) == (0, 1, 0)
    assert stored["tbs"] == row.tbs and stored["lease_expires_at"] is None
    assert stored["_tags"] == [("env", "prod"), ("team", "pki")]


def test_mark_issued_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    ca = _add_ca(engine)
    a, b = reserved_cert(ca, "a1", lease_owner="w"), reserved_cert(ca, "b1", lease_owner="w")
    with engine.begin() as conn:
        repo.reserve_certificate(conn, a)
        repo.reserve_certificate(conn, b)
    when = dt.datetime(2026, 2, 2, 10, 0, 0, 5, tzinfo=CST)
    with engine.begin() as conn:
        repo.mark_issued(conn, a.identifier, b"\x30\x03der", now=when)
        conn.execute(
            update(cert_t).where(cert_t.c.identifier == b.identifier,
                                 cert_t.c.status == "RESERVED")
            .values(certificate=b"\x30\x03der", status="ISSUED", lease_owner=None,
                    lease_expires_at=None, updated_at=when))
    got, want = _stored(engine, a.identifier), _stored(engine, b.identifier)
    for key in ("identifier", "serial"):
        got.pop(key), want.pop(key)
    assert got == want
    # SQLite stores the UTC text; PostgreSQL a timestamptz the driver reads back in UTC.
    assert got["status"] == "ISSUED" and got["updated_at"] in (
        "2026-02-02 02:00:00.000005", dt.datetime(2026, 2, 2, 2, 0, 0, 5, tzinfo=dt.UTC))


def test_integrity_errors_map_to_already_exists_through_the_fast_path(engine: Engine) -> None:
    ca = _add_ca(engine)
    with engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "5", custom_identifier="k"))
    with pytest.raises(AlreadyExists) as serial, engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "5"))
    with pytest.raises(AlreadyExists) as custom, engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "6", custom_identifier="k"))
    assert serial.value.reason == "AlreadyExists.SerialNumber"
    assert custom.value.reason == "AlreadyExists.CustomIdentifier"
    # Wrapped as conn.execute would wrap it: SQLAlchemy's IntegrityError around the driver's.
    cause = serial.value.__cause__
    assert isinstance(cause, IntegrityError)
    assert isinstance(cause.orig, engine.dialect.loaded_dbapi.IntegrityError)
    # A violation that is not a known unique constraint stays an IntegrityError.
    with pytest.raises(IntegrityError, match="(?i)FOREIGN KEY"), engine.begin() as conn:
        repo.reserve_certificate(conn, dataclasses.replace(
            reserved_cert(ca, "7"), issuer_identifier=new_id()))


def test_bind_processor_errors_are_statement_errors(engine: Engine) -> None:
    ca = _add_ca(engine)
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        repo.reserve_certificate(conn, reserved_cert(ca, "8", not_before=dt.datetime(2026, 1, 1)))
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        repo.mark_issued(conn, new_id(), b"x", now=dt.datetime(2026, 1, 1))


def test_fast_statements_share_the_connection_transaction(engine: Engine) -> None:
    ca = _add_ca(engine)
    row = reserved_cert(ca, "9")
    with pytest.raises(RuntimeError), engine.begin() as conn:
        repo.reserve_certificate(conn, row)
        # Visible to SQLAlchemy statements in the same transaction...
        assert conn.execute(select(cert_t.c.serial).where(
            cert_t.c.identifier == row.identifier)).scalar_one() == "9"
        raise RuntimeError("roll back")
    # ...and rolled back with it.
    with engine.connect() as conn:
        assert repo.get_certificate(conn, row.owner, row.identifier) is None
    # A Connection not in a transaction begins one (autobegin), committed by conn.commit().
    with engine.connect() as conn:
        assert not conn.in_transaction()
        repo.reserve_certificate(conn, row)
        assert conn.in_transaction()
        conn.commit()
    with engine.connect() as conn:
        assert repo.get_certificate(conn, row.owner, row.identifier) == row


def test_ca_status(engine: Engine) -> None:
    ca = _add_ca(engine, status="REVOKE")
    with engine.connect() as conn:
        assert repo.ca_status(conn, ca.identifier) == "REVOKE"
        assert repo.ca_status(conn, new_id()) is None


def test_first_applies_result_processors(engine: Engine) -> None:
    ca = _add_ca(engine)
    row = reserved_cert(ca, "c", created_at=dt.datetime(2026, 3, 1, 8, 0, tzinfo=CST))
    with engine.begin() as conn:
        repo.reserve_certificate(conn, row)
    query = Prepared(select(cert_t.c.created_at, cert_t.c.sans, cert_t.c.tbs).where(
        cert_t.c.identifier == bindparam("i")))
    with engine.connect() as conn:
        got = query.first(conn, {"i": row.identifier})
        assert query.first(conn, {"i": new_id()}) is None
        assert query.scalar(conn, {"i": new_id()}) is None
    assert got == (dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC),
                   [{"type": t, "value": v} for t, v in row.sans], row.tbs)
    assert got[0].tzinfo is dt.UTC


def test_missing_parameters_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError) as e, engine.begin() as conn:
        repo._MARK_ISSUED.execute(conn, {"b_identifier": "x"})  # noqa: SLF001
    assert isinstance(e.value.orig, InvalidRequestError)
    assert "b_certificate" in str(e.value)


def test_named_paramstyle(tmp_path: Any) -> None:
    # A driver taking named parameters gets a dict under the compiled names.
    url = f"sqlite:///{tmp_path / 'named.db'}"
    migrate(url)
    engine = create_engine(url, paramstyle="named")
    try:
        ca = _add_ca(engine)
        plan = repo._INSERT_CERTIFICATE.plan(engine.dialect)  # noqa: SLF001
        assert not plan.positional and ":identifier" in plan.sql
        row = _ROWS["reserved"](ca)
        with engine.begin() as conn:
            repo.reserve_certificate(conn, row)
            repo.mark_issued(conn, row.identifier, b"der", now=T0)
            assert repo.ca_status(conn, ca.identifier) == "ISSUE"
        with engine.connect() as conn:
            got = repo.get_certificate(conn, row.owner, row.identifier)
        assert got == dataclasses.replace(
            row, created_at=row.created_at.astimezone(dt.UTC), status="ISSUED",
            certificate=b"der")
    finally:
        engine.dispose()


def test_postgresql_plans_use_its_paramstyle() -> None:
    # PostgreSQL is not run in tests; its plans must still be right (psycopg2: pyformat).
    dialect = postgresql.psycopg2.dialect()  # type: ignore[no-untyped-call]
    plan = repo._MARK_ISSUED.plan(dialect)  # noqa: SLF001
    when = dt.datetime(2026, 1, 1, 8, tzinfo=CST)
    args = plan.args({"b_identifier": "i", "b_certificate": b"c", "b_updated_at": when})
    assert isinstance(args, dict)
    for name in args:
        assert f"%({name})s" in plan.sql
    assert args["status"] == "ISSUED" and args["status_1"] == "RESERVED"
    assert args["b_updated_at"] == when and args["b_updated_at"].tzinfo is dt.UTC
    insert_plan = repo._INSERT_CERTIFICATE.plan(dialect)  # noqa: SLF001
    assert set(insert_plan.names) == {c.name for c in cert_t.columns}


def test_prepared_refuses_expanding_parameters() -> None:
    stmt = select(cert_t.c.identifier).where(cert_t.c.status.in_(["A", "B"]))
    with pytest.raises(ValueError, match="expanding"):
        Prepared(stmt).plan(create_engine("sqlite://").dialect)


def test_utc_datetime_fast_processor_matches_sqlalchemy() -> None:
    dialect = create_engine("sqlite://").dialect
    impl = UtcDateTime().dialect_impl(dialect)  # what statements use on this dialect
    fast = impl.bind_processor(dialect)
    assert fast is _sqlite_utc_text
    standard = super(UtcDateTime, impl).bind_processor(dialect)  # type: ignore[arg-type]
    assert standard is not None and standard is not fast
    values = [None, T0, dt.datetime(1, 1, 1, tzinfo=dt.UTC),
              dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
              dt.datetime(2026, 7, 1, 0, 0, 0, 1, tzinfo=CST),
              dt.datetime(2026, 7, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30)))]
    for value in values:
        assert fast(value) == standard(value)
    for processor in (fast, standard):
        with pytest.raises(ValueError, match="naive datetime"):
            processor(dt.datetime(2026, 1, 1))
    # Other dialects keep SQLAlchemy's processor.
    pg = postgresql.psycopg2.dialect()  # type: ignore[no-untyped-call]
    assert UtcDateTime().dialect_impl(pg).bind_processor(pg) is not _sqlite_utc_text

