"""The one server interceptor: request ids, call logging and error -> gRPC status mapping.

Servicers raise :class:`service.errors.HsmcaError` subclasses (or let domain code raise
them) and never call ``context.abort`` for domain errors; this module is the only place that
turns an error into a gRPC status. The status carries a ``google.rpc.Status`` with
``google.rpc.ErrorInfo(reason=..., domain="hsmca")`` (the machine-readable reason in the
API's style, e.g. ``NotFound.ParentIdentifier``) and ``google.rpc.RequestInfo`` (the
request id), so clients match on the reason, never on message text (docs/architecture.md inv. 5).
An outage of the token or the database (``service.errors.outage``) is UNAVAILABLE with its
reason (``ServiceUnavailable.Token``, ``ServiceUnavailable.Database``), wherever it was
raised. Any other exception is a bug: the client sees only INTERNAL with a generic message and the
request id; the traceback goes to the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from service import audit, metrics
from service.auth.perimeter import Perimeter
from service.auth.policy import granted
from service.auth.principal import acting_as
from service.entropy import new_identifier
from service.errors import (
    HsmcaError,
    InvalidArgument,
    ResourceExhausted,
    Status,
    outage,
    rejected_by_database,
)
from service.request_id import REQUEST_ID as _request_id
from service.request_id import current_request_id

__all__ = [
    "ERROR_DOMAIN",
    "GRPC_CODES",
    "MALFORMED_REASON",
    "MAX_RESPONSE_BYTES",
    "REQUEST_ID_METADATA_KEY",
    "HsmcaServerInterceptor",
    "current_request_id",
]

_log = logging.getLogger("hsmca.rpc")

#: ``ErrorInfo.domain`` of every error this service reports.
ERROR_DOMAIN = "hsmca"
#: Trailing-metadata key that carries the request id on every call, OK or not.
REQUEST_ID_METADATA_KEY = "x-request-id"
#: Field every hsmca.v1 response message has; filled in here if the servicer left it empty.
_REQUEST_ID_FIELD = "request_id"
#: Reason reported for exceptions outside the error family.
_INTERNAL_REASON = "InternalError"
#: Reason reported for a request message that does not deserialize.
MALFORMED_REASON = "InvalidParameter.Malformed"
#: Largest response sent: well under the 4 MiB a client receives by default (and the
#: server's send limit), so a response is either read by the client or refused with a reason.
#: The request bounds (service/limits.py) keep real responses far below it.
MAX_RESPONSE_BYTES = 3 * 1024 * 1024

#: The one mapping from the error family's statuses to gRPC codes.
GRPC_CODES: Mapping[Status, grpc.StatusCode] = {
    Status.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Status.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Status.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Status.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Status.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Status.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Status.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Status.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Status.INTERNAL: grpc.StatusCode.INTERNAL,
}

UnaryHandler = Callable[[Any, grpc.ServicerContext], Any]


class _Undecodable:
    """Stands in for a request message that did not deserialize (see _tolerant)."""


_UNDECODABLE = _Undecodable()


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wrap a request deserializer so a bad message reaches the interceptor, not grpc.

    grpc deserializes before any handler runs; when that raises (invalid UTF-8 in a string
    field, bytes that are no protobuf), it ends the call itself as INTERNAL without details.
    The sentinel lets _call refuse it as InvalidArgument with a reason and a request id.
    """
    if deserialize is None:
        return None

    def request_deserializer(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - any failure to parse is the client's message
            return _UNDECODABLE

    return request_deserializer


#: The audit log's kind of a refusal at the perimeter, by the error's status.
_REFUSAL_KINDS = {Status.UNAUTHENTICATED: "authn", Status.PERMISSION_DENIED: "authz",
                  Status.RESOURCE_EXHAUSTED: "rate_limit"}


def _audit_refusal(refusal: HsmcaError, method: str, principal_id: str,
                   tenant: str | None) -> None:
    """Record a call the perimeter refused (service/audit); the refusal stands regardless.

    ``tenant``: the one the policy gives the caller's id, so that the tenant's audit trail
    holds its refusals; None (an unknown id) records the default tenant."""
    try:
        audit.refused(_REFUSAL_KINDS.get(refusal.status, "authz"), reason=refusal.reason,
                      details={"method": method}, principal_id=principal_id, tenant=tenant)
    except Exception:
        _log.exception("could not record the refusal of a call to %s", method)


def _internal_message(request_id: str) -> str:
    return f"internal error; request_id={request_id}"


def _rich_status(
    code: grpc.StatusCode, message: str, reason: str, request_id: str,
    err: HsmcaError | None = None,
) -> grpc.Status:
    """Build the grpc.Status with ErrorInfo + RequestInfo details and x-request-id."""
    rich = status_pb2.Status(code=code.value[0], message=message)
    rich.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason=reason, domain=ERROR_DOMAIN, metadata={"request_id": request_id}
        )
    )
    rich.details.add().Pack(error_details_pb2.RequestInfo(request_id=request_id))
    if isinstance(err, ResourceExhausted) and err.retry_after is not None:
        # A rate limit: when to come back (google.rpc.RetryInfo) and which quota
        # (google.rpc.QuotaFailure), as Google APIs report RESOURCE_EXHAUSTED.
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(max(1, int(err.retry_after * 1e9)))
        rich.details.add().Pack(retry)
        rich.details.add().Pack(error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(subject=err.quota_subject,
                                                      description=message)]))
    status = rpc_status.to_status(rich)
    # abort_with_status replaces the trailing metadata with the status's, so the request id
    # has to travel inside it.
    return _WithMetadata(
        status.code,
        status.details,
        (*status.trailing_metadata, (REQUEST_ID_METADATA_KEY, request_id)),
    )


