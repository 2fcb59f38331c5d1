"""The server certificate renews itself without a restart; a broken renewal keeps the old one."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hsm.keys import read_key_attributes
from service.auth.bootstrap import _issue_client, renew_server_certificate_if_due
from service.auth.opsca import OPS_CA_KEY_ID, OpsCa
from service.auth.perimeter import LocalAdmin
from service.config import Config, load_config
from service.rpc.channel import client_channel
from service.rpc.server import build_server, graceful_stop
from service.rpc.tls import ServerTlsFiles, server_credentials


@pytest.fixture
def tls_config(tmp_path: Path, hsm_token: Any) -> Config:
    """A state dir whose operations CA key is the session token's, with server and admin."""
    config = load_config(env={"HSMCA_STATE_DIR": str(tmp_path)})
    import datetime as dt
    ca = OpsCa.open_or_create(hsm_token, config.tls.dir / "ca.pem", now=dt.datetime.now(dt.UTC))
    assert renew_server_certificate_if_due(config, hsm_token)  # missing: issued
    assert not renew_server_certificate_if_due(config, hsm_token)  # fresh: not due
    _issue_client(ca, "admin", config.tls.dir, "admin", 1, dt.datetime.now(dt.UTC))
    # The operations CA key is the token's and the token proves it never left it.
    attributes = read_key_attributes(hsm_token, OPS_CA_KEY_ID)
    assert attributes.proves_non_exportable and not attributes.decrypt
    return config


@pytest.fixture
def server(tls_config: Config) -> Iterator[int]:
    files = ServerTlsFiles(tls_config.tls, check_seconds=0)
    srv, port = build_server([], "127.0.0.1:0", max_workers=2, reuse_port=False,
                             perimeter=LocalAdmin("t"), credentials=server_credentials(files))
    srv.start()
    try:
        yield port
    finally:
        graceful_stop(srv, 0)


def _served_serial(config: Config, port: int) -> int:
    ctx = ssl.create_default_context(cafile=str(config.tls.dir / "ca.pem"))
    ctx.load_cert_chain(config.tls.dir / "admin.pem", config.tls.dir / "admin.key")
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _healthy(channel: grpc.Channel) -> bool:
    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def test_renewal_is_served_without_a_restart(tls_config: Config, server: int,
                                             hsm_token: Any) -> None:
    first = _served_serial(tls_config, server)
    channel = client_channel(f"127.0.0.1:{server}", tls_config.tls.dir, insecure=False)
    assert _healthy(channel)
    # Due: renew_before_days longer than the certificate's whole life.
    due = dataclasses.replace(tls_config, tls=dataclasses.replace(
        tls_config.tls, renew_before_days=tls_config.tls.server_validity_days + 1))
    assert renew_server_certificate_if_due(due, hsm_token)
    time.sleep(0.05)
    second = _served_serial(tls_config, server)
    assert second != first
    assert second == x509.load_pem_x509_certificate(
        tls_config.tls.server_cert.read_bytes()).serial_number
    assert _healthy(channel)  # the connection opened before the renewal still works
    channel.close()
    # A key that does not match its certificate (a half-done renewal) is not loaded.
    tls_config.tls.server_key.write_bytes(
        (tls_config.tls.dir / "admin.key").read_bytes())
    time.sleep(0.05)
    assert _served_serial(tls_config, server) == second


def test_server_certificate_is_reissued_when_a_name_is_added(tls_config: Config,
                                                             hsm_token: Any) -> None:
    named = dataclasses.replace(tls_config, tls=dataclasses.replace(
        tls_config.tls, server_names=("ca.example.com", "10.9.8.7")))
    assert renew_server_certificate_if_due(named, hsm_token)
    cert = x509.load_pem_x509_certificate(tls_config.tls.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ca.example.com" in san.get_values_for_type(x509.DNSName)
    assert "10.9.8.7" in {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    # The operator's own files are never touched.
    own = dataclasses.replace(tls_config, tls=dataclasses.replace(
        tls_config.tls, server_cert=tls_config.state_dir / "mine.pem"))
    assert not own.tls.managed
    assert not renew_server_certificate_if_due(own, hsm_token)
