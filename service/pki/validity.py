"""Certificate validity periods from API parameters (RFC 5280 4.1.2.5).

All times are UTC with whole seconds: RFC 5280 4.1.2.5.1/4.1.2.5.2 encode validity without
fractional seconds, so ``now`` is truncated before use. Nothing here reads the clock.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.errors import InvalidArgument, quote

REASON_VALIDITY = "InvalidParameter.Validity"

# The latest time a GeneralizedTime can hold (RFC 5280 4.1.2.5.2, four-digit year).
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the API's 2006-01-02T15:04:05Z
_ABSOLUTE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_RELATIVE = re.compile(r"([0-9]{1,6})([ymd])\Z")


def _fail(message: str, reason: str = REASON_VALIDITY) -> InvalidArgument:
    return InvalidArgument(message, reason=reason)


def format_time(t: datetime) -> str:
    """Render a UTC time in the API's format (2006-01-02T15:04:05Z)."""
    return t.astimezone(UTC).strftime(_TIME_FORMAT)


def _utc_seconds(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() != timedelta(0):
        raise ValueError("now must be a timezone-aware UTC datetime")
    return now.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Validity:
    """A certificate's notBefore/notAfter: aware UTC, whole seconds, not_before < not_after."""

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        """Refuse naive, non-UTC or fractional times and empty or inverted periods."""
        for label, t in (("not_before", self.not_before), ("not_after", self.not_after)):
            if t.tzinfo is None or t.utcoffset() != timedelta(0):
                raise ValueError(f"Validity.{label} must be timezone-aware UTC, got {t!r}")
            if t.microsecond:
                raise ValueError(f"Validity.{label} must be whole seconds, got {t!r}")
        if self.not_after <= self.not_before:
            raise _fail(
                f"the end of the validity period ({format_time(self.not_after)}) must be after "
                f"its start ({format_time(self.not_before)})"
            )
        if self.not_after > MAX_TIME:
            raise _fail(f"the validity period ends after {format_time(MAX_TIME)}")


def add_calendar(start: datetime, *, years: int = 0, months: int = 0, days: int = 0) -> datetime:
    """Add years and months on the calendar (clamped to the month's end), then days."""
    total = start.year * 12 + (start.month - 1) + years * 12 + months
    year, month0 = divmod(total, 12)
    if not 1 <= year <= 9999:
        raise _fail(f"the validity period ends after {format_time(MAX_TIME)}")
    day = min(start.day, calendar.monthrange(year, month0 + 1)[1])  # 31 Jan + 1m = 28/29 Feb
    try:
        return start.replace(year=year, month=month0 + 1, day=day) + timedelta(days=days)
    except OverflowError:
        raise _fail(f"the validity period ends after {format_time(MAX_TIME)}") from None


def _parse_time(text: str, what: str) -> datetime:
    if not _ABSOLUTE.match(text):
        raise _fail(f"{what} {quote(text)} is not a time of the form 2006-01-02T15:04:05Z (UTC)")
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _fail(f"{what} {quote(text)} is not a valid calendar date and time") from None


def _ends_in_future(not_after: datetime, now: datetime) -> None:
    if not_after <= now:
        raise _fail(
            f"the validity period ends at {format_time(not_after)}, which is not after the "
            f"current time {format_time(now)}"
        )


def parse_validity(spec: str, now: datetime) -> Validity:
    """Parse CreateCustomCertificate ``Validity``: 1y/3m/7d, $NotAfter or $NotBefore/$NotAfter."""
    now = _utc_seconds(now)
    text = spec.strip()
    if text == "":
        raise _fail("validity is required: e.g. 1y, 3m, 7d, or 2006-01-02T15:04:05Z")
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        if amount == 0:
            raise _fail(f"validity {quote(spec)} is zero; use a positive number such as 1{unit}")
        kwargs = {"y": "years", "m": "months", "d": "days"}[unit]
        return Validity(now, add_calendar(now, **{kwargs: amount}))
    if "/" in text:
        first, _, second = text.partition("/")
        not_before = _parse_time(first, "NotBefore")
        not_after = _parse_time(second, "NotAfter")
        if not_after <= not_before:
            raise _fail(
                f"NotAfter {quote(second)} must be later than NotBefore {quote(first)} in "
                f"validity {quote(spec)}"
            )
        _ends_in_future(not_after, now)
        return Validity(not_before, not_after)
    if _ABSOLUTE.match(text):
        not_after = _parse_time(text, "NotAfter")
        _ends_in_future(not_after, now)
        return Validity(now, not_after)
    raise _fail(
        f"validity {quote(spec)} is not understood: use a relative period (one positive number and "
        "a unit y, m or d, such as 1y, 3m, 7d) or absolute UTC times $NotAfter or "
        "$NotBefore/$NotAfter in the form 2006-01-02T15:04:05Z"
    )


def _unix_time(value: int, name: str) -> datetime:
    if value < 0:
        raise _fail(f"{name} {value} is negative; it is a Unix time in seconds")
    try:
        t = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _fail(f"{name} {value} is out of range for a Unix time in seconds") from None
    if t > MAX_TIME:
        raise _fail(f"{name} {value} is after {format_time(MAX_TIME)}")
    return t


def resolve_validity(
    *,
    years: int | None,
    months: int | None,
    days: int | None,
    before_time: int | None,
    after_time: int | None,
    now: datetime,
) -> Validity:
    """Apply the Years/Months/Days/BeforeTime/AfterTime rules of CreateServer/ClientCertificate.

    None and 0 both mean "not set" (proto3 scalars). Years and months add to days; a set
    period starts at ``now`` and wins over BeforeTime/AfterTime ("if you set Days, BeforeTime
    and AfterTime, the validity period is determined by Days"); otherwise both times are used.
    """
    now = _utc_seconds(now)
    y, m, d = years or 0, months or 0, days or 0
    for name, value in (("years", y), ("months", m), ("days", d)):
        if value < 0:
            raise _fail(f"{name} is {value}; it must not be negative")
    before = before_time or 0
    after = after_time or 0
    # "BeforeTime and AfterTime must be either both empty or both specified."
    if bool(before) != bool(after):
        given, missing = ("before_time", "after_time") if before else ("after_time", "before_time")
        raise _fail(f"{given} is set but {missing} is not; set both or neither")
    # "Days, BeforeTime, and AfterTime cannot all be empty."
    if y == 0 and m == 0 and d == 0 and not before:
        raise _fail(
            "days, before_time and after_time cannot all be empty: set days (optionally with "
            "years/months) or both before_time and after_time"
        )
    if y or m or d:
        return Validity(now, add_calendar(now, years=y, months=m, days=d))
    not_before = _unix_time(before, "before_time")
    not_after = _unix_time(after, "after_time")
    if not_after <= not_before:
        raise _fail(
            f"after_time {after} ({format_time(not_after)}) must be later than before_time "
            f"{before} ({format_time(not_before)})"
        )
    _ends_in_future(not_after, now)
    return Validity(not_before, not_after)


def check_within_issuer(
    validity: Validity, issuer_not_before: datetime, issuer_not_after: datetime
) -> None:
    """Refuse a validity not inside the issuing CA's own period; never clamp silently."""
    if validity.not_after > issuer_not_after:
        raise _fail(
            f"the certificate would expire at {format_time(validity.not_after)}, after the "
            f"issuing CA's notAfter {format_time(issuer_not_after)}; choose a validity ending "
            "on or before the CA's"
        )
    if validity.not_before < issuer_not_before:
        raise _fail(
            f"the certificate would start at {format_time(validity.not_before)}, before the "
            f"issuing CA's notBefore {format_time(issuer_not_before)}"
        )
