"""The typed hsmca client, blocking and asyncio: ``client.pca.<rpc>()``, ``client.kms.<rpc>()``.

One method per RPC (generated from the .proto files into service.client.generated), keyword
arguments named after the request fields, frozen dataclasses as results. A failed call raises
:class:`~service.client.errors.Refused` (the service said no: ``reason``, ``message``,
``request_id``) or :class:`~service.client.errors.TransportError` (no answer); UNAVAILABLE and
RESOURCE_EXHAUSTED are retried under a :class:`~service.client.retry.RetryPolicy`.

Channels come from one injectable function (``channel_factory``): by default
:func:`service.rpc.channel.client_channel`, which uses mTLS with the files under ``var/tls``
and the target from the argument, ``$HSMCA_TARGET`` or the configured listen address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc

from service.client.convert import from_proto, to_proto
from service.client.errors import from_rpc_error
from service.client.generated import (
    RPCS,
    AsyncKmsCertificatesCalls,
    AsyncPrivateCaCalls,
    KmsCertificatesCalls,
    Message,
    PrivateCaCalls,
    proto_class,
)
from service.client.retry import RetryPolicy
from service.config import Config

__all__ = [
    "AsyncHsmcaClient",
    "ChannelFactory",
    "HsmcaClient",
    "default_async_channel",
    "default_channel",
]

_R = TypeVar("_R")
_PACKAGE = "hsmca.v1"
#: Default per-attempt deadline, seconds (a certificate issued at once takes milliseconds).
DEFAULT_TIMEOUT = 60.0

ChannelFactory = Callable[..., grpc.Channel]


def default_channel(target: str | None = None, *, tls_dir: Path | None = None,
                    config: Config | None = None, cert: Path | None = None,
                    key: Path | None = None, ca: Path | None = None,
                    insecure: bool | None = None) -> grpc.Channel:
    """The project's client channel (service.rpc.channel): mTLS unless configured plaintext."""
    from service.rpc.channel import client_channel

    return client_channel(target, tls_dir, config, cert=cert, key=key, ca=ca,
                          insecure=insecure)


def default_async_channel(target: str | None = None, *, tls_dir: Path | None = None,
                          config: Config | None = None, cert: Path | None = None,
                          key: Path | None = None, ca: Path | None = None,
                          insecure: bool | None = None) -> grpc.aio.Channel:
    """As :func:`default_channel`, for asyncio."""
    from service.config import load_config
    from service.rpc.channel import client_credentials, client_identity, resolve_target

    cfg = config if config is not None else load_config()
    address = resolve_target(target, config=cfg)
    if insecure if insecure is not None else cfg.grpc.insecure:
        return grpc.aio.insecure_channel(address)
    identity = client_identity(tls_dir, cfg, cert=cert, key=key, ca=ca)
    return grpc.aio.secure_channel(address, client_credentials(identity))


