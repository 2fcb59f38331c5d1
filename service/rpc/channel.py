"""Client channels to an hsmca server: mutual TLS by default, plaintext only when told.

Every client the project ships (``hsmca call``, the typed client, the benchmarks, the tests
that go through a real server) opens its channel here, so the defaults live in one place.
The interface is stable:

``resolve_target(target=None, *, config=None, environ=None) -> str``
    The server address: ``target`` if given, else ``$HSMCA_TARGET``, else the configured
    ``grpc.listen`` with a wildcard host (``0.0.0.0``, ``[::]``) replaced by loopback.

``client_identity(tls_dir=None, config=None, *, cert=None, key=None, ca=None) -> ClientIdentity``
    The three files of a client's identity: the trust anchor (``ca.pem``) and the client
    certificate and key. Defaults: ``<tls_dir>/ca.pem``, ``<tls_dir>/admin.pem``,
    ``<tls_dir>/admin.key`` with ``tls_dir`` = the configured ``tls.dir`` (``var/tls``), or
    ``$HSMCA_CLIENT_CERT`` / ``$HSMCA_CLIENT_KEY`` / ``$HSMCA_CA`` when set. A certificate
    from ``hsmca principal issue --out DIR`` is ``cert=DIR/<name>.pem, key=DIR/<name>.key``.

``client_credentials(identity) -> grpc.ChannelCredentials``
    mTLS credentials for ``grpc.secure_channel`` or ``grpc.aio.secure_channel``.

``client_channel(target=None, tls_dir=None, config=None, *, cert=None, key=None, ca=None,
insecure=None, options=()) -> grpc.Channel``
    A ready-to-use synchronous channel. ``insecure=None`` follows the configuration: a
    server configured with ``grpc.insecure = true`` (loopback only) is reached in plaintext,
    every other one over mTLS with the identity above. ``insecure=True``/``False`` forces
    the choice.

``config`` None means :func:`service.config.load_config` (``$HSMCA_CONFIG`` and ``HSMCA_*``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from service.config import Config, ConfigError, load_config

__all__ = [
    "ENV_CA",
    "ENV_CLIENT_CERT",
    "ENV_CLIENT_KEY",
    "ENV_TARGET",
    "ClientIdentity",
    "client_channel",
    "client_credentials",
    "client_identity",
    "resolve_target",
]

#: Environment variable naming the server address (HOST:PORT).
ENV_TARGET = "HSMCA_TARGET"
#: Environment variables naming the client certificate, its key and the trust anchors.
ENV_CLIENT_CERT = "HSMCA_CLIENT_CERT"
ENV_CLIENT_KEY = "HSMCA_CLIENT_KEY"
ENV_CA = "HSMCA_CA"

_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}  # noqa: S104


@dataclasses.dataclass(frozen=True)
class ClientIdentity:
    """The files a client presents and trusts: trust anchors, certificate chain, key."""

    ca: Path
    cert: Path
    key: Path


def _config(config: Config | None) -> Config:
    return config if config is not None else load_config()


def resolve_target(target: str | None = None, *, config: Config | None = None,
                   environ: Mapping[str, str] | None = None) -> str:
    """The server address: ``target``, else $HSMCA_TARGET, else the configured listen address."""
    env = os.environ if environ is None else environ
    if target:
        return target
    if env.get(ENV_TARGET):
        return env[ENV_TARGET]
    listen = _config(config).grpc.listen
    host, _, port = listen.rpartition(":")
    return f"{_WILDCARD_HOSTS.get(host, host)}:{port}"


def client_identity(tls_dir: Path | None = None, config: Config | None = None, *,
                    cert: Path | None = None, key: Path | None = None, ca: Path | None = None,
                    environ: Mapping[str, str] | None = None) -> ClientIdentity:
    """The client's trust anchors, certificate and key (see the module docstring)."""
    env = os.environ if environ is None else environ
    base = tls_dir
    if base is None and not (cert and key and ca):
        base = _config(config).tls.dir

    def pick(given: Path | None, variable: str, default: str) -> Path:
        if given is not None:
            return Path(given)
        if env.get(variable):
            return Path(env[variable])
        assert base is not None
        return base / default

    return ClientIdentity(ca=pick(ca, ENV_CA, "ca.pem"),
                          cert=pick(cert, ENV_CLIENT_CERT, "admin.pem"),
                          key=pick(key, ENV_CLIENT_KEY, "admin.key"))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read the {what} {str(path)!r} ({e.strerror}); run `make serve` once to "
            "bootstrap var/tls, or pass the files explicitly") from None


def client_credentials(identity: ClientIdentity) -> grpc.ChannelCredentials:
    """mTLS channel credentials from the identity's files."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(identity.ca, "trust anchor file"),
        private_key=_read(identity.key, "client key"),
        certificate_chain=_read(identity.cert, "client certificate"),
    )


def client_channel(target: str | None = None, tls_dir: Path | None = None,
                   config: Config | None = None, *, cert: Path | None = None,
                   key: Path | None = None, ca: Path | None = None,
                   insecure: bool | None = None,
                   options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to the server: mTLS unless the server is configured insecure (see above)."""
    explicit_files = cert is not None and key is not None and ca is not None
    needs_config = (target is None or insecure is None or
                    (tls_dir is None and not explicit_files))
    cfg = _config(config) if needs_config else config
    address = resolve_target(target, config=cfg)
    plaintext = insecure if insecure is not None else bool(cfg and cfg.grpc.insecure)
    if plaintext:
        return grpc.insecure_channel(address, options=list(options))
    identity = client_identity(tls_dir, cfg, cert=cert, key=key, ca=ca)
    return grpc.secure_channel(address, client_credentials(identity), options=list(options))
