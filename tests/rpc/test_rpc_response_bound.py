"""A response the client could not receive is refused with a reason, not sent.

The server's send limit is the client's default receive limit (4 MiB); a larger response
failed on the wire without ErrorInfo. The interceptor refuses any response over
MAX_RESPONSE_BYTES as RESOURCE_EXHAUSTED / LimitExceeded.ResponseSize.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from service.auth.perimeter import LocalAdmin
from service.gen.hsmca.v1 import private_ca_pb2, private_ca_pb2_grpc
from service.rpc.client import error_info, request_id
from service.rpc.interceptor import MAX_RESPONSE_BYTES
from service.rpc.server import build_server, graceful_stop


class _Big(private_ca_pb2_grpc.PrivateCaServicer):  # type: ignore[misc]
    """DescribeCACertificate answers with a certificate field of the requested size."""

    def DescribeCACertificate(self, request: private_ca_pb2.DescribeCACertificateRequest,
                              context: grpc.ServicerContext
                              ) -> private_ca_pb2.DescribeCACertificateResponse:
        size = int(request.identifier)
        return private_ca_pb2.DescribeCACertificateResponse(
            certificate=private_ca_pb2.CACertificate(x509_certificate="x" * size))


@pytest.fixture
def stub() -> Iterator[private_ca_pb2_grpc.PrivateCaStub]:
    server, port = build_server([(private_ca_pb2_grpc.add_PrivateCaServicer_to_server,
                                  _Big())], "127.0.0.1:0", max_workers=2, reuse_port=False,
                                perimeter=LocalAdmin("default"))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield private_ca_pb2_grpc.PrivateCaStub(channel)
    finally:
        channel.close()
        graceful_stop(server, 0)


def test_response_within_the_bound_is_sent(stub: private_ca_pb2_grpc.PrivateCaStub) -> None:
    response = stub.DescribeCACertificate(
        private_ca_pb2.DescribeCACertificateRequest(identifier=str(MAX_RESPONSE_BYTES - 1000)))
    assert len(response.certificate.x509_certificate) == MAX_RESPONSE_BYTES - 1000


@pytest.mark.parametrize("size", [MAX_RESPONSE_BYTES + 10, 5 * 1024 * 1024])
def test_oversized_response_is_refused(stub: private_ca_pb2_grpc.PrivateCaStub,
                                       size: int) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.DescribeCACertificate(
            private_ca_pb2.DescribeCACertificateRequest(identifier=str(size)))
    assert error_info(caught.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        "LimitExceeded.ResponseSize")
    assert request_id(caught.value)
