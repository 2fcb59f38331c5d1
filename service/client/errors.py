"""What a failed call raises: the gRPC code, the service's ErrorInfo reason, message, request id.

:class:`Refused` means the service answered and said no (it sent a ``google.rpc.ErrorInfo``);
:class:`TransportError` means no answer came from the service (unreachable, TLS handshake,
deadline). Match on ``reason`` (``NotFound.ParentIdentifier``), never on the message.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = ["CallError", "Refused", "TransportError", "from_rpc_error"]

#: Codes that mean the call never reached a servicer when no ErrorInfo came with them.
_TRANSPORT_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
})


class CallError(Exception):
    """A call that did not succeed; ``code`` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str, *, reason: str = "",
                 request_id: str = "", retry_delay: float | None = None) -> None:
        super().__init__(f"{code.name} {reason or '-'}: {message}")
        self.code = code
        #: The ErrorInfo reason in the API's style; "" when the service sent none.
        self.reason = reason
        self.message = message
        #: The service's request id (also in its log); "" when the call never reached it.
        self.request_id = request_id
        #: Seconds the service asked the client to wait (google.rpc.RetryInfo), if it did.
        self.retry_delay = retry_delay

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
                f"message={self.message!r}, request_id={self.request_id!r})")


class Refused(CallError):
    """The service answered the call with an error status and an ErrorInfo reason."""


class TransportError(CallError):
    """No answer from the service: not reachable, TLS refused, or the deadline passed."""


def from_rpc_error(error: grpc.RpcError) -> CallError:
    """Classify a grpc.RpcError (sync or asyncio) and read its rich status details."""
    code: grpc.StatusCode = error.code()
    message = str(error.details() or "")
    reason = request_id = ""
    retry_delay: float | None = None
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status whose details do not match its code: ignore the details
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = str(info.reason)
            request_id = request_id or str(info.metadata.get("request_id", ""))
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            request = error_details_pb2.RequestInfo()
            detail.Unpack(request)
            request_id = str(request.request_id) or request_id
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    if not request_id:
        for key, value in error.trailing_metadata() or ():
            if key == "x-request-id":
                request_id = str(value)
    cls = TransportError if not reason and code in _TRANSPORT_CODES else Refused
    return cls(code, message, reason=reason, request_id=request_id, retry_delay=retry_delay)
