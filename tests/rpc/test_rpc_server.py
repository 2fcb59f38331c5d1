"""The server builder: health, reflection, SO_REUSEPORT, graceful stop."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from rpc_fakes import FakePrivateCa, RunningServer

from service.auth.perimeter import LocalAdmin
from service.gen.hsmca.v1 import private_ca_pb2, private_ca_pb2_grpc
from service.rpc.server import build_server, graceful_stop, service_names

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", ["", "hsmca.v1.PrivateCa", "hsmca.v1.KmsCertificates"])
def test_health_serving(running: RunningServer, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(running.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == SERVING


def test_health_unknown_service(running: RunningServer) -> None:
    stub = health_pb2_grpc.HealthStub(running.channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(health_pb2.HealthCheckRequest(service="hsmca.v1.Nope"), timeout=10)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_services(running: RunningServer) -> None:
    db = ProtoReflectionDescriptorDatabase(running.channel)
    services = set(db.get_services())
    assert {
        "hsmca.v1.PrivateCa",
        "hsmca.v1.KmsCertificates",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    # What grpcurl does next: fetch the file (and its imports) that defines a service.
    proto = db.FindFileContainingSymbol("hsmca.v1.PrivateCa")
    assert proto.name == "hsmca/v1/private_ca.proto"
    assert "hsmca/v1/common.proto" in proto.dependency


def test_service_names_from_generated_bases() -> None:
    assert service_names(FakePrivateCa()) == ["hsmca.v1.PrivateCa"]
    with pytest.raises(ValueError, match="generated hsmca.v1 servicer"):
        build_server([(lambda s, srv: None, object())], "127.0.0.1:0",
                     max_workers=1, reuse_port=False, perimeter=LocalAdmin("t"))


def test_reuse_port_lets_two_servers_share_a_port() -> None:
    servers = []
    try:
        first, port = build_server(
            [(private_ca_pb2_grpc.add_PrivateCaServicer_to_server, FakePrivateCa())],
            "127.0.0.1:0", max_workers=1, reuse_port=True, perimeter=LocalAdmin("t"),
        )
        servers.append(first)
        second, port2 = build_server(
            [(private_ca_pb2_grpc.add_PrivateCaServicer_to_server, FakePrivateCa())],
            f"127.0.0.1:{port}", max_workers=1, reuse_port=True, perimeter=LocalAdmin("t"),
        )
        servers.append(second)
        assert port2 == port
    finally:
        for server in servers:
            server.stop(None)


def test_graceful_stop_drains_in_flight_calls(running: RunningServer) -> None:
    future = running.pca.DescribeCACertificate.future(
        private_ca_pb2.DescribeCACertificateRequest(identifier="slow"), timeout=20
    )
    # Let the call reach the servicer before stopping.
    health = health_pb2_grpc.HealthStub(running.channel)
    health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    def release() -> None:
        time.sleep(0.5)
        running.private_ca.release_slow.set()

    threading.Thread(target=release).start()
    graceful_stop(running.server, 10)
    assert future.result().request_id  # finished OK during the grace period
