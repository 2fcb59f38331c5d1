"""The project's one error family.

Domain code raises these; exactly one gRPC interceptor (service/rpc/interceptor.py) maps
them to a gRPC status code plus a google.rpc.ErrorInfo whose ``reason`` is the
machine-readable reason in the API's own style (``InvalidParameter.Csr``,
``NotFound.ParentIdentifier``, ``Forbidden.KeyNotExportable``, ...). Domain code never
imports grpc: the status is named by :class:`Status`, which the interceptor translates.
Match on types and ``reason``, never on message text.
"""

from __future__ import annotations

import enum

#: Longest prefix of a caller's value that an error message quotes (see :func:`quote`).
QUOTE_CHARS = 64
#: Longest message (UTF-8 octets) an error carries. gRPC sends the message twice in the
#: trailing metadata (grpc-message, where each non-ASCII octet takes three characters, and
#: base64 inside grpc-status-details-bin), and a client may refuse metadata over its 8 KiB
#: soft limit: a longer message would turn the real status into RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES = 1024


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A caller's value for an error message: escaped (ASCII ``repr``), at most ``limit`` long.

    Messages never echo unbounded input; a longer value is shown as its first ``limit``
    characters and its length.
    """
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{ascii(value[:limit])}... ({len(value)} characters)"
    return ascii(value)


def _bounded(message: str) -> str:
    """``message`` cut to MAX_MESSAGE_BYTES octets of UTF-8 (a safety net behind quote)."""
    raw = message.encode("utf-8", errors="backslashreplace")
    if len(raw) <= MAX_MESSAGE_BYTES:
        return message
    head = raw[: MAX_MESSAGE_BYTES - 64].decode("utf-8", errors="ignore")
    return f"{head}... (message cut; {len(message)} characters)"


class Status(enum.Enum):
    """The gRPC status an error maps to (names follow grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"


class HsmcaError(Exception):
    """Base of every error a client may see; carries status, reason and a safe message."""

    status: Status = Status.INTERNAL
    default_reason: str = "InternalError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        message = _bounded(message)
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class InvalidArgument(HsmcaError):
    """The request is malformed or violates a documented rule (reason: InvalidParameter.X)."""

    status = Status.INVALID_ARGUMENT
    default_reason = "InvalidParameter"


class NotFound(HsmcaError):
    """A referenced resource does not exist for this owner (reason: NotFound.X)."""

    status = Status.NOT_FOUND
    default_reason = "NotFound"


class AlreadyExists(HsmcaError):
    """A unique name, serial or idempotency key is already taken (reason: AlreadyExists.X)."""

    status = Status.ALREADY_EXISTS
    default_reason = "AlreadyExists"


class FailedPrecondition(HsmcaError):
    """The resource is in a state that forbids the call (reason: IncorrectStatus.X, ...)."""

    status = Status.FAILED_PRECONDITION
    default_reason = "FailedPrecondition"


class PermissionDenied(HsmcaError):
    """The call is refused by policy, e.g. exporting a non-exportable key (Forbidden.X)."""

    status = Status.PERMISSION_DENIED
    default_reason = "Forbidden"


class ResourceExhausted(HsmcaError):
    """A quota or size limit is exceeded (reason: LimitExceeded.X).

    A rate limit sets ``retry_after`` (seconds) and names the quota (``quota_subject``,
    e.g. ``principal:admin``); the interceptor sends them as google.rpc.RetryInfo and
    google.rpc.QuotaFailure.
    """

    status = Status.RESOURCE_EXHAUSTED
    default_reason = "LimitExceeded"

    def __init__(self, message: str, *, reason: str | None = None,
                 retry_after: float | None = None, quota_subject: str = "") -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after
        self.quota_subject = quota_subject


class Unauthenticated(HsmcaError):
    """The caller's credentials are not acceptable (revoked or expired client certificate)."""

    status = Status.UNAUTHENTICATED
    default_reason = "Unauthenticated"


class Unavailable(HsmcaError):
    """A dependency (the token, the database) cannot be reached now; retrying may help."""

    status = Status.UNAVAILABLE
    default_reason = "ServiceUnavailable"


class Internal(HsmcaError):
    """A bug or broken invariant; the client sees only a generic message."""

    status = Status.INTERNAL
    default_reason = "InternalError"


class TokenOutage(Unavailable):
    """The token cannot be used now (faulted, being re-opened); the call may be retried."""

    default_reason = "ServiceUnavailable.Token"


class DatabaseOutage(Unavailable):
    """The database cannot be reached or stayed locked past its budget; retrying may help."""

    default_reason = "ServiceUnavailable.Database"


# SQLite primary result codes of a database that is busy, locked or cannot be read or
# written now (https://www.sqlite.org/rescode.html); the others are bugs (SQL, schema).
_SQLITE_OUTAGE_CODES = frozenset({
    5,   # SQLITE_BUSY: another connection holds the lock past busy_timeout
    6,   # SQLITE_LOCKED
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
})


def rejected_by_database(exc: BaseException) -> InvalidArgument | None:
    """The InvalidArgument for a value the database refused to hold or compare (a DBAPI
    ``DataError``: PostgreSQL text with a NUL character, a number out of range); None for
    anything else. Such a value can only come from the request."""
    from sqlalchemy import exc as sa_exc  # noqa: PLC0415 - keeps this module light to import

    if isinstance(exc, sa_exc.DataError):
        return InvalidArgument(
            "a value of the request cannot be stored or looked up (for example a NUL "
            "character in a string)", reason="InvalidParameter.Value")
    return None


def outage(exc: BaseException) -> Unavailable | None:
    """The :class:`Unavailable` error that ``exc`` amounts to, if it is an outage of the
    token or the database rather than a bug; None otherwise.

    Database: a connection SQLAlchemy invalidated (PostgreSQL restarted, connection dropped),
    a pool timeout, any PostgreSQL ``OperationalError`` (connection lost, admin shutdown,
    serialization failure) and SQLite's busy/locked/I/O result codes.
    """
    from sqlalchemy import exc as sa_exc  # noqa: PLC0415 - keeps this module light to import

    from hsm.errors import TokenUnavailable  # noqa: PLC0415

    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, TokenUnavailable):
        return TokenOutage(str(exc))
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return DatabaseOutage(f"the database is unavailable: {type(exc).__name__}")
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        code = getattr(orig, "sqlite_errorcode", None)
        if (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.InterfaceError)
            or (code is not None and code & 0xFF in _SQLITE_OUTAGE_CODES)
            or (code is None and isinstance(exc, sa_exc.OperationalError))
        ):
            return DatabaseOutage(
                f"the database is unavailable: {type(orig).__name__}: "
                f"{str(orig).splitlines()[0] if str(orig) else ''}".rstrip(": ")
            )
    return None
