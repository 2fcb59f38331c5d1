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


class Status(enum.Enum):
    """The gRPC status an error maps to (names follow grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class HsmcaError(Exception):
    """Base of every error a client may see; carries status, reason and a safe message."""

    status: Status = Status.INTERNAL
    default_reason: str = "InternalError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
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
    """A quota or size limit is exceeded (reason: LimitExceeded.X)."""

    status = Status.RESOURCE_EXHAUSTED
    default_reason = "LimitExceeded"


class Unavailable(HsmcaError):
    """A dependency (the token, the database) cannot be reached now; retrying may help."""

    status = Status.UNAVAILABLE
    default_reason = "ServiceUnavailable"


class Internal(HsmcaError):
    """A bug or broken invariant; the client sees only a generic message."""

    status = Status.INTERNAL
    default_reason = "InternalError"
