"""Validity rules of CreateCustomCertificate and CreateServer/ClientCertificate, fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.errors import InvalidArgument
from service.pki.validity import (
    Validity,
    add_calendar,
    check_within_issuer,
    parse_validity,
    resolve_validity,
)

# Half a second past the minute: every result must drop the fraction (whole seconds).
NOW = datetime(2025, 1, 31, 12, 0, 0, 500_000, tzinfo=UTC)
NOW_S = NOW.replace(microsecond=0)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def unix(t: datetime) -> int:
    return int(t.timestamp())


# --- parse_validity (CreateCustomCertificate) --------------------------------------------

GOOD_SPECS = [
    ("1y", NOW_S, utc(2026, 1, 31, 12, 0, 0)),
    ("3m", NOW_S, utc(2025, 4, 30, 12, 0, 0)),  # 31 Jan + 3 months clamps to 30 Apr
    ("1m", NOW_S, utc(2025, 2, 28, 12, 0, 0)),  # clamps to the end of February
    ("13m", NOW_S, utc(2026, 2, 28, 12, 0, 0)),
    ("7d", NOW_S, utc(2025, 2, 7, 12, 0, 0)),
    ("365d", NOW_S, utc(2026, 1, 31, 12, 0, 0)),
    (" 7d ", NOW_S, utc(2025, 2, 7, 12, 0, 0)),
    ("2026-03-09T17:48:13Z", NOW_S, utc(2026, 3, 9, 17, 48, 13)),
    (
        "2006-01-02T15:04:05Z/2026-03-09T17:48:13Z",
        utc(2006, 1, 2, 15, 4, 5),
        utc(2026, 3, 9, 17, 48, 13),
    ),
    ("2025-02-01T00:00:00Z/2025-03-01T00:00:00Z", utc(2025, 2, 1), utc(2025, 3, 1)),
]


@pytest.mark.parametrize(("spec", "not_before", "not_after"), GOOD_SPECS)
def test_parse_validity(spec: str, not_before: datetime, not_after: datetime) -> None:
    assert parse_validity(spec, NOW) == Validity(not_before, not_after)


def test_leap_day_plus_one_year() -> None:
    v = parse_validity("1y", utc(2024, 2, 29, 8, 0, 0))
    assert v.not_after == utc(2025, 2, 28, 8, 0, 0)


BAD_SPECS = [
    ("", "validity is required"),
    ("0d", "is zero"),
    ("0y", "is zero"),
    ("-1d", "not understood"),
    ("1w", "not understood"),
    ("1Y", "not understood"),
    ("1y2m", "not understood"),
    ("d", "not understood"),
    ("1.5y", "not understood"),
    ("garbage", "not understood"),
    ("9999999y", "not understood"),
    ("9999y", "ends after 9999-12-31T23:59:59Z"),
    ("2026-03-09 17:48:13", "not understood"),
    ("2026-03-09T17:48:13+08:00", "not understood"),
    ("2026-02-30T00:00:00Z", "not a valid calendar date"),
    ("2026-03-09T25:00:00Z", "not a valid calendar date"),
    ("2024-01-01T00:00:00Z", "not after the current time 2025-01-31T12:00:00Z"),
    ("2025-01-31T12:00:00Z", "not after the current time"),
    ("2026-01-01T00:00:00Z/2025-06-01T00:00:00Z", "must be later than NotBefore"),
    ("2026-01-01T00:00:00Z/2026-01-01T00:00:00Z", "must be later than NotBefore"),
    ("2020-01-01T00:00:00Z/2021-01-01T00:00:00Z", "not after the current time"),
    ("2026-01-01T00:00:00Z/", "NotAfter '' is not a time"),
    ("/2026-01-01T00:00:00Z", "NotBefore '' is not a time"),
    ("2026-01-01/2027-01-01", "is not a time of the form 2006-01-02T15:04:05Z"),
    ("$2026-01-01T00:00:00Z", "not understood"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_parse_validity_refused(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_validity(spec, NOW)
    assert e.value.reason == "InvalidParameter.Validity"
    assert message in e.value.message


def test_now_must_be_aware_utc() -> None:
    with pytest.raises(ValueError):
        parse_validity("1y", datetime(2025, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError):
        parse_validity("1y", datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=8))))


# --- resolve_validity (CreateServerCertificate[WithCsr], CreateClientCertificate[WithCsr]) -

BEFORE = unix(utc(2025, 2, 1))
AFTER = unix(utc(2026, 2, 1))

GOOD_RESOLVE = [
    # Days alone: from now.
    ("days", dict(days=365), NOW_S, utc(2026, 1, 31, 12, 0, 0)),
    # BeforeTime + AfterTime without Days: exactly those times.
    ("times", dict(before_time=BEFORE, after_time=AFTER), utc(2025, 2, 1), utc(2026, 2, 1)),
    (
        "times-backdated",
        dict(before_time=unix(utc(2025, 1, 1)), after_time=AFTER),
        utc(2025, 1, 1),
        utc(2026, 2, 1),
    ),
    # Days, BeforeTime and AfterTime all set: Days decides.
    (
        "days-wins",
        dict(days=30, before_time=BEFORE, after_time=AFTER),
        NOW_S,
        utc(2025, 3, 2, 12, 0, 0),
    ),
    # Years and months add to days.
    ("years", dict(years=1), NOW_S, utc(2026, 1, 31, 12, 0, 0)),
    ("months", dict(months=1), NOW_S, utc(2025, 2, 28, 12, 0, 0)),
    ("years-months-days", dict(years=1, months=1, days=1), NOW_S, utc(2026, 3, 1, 12, 0, 0)),
    ("months-12", dict(months=12, days=0), NOW_S, utc(2026, 1, 31, 12, 0, 0)),
    (
        "years-wins-over-times",
        dict(years=2, before_time=BEFORE, after_time=AFTER),
        NOW_S,
        utc(2027, 1, 31, 12, 0, 0),
    ),
    # None and 0 are both "not set".
    (
        "zeros-are-unset",
        dict(years=0, months=0, days=0, before_time=BEFORE, after_time=AFTER),
        utc(2025, 2, 1),
        utc(2026, 2, 1),
    ),
]


@pytest.mark.parametrize(
    ("case", "params", "not_before", "not_after"), GOOD_RESOLVE, ids=[c[0] for c in GOOD_RESOLVE]
)
def test_resolve_validity(
    case: str, params: dict[str, int], not_before: datetime, not_after: datetime
) -> None:
    args: dict[str, int | None] = dict.fromkeys(
        ("years", "months", "days", "before_time", "after_time"), None
    )
    args.update(params)
    assert resolve_validity(**args, now=NOW) == Validity(not_before, not_after)


BAD_RESOLVE = [
    ("all-empty", {}, "days, before_time and after_time cannot all be empty"),
    (
        "all-zero",
        dict(years=0, months=0, days=0, before_time=0, after_time=0),
        "cannot all be empty",
    ),
    ("before-only", dict(before_time=BEFORE), "before_time is set but after_time is not"),
    ("after-only", dict(after_time=AFTER), "after_time is set but before_time is not"),
    # The pairing rule holds even when Days decides.
    (
        "days-with-before-only",
        dict(days=10, before_time=BEFORE),
        "before_time is set but after_time is not",
    ),
    (
        "after-not-later",
        dict(before_time=AFTER, after_time=BEFORE),
        "must be later than before_time",
    ),
    ("after-equal", dict(before_time=BEFORE, after_time=BEFORE), "must be later"),
    (
        "after-in-past",
        dict(before_time=unix(utc(2020, 1, 1)), after_time=unix(utc(2021, 1, 1))),
        "not after the current time",
    ),
    ("negative-days", dict(days=-1), "days is -1; it must not be negative"),
    ("negative-years", dict(years=-1, days=10), "years is -1"),
    ("negative-months", dict(months=-2), "months is -2"),
    ("negative-time", dict(before_time=-5, after_time=AFTER), "before_time -5 is negative"),
    ("huge-time", dict(before_time=BEFORE, after_time=10**15), "after_time 1000000000000000"),
    ("huge-years", dict(years=10000), "ends after 9999-12-31T23:59:59Z"),
    ("huge-days", dict(days=10**9), "ends after 9999-12-31T23:59:59Z"),
]


@pytest.mark.parametrize(
    ("case", "params", "message"), BAD_RESOLVE, ids=[c[0] for c in BAD_RESOLVE]
)
def test_resolve_validity_refused(case: str, params: dict[str, int], message: str) -> None:
    args: dict[str, int | None] = dict.fromkeys(
        ("years", "months", "days", "before_time", "after_time"), None
    )
    args.update(params)
    with pytest.raises(InvalidArgument) as e:
        resolve_validity(**args, now=NOW)
    assert e.value.reason == "InvalidParameter.Validity"
    assert message in e.value.message


# --- check_within_issuer -----------------------------------------------------------------

CA_NB, CA_NA = utc(2024, 1, 1), utc(2027, 1, 1)


def test_within_issuer_ok() -> None:
    check_within_issuer(Validity(utc(2025, 1, 1), utc(2027, 1, 1)), CA_NB, CA_NA)
    check_within_issuer(Validity(CA_NB, utc(2025, 1, 1)), CA_NB, CA_NA)


def test_beyond_issuer_not_after_refused_not_clamped() -> None:
    v = resolve_validity(
        years=5, months=None, days=None, before_time=None, after_time=None, now=NOW
    )
    with pytest.raises(InvalidArgument) as e:
        check_within_issuer(v, CA_NB, CA_NA)
    assert e.value.reason == "InvalidParameter.Validity"
    assert "issuing CA's notAfter 2027-01-01T00:00:00Z" in e.value.message
    assert "2030-01-31T12:00:00Z" in e.value.message


def test_before_issuer_not_before_refused() -> None:
    with pytest.raises(InvalidArgument, match="before the issuing CA's notBefore"):
        check_within_issuer(Validity(utc(2023, 1, 1), utc(2025, 6, 1)), CA_NB, CA_NA)


# --- Validity value type -----------------------------------------------------------------


def test_validity_constructor_checks() -> None:
    with pytest.raises(InvalidArgument, match="must be after its start"):
        Validity(utc(2026, 1, 1), utc(2025, 1, 1))
    with pytest.raises(ValueError, match="whole seconds"):
        Validity(NOW, NOW + timedelta(days=1))
    with pytest.raises(ValueError, match="UTC"):
        Validity(datetime(2025, 1, 1), utc(2026, 1, 1))  # noqa: DTZ001


def test_add_calendar() -> None:
    assert add_calendar(utc(2025, 1, 31), months=1) == utc(2025, 2, 28)
    assert add_calendar(utc(2024, 1, 31), months=1) == utc(2024, 2, 29)
    assert add_calendar(utc(2025, 12, 15), months=1) == utc(2026, 1, 15)
    assert add_calendar(utc(2025, 3, 31), months=-1) == utc(2025, 2, 28)
    assert add_calendar(utc(2025, 1, 31), months=1, days=1) == utc(2025, 3, 1)
