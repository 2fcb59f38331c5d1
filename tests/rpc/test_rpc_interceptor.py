"""The interceptor: error family -> gRPC status + ErrorInfo, INTERNAL hiding, request ids."""

from __future__ import annotations

import logging
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rpc_fakes import ERROR_CASES, SECRET, RunningServer

from service import errors
from service.gen.hsmca.v1 import private_ca_pb2
from service.rpc.client import error_info, request_id
from service.rpc.interceptor import ERROR_DOMAIN, GRPC_CODES

Req = private_ca_pb2.DescribeCACertificateRequest


def _fail(running: RunningServer, identifier: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        running.pca.DescribeCACertificate(Req(identifier=identifier), timeout=10)
    return info.value


def test_error_cases_cover_every_status() -> None:
    assert {cls.status for cls in ERROR_CASES.values()} == set(errors.Status)
    assert set(GRPC_CODES) == set(errors.Status)


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("missing", grpc.StatusCode.NOT_FOUND),
        ("exists", grpc.StatusCode.ALREADY_EXISTS),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION),
        ("denied", grpc.StatusCode.PERMISSION_DENIED),
        ("exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("unavailable", grpc.StatusCode.UNAVAILABLE),
        ("internal", grpc.StatusCode.INTERNAL),
    ],
)
def test_error_maps_to_status_and_reason(
    running: RunningServer, identifier: str, code: grpc.StatusCode
) -> None:
    err = _fail(running, identifier)
    cls = ERROR_CASES[identifier]
    assert error_info(err) == (code, f"Test.{cls.__name__}")
    rid = request_id(err)
    assert uuid.UUID(rid).version == 4
    if code is grpc.StatusCode.INTERNAL:
        assert err.details() == f"internal error; request_id={rid}"
        assert "secret" not in err.details()
    else:
        assert err.details() == f"test {cls.__name__}"

    # The rich status: ErrorInfo in our domain, RequestInfo with the same request id.
    status = rpc_status.from_call(err)
    assert status is not None
    infos, requests = [], []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            infos.append(error_details_pb2.ErrorInfo())
            detail.Unpack(infos[-1])
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            requests.append(error_details_pb2.RequestInfo())
            detail.Unpack(requests[-1])
    assert [i.domain for i in infos] == [ERROR_DOMAIN]
    assert infos[0].metadata["request_id"] == rid
    assert [r.request_id for r in requests] == [rid]


def test_default_reason(running: RunningServer) -> None:
    err = _fail(running, "notfound-default-reason")
    assert error_info(err) == (grpc.StatusCode.NOT_FOUND, "NotFound")
    assert err.details() == "no such CA"


def test_unknown_exception_is_internal_and_hidden(
    running: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hsmca.rpc"):
        err = _fail(running, "boom")
    rid = request_id(err)
    assert error_info(err) == (grpc.StatusCode.INTERNAL, "InternalError")
    assert err.details() == f"internal error; request_id={rid}"
    assert SECRET not in err.details()
    assert SECRET not in str(err.trailing_metadata())
    # The details go to the log, with the traceback and the request id.
    logged = [r for r in caplog.records if r.exc_info and rid in r.getMessage()]
    exc_info = logged[0].exc_info if logged else None
    assert exc_info is not None and isinstance(exc_info[1], ValueError)
    summary = [r.getMessage() for r in caplog.records if "code=INTERNAL" in r.getMessage()]
    assert summary and "DescribeCACertificate" in summary[0] and rid in summary[0]


def test_success_has_request_id_everywhere(
    running: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hsmca.rpc"):
        response, call = running.pca.DescribeCACertificate.with_call(
            Req(identifier="ok"), timeout=10
        )
    rid = response.request_id
    assert uuid.UUID(rid).version == 4
    # The servicer saw the same id through current_request_id(), and it is in the trailer.
    assert response.certificate.identifier == rid
    assert request_id(call) == rid
    assert any(
        "code=OK" in r.getMessage() and rid in r.getMessage() and "duration_ms=" in r.getMessage()
        for r in caplog.records
    )


def test_request_ids_are_unique(running: RunningServer) -> None:
    ids = {running.pca.DescribeCACertificate(Req(identifier="ok")).request_id for _ in range(5)}
    assert len(ids) == 5


def test_servicer_set_request_id_is_kept(running: RunningServer) -> None:
    response = running.pca.DescribeCACertificate(Req(identifier="preset"), timeout=10)
    assert response.request_id == "servicer-set"


def test_status_chosen_by_grpc_is_kept(running: RunningServer) -> None:
    # The generated base class answers UNIMPLEMENTED; that must not turn into INTERNAL.
    with pytest.raises(grpc.RpcError) as info:
        running.pca.DeleteClientCertificate(
            private_ca_pb2.DeleteClientCertificateRequest(identifier="x"), timeout=10
        )
    assert error_info(info.value) == (grpc.StatusCode.UNIMPLEMENTED, "")
    assert uuid.UUID(request_id(info.value))

    err = _fail(running, "abort")
    assert err.code() is grpc.StatusCode.OUT_OF_RANGE
    assert err.details() == "servicer chose this"


@pytest.mark.parametrize(
    ("identifier", "reason"),
    [("token-down", "ServiceUnavailable.Token"), ("database-down", "ServiceUnavailable.Database")],
)
def test_outages_raised_anywhere_are_unavailable(
    running: RunningServer, identifier: str, reason: str
) -> None:
    # Raised as the token layer and the database driver raise them, not as HsmcaErrors.
    err = _fail(running, identifier)
    assert error_info(err) == (grpc.StatusCode.UNAVAILABLE, reason)
    assert "unavailable" in err.details()


def test_a_database_error_that_is_no_outage_stays_internal(running: RunningServer) -> None:
    err = _fail(running, "sql-bug")
    assert error_info(err) == (grpc.StatusCode.INTERNAL, "InternalError")
    assert "secret" not in err.details()
