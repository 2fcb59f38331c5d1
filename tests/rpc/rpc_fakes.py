"""Tiny test servicers and the handle of a running in-process server (no token, no database).

The servicers exercise only the transport plumbing of service/rpc: the error mapping, the
request id and the server extras. Domain servicers are tested elsewhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc

from service import errors
from service.gen.hsmca.v1 import (
    kms_pb2_grpc,
    private_ca_pb2,
    private_ca_pb2_grpc,
)
from service.rpc.interceptor import current_request_id

# identifier -> error class the test servicer raises; covers every errors.Status member.
ERROR_CASES: dict[str, type[errors.HsmcaError]] = {
    "invalid": errors.InvalidArgument,
    "missing": errors.NotFound,
    "exists": errors.AlreadyExists,
    "precondition": errors.FailedPrecondition,
    "denied": errors.PermissionDenied,
    "exhausted": errors.ResourceExhausted,
    "unavailable": errors.Unavailable,
    "unauthenticated": errors.Unauthenticated,
    "internal": errors.Internal,
}

SECRET = "secret detail: /var/lib/hsm pin=1234"


# Generated servicers are Any to mypy (service.gen is skipped), hence the ignores.
class FakePrivateCa(private_ca_pb2_grpc.PrivateCaServicer):  # type: ignore[misc]
    """DescribeCACertificate acts on request.identifier; every other RPC is UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.release_slow = threading.Event()

    def DescribeCACertificate(
        self,
        request: private_ca_pb2.DescribeCACertificateRequest,
        context: grpc.ServicerContext,
    ) -> private_ca_pb2.DescribeCACertificateResponse:
        ident = request.identifier
        if ident in ERROR_CASES:
            cls = ERROR_CASES[ident]
            raise cls(f"test {cls.__name__} {SECRET if ident == 'internal' else ''}".strip(),
                      reason=f"Test.{cls.__name__}")
        if ident == "notfound-default-reason":
            raise errors.NotFound("no such CA")
        if ident == "boom":
            raise ValueError(SECRET)
        if ident == "token-down":
            from hsm.errors import TokenUnavailable

            raise TokenUnavailable("token 'hsmca-hsm' is unavailable: GeneralError")
        if ident == "database-down":
            from sqlalchemy.exc import OperationalError

            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        if ident == "sql-bug":
            from sqlalchemy.exc import ProgrammingError

            raise ProgrammingError("SELEC 1", {}, Exception(SECRET))
        if ident == "abort":
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "servicer chose this")
        if ident == "preset":
            return private_ca_pb2.DescribeCACertificateResponse(request_id="servicer-set")
        if ident == "slow":
            self.release_slow.wait(10)
        # Success: echo the request id the servicer sees, so the test can compare it.
        return private_ca_pb2.DescribeCACertificateResponse(
            certificate=private_ca_pb2.CACertificate(identifier=current_request_id())
        )


class EmptyKms(kms_pb2_grpc.KmsCertificatesServicer):  # type: ignore[misc]
    """Registers the KmsCertificates service; every method is UNIMPLEMENTED."""


@dataclass
class RunningServer:
    """A started in-process server and a channel to it."""

    server: grpc.Server
    port: int
    channel: grpc.Channel
    private_ca: FakePrivateCa

    @property
    def pca(self) -> private_ca_pb2_grpc.PrivateCaStub:
        """A PrivateCa stub on the channel."""
        return private_ca_pb2_grpc.PrivateCaStub(self.channel)