def _prepare(channel: grpc.Channel | grpc.aio.Channel, service: str, method: str,
             request: Message, response_type: type[Any]) -> tuple[Any, Any]:
    """The channel's callable for ``service/method`` and the request as protobuf."""
    response_class = proto_class(response_type)
    stub = channel.unary_unary(
        f"/{_PACKAGE}.{service}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    return stub, to_proto(request)


class _Caller:
    """Sends one unary call with retries over a blocking channel."""

    def __init__(self, channel: grpc.Channel, retry: RetryPolicy,
                 metadata: Sequence[tuple[str, str]], default_timeout: float | None,
                 sleep: Callable[[float], None]) -> None:
        self._channel = channel
        self._retry = retry
        self._metadata = tuple(metadata)
        self._timeout = default_timeout
        self._sleep = sleep

    def call(self, service: str, method: str, request: Message, response_type: type[_R],
             timeout: float | None) -> _R:
        stub, message = _prepare(self._channel, service, method, request, response_type)
        attempt = 1
        while True:
            try:
                answer = stub(message, timeout=timeout or self._timeout,
                              metadata=self._metadata or None)
            except grpc.RpcError as e:
                error = from_rpc_error(e)
                wait = self._retry.delay(attempt, error)
                if wait is None:
                    raise error from None
                self._sleep(wait)
                attempt += 1
                continue
            return from_proto(answer, response_type)  # type: ignore[type-var]


class _AsyncCaller:
    """Sends one unary call with retries over an asyncio channel."""

    def __init__(self, channel: grpc.aio.Channel, retry: RetryPolicy,
                 metadata: Sequence[tuple[str, str]], default_timeout: float | None) -> None:
        self._channel = channel
        self._retry = retry
        self._metadata = tuple(metadata)
        self._timeout = default_timeout

    async def call(self, service: str, method: str, request: Message,
                   response_type: type[_R], timeout: float | None) -> _R:
        stub, message = _prepare(self._channel, service, method, request, response_type)
        attempt = 1
        while True:
            try:
                answer = await stub(message, timeout=timeout or self._timeout,
                                    metadata=self._metadata or None)
            except grpc.RpcError as e:
                error = from_rpc_error(e)
                wait = self._retry.delay(attempt, error)
                if wait is None:
                    raise error from None
                await asyncio.sleep(wait)
                attempt += 1
                continue
            return from_proto(answer, response_type)  # type: ignore[type-var]


class PrivateCaClient(PrivateCaCalls):
    """The PrivateCa RPCs (blocking)."""

    def __init__(self, caller: _Caller) -> None:
        self._caller = caller

    def _call(self, method: str, request: Message, response_type: type[_R],
              timeout: float | None) -> _R:
        return self._caller.call("PrivateCa", method, request, response_type, timeout)


class KmsClient(KmsCertificatesCalls):
    """The KmsCertificates RPCs (blocking)."""

    def __init__(self, caller: _Caller) -> None:
        self._caller = caller

    def _call(self, method: str, request: Message, response_type: type[_R],
              timeout: float | None) -> _R:
        return self._caller.call("KmsCertificates", method, request, response_type, timeout)


class AsyncPrivateCaClient(AsyncPrivateCaCalls):
    """The PrivateCa RPCs (asyncio)."""

    def __init__(self, caller: _AsyncCaller) -> None:
        self._caller = caller

    async def _call(self, method: str, request: Message, response_type: type[_R],
                    timeout: float | None) -> _R:
        return await self._caller.call("PrivateCa", method, request, response_type, timeout)


class AsyncKmsClient(AsyncKmsCertificatesCalls):
    """The KmsCertificates RPCs (asyncio)."""

    def __init__(self, caller: _AsyncCaller) -> None:
        self._caller = caller

    async def _call(self, method: str, request: Message, response_type: type[_R],
                    timeout: float | None) -> _R:
        return await self._caller.call("KmsCertificates", method, request, response_type,
                                       timeout)


class HsmcaClient:
    """Blocking client: ``with HsmcaClient.connect() as c: c.pca.describe_ca_certificate(...)``."""

    def __init__(self, channel: grpc.Channel, *, retry: RetryPolicy | None = None,
                 metadata: Sequence[tuple[str, str]] = (),
                 timeout: float | None = DEFAULT_TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.channel = channel
        self._caller = _Caller(channel, retry or RetryPolicy(), metadata, timeout, sleep)
        self.pca = PrivateCaClient(self._caller)
        self.kms = KmsClient(self._caller)

    def call(self, service: str, method: str, request: Message,
             timeout: float | None = None) -> Message:
        """Any RPC by name, with a request dataclass (the CLI's generic path)."""
        _, response_type = RPCS[service][method]
        return self._caller.call(service, method, request, response_type, timeout)

    @classmethod
    def connect(cls, target: str | None = None, *, retry: RetryPolicy | None = None,
                timeout: float | None = DEFAULT_TIMEOUT,
                channel_factory: ChannelFactory = default_channel,
                **channel_options: Any) -> HsmcaClient:
        """Open a channel with ``channel_factory(target, **channel_options)``.

        The default factory takes ``tls_dir``, ``config``, ``cert``, ``key``, ``ca`` and
        ``insecure`` (see service.rpc.channel).
        """
        return cls(channel_factory(target, **channel_options), retry=retry, timeout=timeout)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> HsmcaClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncHsmcaClient:
    """Asyncio client: ``async with AsyncHsmcaClient.connect() as c: await c.pca....``."""

    def __init__(self, channel: grpc.aio.Channel, *, retry: RetryPolicy | None = None,
                 metadata: Sequence[tuple[str, str]] = (),
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.channel = channel
        caller = _AsyncCaller(channel, retry or RetryPolicy(), metadata, timeout)
        self.pca = AsyncPrivateCaClient(caller)
        self.kms = AsyncKmsClient(caller)

    @classmethod
    def connect(cls, target: str | None = None, *, retry: RetryPolicy | None = None,
                timeout: float | None = DEFAULT_TIMEOUT,
                channel_factory: Callable[..., grpc.aio.Channel] = default_async_channel,
                **channel_options: Any) -> AsyncHsmcaClient:
        """Open an asyncio channel with ``channel_factory(target, **channel_options)``."""
        return cls(channel_factory(target, **channel_options), retry=retry, timeout=timeout)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def __aenter__(self) -> AsyncHsmcaClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

