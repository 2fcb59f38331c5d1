"""service/rpc/channel.py: target resolution and the client identity's default files."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, load_config
from service.rpc.channel import client_channel, client_identity, resolve_target


def test_target_precedence(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path), "HSMCA_GRPC_LISTEN": "0.0.0.0:7001"})
    assert resolve_target(config=cfg, environ={}) == "127.0.0.1:7001"
    assert resolve_target(config=cfg, environ={"HSMCA_TARGET": "h:1"}) == "h:1"
    assert resolve_target("x:2", config=cfg, environ={"HSMCA_TARGET": "h:1"}) == "x:2"
    v6 = load_config(env={"HSMCA_STATE_DIR": str(tmp_path), "HSMCA_GRPC_LISTEN": "[::]:7002"})
    assert resolve_target(config=v6, environ={}) == "[::1]:7002"
    named = load_config(env={"HSMCA_STATE_DIR": str(tmp_path),
                             "HSMCA_GRPC_LISTEN": "ca.example:7003"})
    assert resolve_target(config=named, environ={}) == "ca.example:7003"


def test_identity_defaults_to_the_bootstrapped_files(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path)})
    ident = client_identity(config=cfg, environ={})
    assert (ident.ca, ident.cert, ident.key) == (
        tmp_path / "tls" / "ca.pem", tmp_path / "tls" / "admin.pem", tmp_path / "tls" / "admin.key")
    other = client_identity(config=cfg, cert=tmp_path / "p.pem", key=tmp_path / "p.key",
                            environ={"HSMCA_CA": "/x/ca.pem"})
    assert (other.ca, other.cert, other.key) == (
        Path("/x/ca.pem"), tmp_path / "p.pem", tmp_path / "p.key")


def test_missing_files_say_how_to_bootstrap(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="make serve"):
        client_channel("127.0.0.1:1", config=cfg)


def test_insecure_server_gets_a_plaintext_channel(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path), "HSMCA_GRPC_INSECURE": "true"})
    # No TLS files exist: a plaintext channel must not need them.
    client_channel("127.0.0.1:1", config=cfg).close()
