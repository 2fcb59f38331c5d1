"""The client's retry policy against a small in-process gRPC server (no keys involved).

The server answers DescribeCACertificate from a script of statuses, with the ErrorInfo and
RetryInfo details the real interceptor sends, and records when each attempt arrived.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.client import (
    AsyncHsmcaClient,
    HsmcaClient,
    Refused,
    RetryPolicy,
    TransportError,
)
from service.gen.hsmca.v1 import private_ca_pb2

OK = "OK"


@dataclass
class Script:
    """What the server answers, attempt by attempt, and when the attempts came."""

    answers: list[tuple[grpc.StatusCode, str, float | None] | str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, reason: str,
           retry_after: float | None) -> None:
    rich = status_pb2.Status(code=code.value[0], message=f"scripted {code.name}")
    if reason:
        rich.details.add().Pack(error_details_pb2.ErrorInfo(
            reason=reason, domain="hsmca", metadata={"request_id": "req-1"}))
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(__import__("datetime").timedelta(seconds=retry_after))
        rich.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    context.abort_with_status(rpc_status.to_status(rich))


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()

    def describe(request: private_ca_pb2.DescribeCACertificateRequest,
                 context: grpc.ServicerContext) -> private_ca_pb2.DescribeCACertificateResponse:
        with script.lock:
            script.arrivals.append(time.monotonic())
            answer = script.answers.pop(0) if script.answers else OK
        if answer != OK:
            assert not isinstance(answer, str)
            _abort(context, *answer)
        response = private_ca_pb2.DescribeCACertificateResponse(request_id="req-ok")
        response.certificate.identifier = request.identifier
        return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "hsmca.v1.PrivateCa", {"DescribeCACertificate": grpc.unary_unary_rpc_method_handler(
            describe,
            request_deserializer=private_ca_pb2.DescribeCACertificateRequest.FromString,
            response_serializer=private_ca_pb2.DescribeCACertificateResponse.SerializeToString,
        )})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", script
    finally:
        server.stop(0)


FAST = RetryPolicy(max_attempts=4, initial_backoff=0.05, multiplier=2.0, jitter=0.1)


def _client(target: str, retry: RetryPolicy = FAST) -> HsmcaClient:
    return HsmcaClient.connect(target, retry=retry, insecure=True, timeout=5)


def _gaps(arrivals: list[float]) -> list[float]:
    return [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]


def test_resource_exhausted_waits_as_long_as_retry_info_says(scripted: tuple[str, Script]
                                                               ) -> None:
    target, script = scripted
    script.answers = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "LimitExceeded.Calls", 0.4)]
    with _client(target) as client:
        result = client.pca.describe_ca_certificate(identifier="ca-1")
    assert result.certificate is not None and result.certificate.identifier == "ca-1"
    assert result.request_id == "req-ok"
    assert len(script.arrivals) == 2
    # The service asked for 0.4 s, far more than the 0.05 s the policy would have waited.
    assert _gaps(script.arrivals)[0] >= 0.4


def test_unavailable_is_retried_with_growing_backoff(scripted: tuple[str, Script]) -> None:
    target, script = scripted
    script.answers = [(grpc.StatusCode.UNAVAILABLE, "ServiceUnavailable", None)] * 3
    with _client(target) as client:
        client.pca.describe_ca_certificate(identifier="ca-1")
    assert len(script.arrivals) == 4
    gaps = _gaps(script.arrivals)
    # 0.05, 0.1, 0.2 s each within 10% jitter (lower bounds only: a busy machine is slower).
    assert gaps[0] >= 0.045 and gaps[1] >= 0.09 and gaps[2] >= 0.18


def test_attempts_stop_at_max_attempts_and_the_last_error_is_raised(
        scripted: tuple[str, Script]) -> None:
    target, script = scripted
    script.answers = [(grpc.StatusCode.UNAVAILABLE, "ServiceUnavailable.Issuing", None)] * 10
    with _client(target) as client, pytest.raises(Refused) as e:
        client.pca.describe_ca_certificate(identifier="ca-1")
    assert len(script.arrivals) == FAST.max_attempts
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.reason == "ServiceUnavailable.Issuing"


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INTERNAL])
def test_other_codes_are_not_retried(scripted: tuple[str, Script],
                                     code: grpc.StatusCode) -> None:
    target, script = scripted
    script.answers = [(code, "Some.Reason", 0.01)]
    with _client(target) as client, pytest.raises(Refused) as e:
        client.pca.describe_ca_certificate(identifier="ca-1")
    assert len(script.arrivals) == 1
    assert (e.value.code, e.value.reason, e.value.request_id) == (code, "Some.Reason", "req-1")
    assert e.value.message == f"scripted {code.name}"


def test_a_retry_info_beyond_the_limit_is_not_waited_for(scripted: tuple[str, Script]) -> None:
    target, script = scripted
    script.answers = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "LimitExceeded.Calls", 3600.0)]
    with _client(target) as client, pytest.raises(Refused) as e:
        client.pca.describe_ca_certificate(identifier="ca-1")
    assert len(script.arrivals) == 1
    assert e.value.retry_delay == 3600.0


def test_no_server_is_a_transport_error_after_the_retries() -> None:
    waits: list[float] = []
    with HsmcaClient.connect("127.0.0.1:1", retry=FAST, insecure=True, timeout=5,
                             ) as client:
        client_with_recorded_sleep = HsmcaClient(client.channel, retry=FAST, timeout=5,
                                                 sleep=waits.append)
        with pytest.raises(TransportError) as e:
            client_with_recorded_sleep.pca.describe_ca_certificate(identifier="x")
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and e.value.reason == ""
    assert len(waits) == FAST.max_attempts - 1


def test_async_client_retries_the_same_way(scripted: tuple[str, Script]) -> None:
    target, script = scripted
    script.answers = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "LimitExceeded.Calls", 0.3),
                      (grpc.StatusCode.UNAVAILABLE, "", None)]

    async def run() -> str:
        async with AsyncHsmcaClient.connect(target, retry=FAST, insecure=True) as client:
            result = await client.pca.describe_ca_certificate(identifier="ca-async")
            assert result.certificate is not None
            return result.certificate.identifier

    assert asyncio.run(run()) == "ca-async"
    assert len(script.arrivals) == 3
    assert _gaps(script.arrivals)[0] >= 0.3
