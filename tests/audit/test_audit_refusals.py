"""Calls the perimeter refuses (authentication, authorization, rate limit) are audited with
the identity the caller claimed, and counted in hsmca_refusals_total."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from audit_support import installed_audit_log
from sqlalchemy import Engine

from service import metrics
from service.audit.verify import list_records
from service.auth.principal import Principal
from service.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from service.gen.hsmca.v1 import kms_pb2, kms_pb2_grpc
from service.kms.service import KmsCertificatesService
from service.rpc.server import build_server, graceful_stop
from service.servicers.kms import kms_servicer_pair

REFUSALS = {
    "authn": Unauthenticated("the client certificate is revoked",
                             reason="Unauthenticated.CertificateRevoked"),
    "authz": PermissionDenied("not allowed", reason="Forbidden.Action"),
    "rate_limit": ResourceExhausted("slow down", reason="LimitExceeded.Rate"),
}


class Refusing:
    """A perimeter that refuses every call with the error chosen by the test."""

    def __init__(self) -> None:
        self.error: Exception = REFUSALS["authz"]

    def admit(self, action: str, peer_pem: bytes | None) -> tuple[Principal, Any]:
        raise self.error

    def identify(self, peer_pem: bytes | None) -> tuple[str | None, str | None]:
        return "spiffe://test/mallory", None  # an id no policy knows


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_refused_call_is_audited_and_counted(kind: str, engine: Engine, hsm_token: Any,
                                               software_token: Any) -> None:
    perimeter = Refusing()
    perimeter.error = REFUSALS[kind]
    service = KmsCertificatesService(engine, hsm_token, software_token, region="cn-test",
                                     account_id="123456789012")
    server, port = build_server([kms_servicer_pair(service)], "127.0.0.1:0", max_workers=2,
                                reuse_port=False, perimeter=perimeter)  # type: ignore[arg-type]
    server.start()
    before = metrics.REFUSALS.labels(kind)._value.get()
    try:
        with installed_audit_log(engine, hsm_token) as log, \
                grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError):
                kms_pb2_grpc.KmsCertificatesStub(channel).ListCertificates(
                    kms_pb2.ListCertificatesRequest(), timeout=10)
            with engine.connect() as conn:
                (record,) = [r for r in list_records(conn, action=f"refused.{kind}")
                             if r.writer == log.writer]
    finally:
        graceful_stop(server, 0)
    assert record.outcome == "REFUSED"
    assert record.principal == "spiffe://test/mallory"
    assert record.reason == REFUSALS[kind].reason  # type: ignore[attr-defined]
    assert json.loads(record.details) == {
        "method": "/hsmca.v1.KmsCertificates/ListCertificates"}
    assert record.request_id  # the refused call's, as in its status details
    assert metrics.REFUSALS.labels(kind)._value.get() == before + 1
