"""Client-side helpers for reading the rich status the server interceptor attaches."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.rpc.interceptor import REQUEST_ID_METADATA_KEY

__all__ = ["error_info", "request_id"]


def error_info(rpc_error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """Return (status code, ErrorInfo reason) of a failed call; reason is "" if none was sent."""
    code: grpc.StatusCode = rpc_error.code()
    status = rpc_status.from_call(rpc_error)
    if status is None:
        return code, ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return code, str(info.reason)
    return code, ""


def request_id(call: grpc.Call) -> str:
    """Return the x-request-id trailing metadata of a finished call or RpcError ("" if absent)."""
    for key, value in call.trailing_metadata() or ():
        if key == REQUEST_ID_METADATA_KEY:
            return str(value)
    return ""
