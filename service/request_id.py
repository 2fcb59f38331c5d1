"""The request id of the call being served, for every layer below the transport.

The gRPC interceptor sets it once per call; the audit log and the logs read it here, so
domain code never imports the transport to learn which request it serves.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["REQUEST_ID", "current_request_id", "serving_request"]

#: The variable itself (the interceptor sets and resets it around each call).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar(
    "hsmca_request_id", default=""
)


def current_request_id() -> str:
    """Return the request id of the RPC being served in this context ("" outside an RPC)."""
    return REQUEST_ID.get()


@contextmanager
def serving_request(request_id: str) -> Iterator[str]:
    """Run the enclosed block as serving ``request_id`` (the interceptor wraps each call)."""
    token = REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        REQUEST_ID.reset(token)
