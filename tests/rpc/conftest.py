"""The `running` fixture: an in-process gRPC server on 127.0.0.1:0 with the fake servicers."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from rpc_fakes import EmptyKms, FakePrivateCa, RunningServer

from service.auth.perimeter import LocalAdmin
from service.gen.hsmca.v1 import kms_pb2_grpc, private_ca_pb2_grpc
from service.rpc.server import build_server, graceful_stop


@pytest.fixture
def running() -> Iterator[RunningServer]:
    """Start a server on 127.0.0.1:0 with the fake servicers; stop it afterwards."""
    pca = FakePrivateCa()
    server, port = build_server(
        [
            (private_ca_pb2_grpc.add_PrivateCaServicer_to_server, pca),
            (kms_pb2_grpc.add_KmsCertificatesServicer_to_server, EmptyKms()),
        ],
        "127.0.0.1:0",
        max_workers=4,
        reuse_port=False,
        perimeter=LocalAdmin("default"),
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield RunningServer(server, port, channel, pca)
    finally:
        pca.release_slow.set()
        channel.close()
        graceful_stop(server, 0)
