"""Messages that do not deserialize, and errors about huge inputs, reach the client typed.

grpc deserializes a request before any handler runs; without the interceptor's tolerant
deserializer a bad message ended as INTERNAL "Exception deserializing request!" with no
ErrorInfo and no request id. A message quoting a 1 MB input made the status exceed the
client's 16 KiB metadata limit, so the client saw RESOURCE_EXHAUSTED instead of the reason.
"""

from __future__ import annotations

import grpc
import pytest
from rpc_fakes import RunningServer

from service.errors import MAX_MESSAGE_BYTES, InvalidArgument, NotFound, quote
from service.rpc.client import error_info, request_id
from service.rpc.interceptor import MALFORMED_REASON

# Field 1 (identifier, a string) holding 0xff: not UTF-8. And bytes that are no protobuf.
INVALID_UTF8 = b"\x0a\x02\xff\xfe"
GARBAGE = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"


@pytest.mark.parametrize("payload", [INVALID_UTF8, GARBAGE], ids=["invalid-utf8", "garbage"])
@pytest.mark.parametrize("method", ["/hsmca.v1.PrivateCa/DescribeCACertificate",
                                    "/hsmca.v1.KmsCertificates/GetCertificate"])
def test_undecodable_request_is_invalid_argument(running: RunningServer, method: str,
                                                 payload: bytes) -> None:
    call = running.channel.unary_unary(method, request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as caught:
        call(payload, timeout=10)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert error_info(err) == (grpc.StatusCode.INVALID_ARGUMENT, MALFORMED_REASON)
    assert request_id(err)


def test_quote_is_short_and_escaped() -> None:
    assert quote("a" * 1_000_000).startswith("'" + "a" * 64 + "'...")
    assert len(quote("\u202e" * 10_000)) < 1000
    assert quote("x\x00\u202e") == "'x\\x00\\u202e'"
    assert quote("UK") == "'UK'"


@pytest.mark.parametrize("char", ["a", "\u00e9", "\U0001f600"])
def test_error_message_is_bounded(char: str) -> None:
    err = NotFound(f"no CA with identifier {char * 1_000_000!r}", reason="NotFound.Identifier")
    assert len(err.message.encode()) <= MAX_MESSAGE_BYTES
    assert err.message.startswith("no CA with identifier")
    short = InvalidArgument("short", reason="InvalidParameter.X")
    assert short.message == "short"