class _WithMetadata(grpc.Status):
    """A grpc.Status value (the interface is attributes only)."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[Any, ...]
    ) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _add_request_id_trailer(context: grpc.ServicerContext, request_id: str) -> None:
    # Keep whatever trailing metadata the servicer set; add ours.
    existing = tuple(context.trailing_metadata() or ())
    context.set_trailing_metadata((*existing, (REQUEST_ID_METADATA_KEY, request_id)))


def _peer_certificate(context: grpc.ServicerContext) -> bytes | None:
    """The verified client certificate (PEM) of a TLS peer, or None."""
    pems = context.auth_context().get("x509_pem_cert")
    return bytes(pems[0]) if pems else None


def _action(method: str) -> str:
    """``/hsmca.v1.PrivateCa/CreateX`` -> ``PrivateCa/CreateX`` (the policy's spelling)."""
    return method.lstrip("/").removeprefix("hsmca.v1.")


def _call_inner(inner: UnaryHandler, request: Any, context: grpc.ServicerContext) -> Any:
    """Call the handler; an outage of the token or database becomes its Unavailable error,
    a value the database refused its InvalidArgument."""
    try:
        return inner(request, context)
    except HsmcaError:
        raise
    except Exception as e:
        mapped: HsmcaError | None = outage(e) or rejected_by_database(e)
        if mapped is None:
            raise
        raise mapped from e


class HsmcaServerInterceptor(grpc.ServerInterceptor):
    """Gives each unary call a request id, logs it, admits it through the perimeter (who is
    calling, may they, within their rate) and maps exceptions to gRPC statuses.

    Health checks and reflection (``/grpc.*``) need only the TLS handshake: load balancers
    and grpcurl probe them without a policy entry.
    """

    def __init__(self, perimeter: Perimeter) -> None:
        self._perimeter = perimeter
        # Method -> (the service's handler, ours around it). gRPC asks for the handler on
        # every call; the service's stays the same object, so ours is built once per method.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Wrap unary-unary handlers; streaming ones (health Watch, reflection) pass through."""
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        inner: UnaryHandler = handler.unary_unary

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            return self._call(method, inner, request, context)

        wrapped = grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _call(
        self, method: str, inner: UnaryHandler, request: Any, context: grpc.ServicerContext
    ) -> Any:
        request_id = new_identifier()  # a random UUID's string
        token = _request_id.set(request_id)
        started = time.monotonic()
        code = grpc.StatusCode.UNKNOWN
        reason = ""
        principal_id = "-"
        try:
            try:
                if method.startswith("/grpc."):
                    principal, grant = None, None
                else:
                    peer = _peer_certificate(context)
                    try:
                        principal, grant = self._perimeter.admit(_action(method), peer)
                    except HsmcaError as refusal:
                        # Refused: the log still says who asked, and so does the audit log.
                        claimed, tenant = self._perimeter.identify(peer)
                        principal_id = claimed or "-"
                        _audit_refusal(refusal, method, principal_id, tenant)
                        raise
                    principal_id = principal.id
                if request is _UNDECODABLE:
                    raise InvalidArgument(
                        "the request message does not parse as the method's protobuf "
                        "message (string fields must be valid UTF-8)",
                        reason=MALFORMED_REASON,
                    )
                if principal is None:
                    response = _call_inner(inner, request, context)
                else:
                    with acting_as(principal), granted(grant):
                        response = _call_inner(inner, request, context)
                if response is not None and response.ByteSize() > MAX_RESPONSE_BYTES:
                    raise ResourceExhausted(
                        f"the response would be {response.ByteSize()} bytes, over the "
                        f"{MAX_RESPONSE_BYTES} a response may have; ask for fewer entries "
                        "(show_size, page_size)", reason="LimitExceeded.ResponseSize")
            except HsmcaError as err:
                code = GRPC_CODES[err.status]
                reason = err.reason
                if err.status is Status.INTERNAL:
                    # Internal errors are bugs or broken invariants: their text may name
                    # internals, so it goes to the log only.
                    _log.error(
                        "internal error in %s request_id=%s: %r",
                        method,
                        request_id,
                        err,
                        exc_info=True,
                    )
                    message = _internal_message(request_id)
                else:
                    message = err.message
                context.abort_with_status(
                    _rich_status(code, message, reason, request_id, err))
                raise AssertionError("abort_with_status returned") from err  # unreachable
            except Exception as exc:
                set_code = context.code()
                if set_code is not None and set_code != grpc.StatusCode.OK:
                    # The servicer (or grpc's generated base class, for UNIMPLEMENTED) already
                    # chose a status: keep it, and let grpc finish the call with it.
                    code = set_code
                    _add_request_id_trailer(context, request_id)
                    raise
                code = grpc.StatusCode.INTERNAL
                reason = _INTERNAL_REASON
                _log.error(
                    "unhandled exception in %s request_id=%s", method, request_id, exc_info=True
                )
                context.abort_with_status(
                    _rich_status(code, _internal_message(request_id), reason, request_id)
                )
                raise AssertionError("abort_with_status returned") from exc  # unreachable
            code = grpc.StatusCode.OK
            if (
                response is not None
                and _REQUEST_ID_FIELD in response.DESCRIPTOR.fields_by_name
                and not getattr(response, _REQUEST_ID_FIELD)
            ):
                setattr(response, _REQUEST_ID_FIELD, request_id)
            _add_request_id_trailer(context, request_id)
            return response
        finally:
            # Health probes and reflection arrive every few seconds; keep them out of INFO.
            level = logging.DEBUG if method.startswith("/grpc.") else logging.INFO
            metrics.rpc_call(method, code.name, time.monotonic() - started)
            _log.log(
                level,
                "rpc method=%s principal=%s code=%s reason=%s duration_ms=%.2f request_id=%s",
                method,
                principal_id,
                code.name,
                reason or "-",
                (time.monotonic() - started) * 1000.0,
                request_id,
            )
            _request_id.reset(token)
