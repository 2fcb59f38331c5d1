"""Fuzz the KmsCertificates gRPC surface (see tests/grpc_fuzz_support.py)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_fuzz_support import assert_clean_refusal, build, call_raw, check_call
from grpc_fuzz_support import message_values as values_of
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from service.gen.hsmca.v1 import kms_pb2
from service.storage.schema import kms_certificate

SERVICE = kms_pb2.DESCRIPTOR.services_by_name["KmsCertificates"]
METHODS = list(SERVICE.methods)


@pytest.fixture(scope="module")
def hints(kms: Any) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible values by field name: a certificate of the fuzz run's own, a valid subject."""
    created = kms.stub.CreateCertificate(kms_pb2.CreateCertificateRequest(
        key_spec="EC_P256", subject="CN=fuzz,OU=kms,O=hsmca,C=CN"))
    return {
        "certificate_id": st.just(created.certificate_id),
        "key_spec": st.sampled_from(["EC_P256", "RSA_2048", "EC_SM2", "RSA_1024"]),
        "subject": st.sampled_from(["CN=fuzz,OU=kms,O=hsmca,C=CN", "CN=a\\00,OU=k,O=h,C=CN",
                                    "CN=a+CN=b,OU=k,O=h,C=CN"]),
        "protection_level": st.sampled_from(["SOFTWARE", "HSM"]),
        "algorithm": st.sampled_from(["ECDSA_SHA_256", "RSA_PSS_SHA_256", "SM2DSA"]),
        "message_type": st.sampled_from(["RAW", "DIGEST"]),
        "status": st.sampled_from(["INACTIVE", "ACTIVE", "REVOKED"]),
    }


def _snapshot(kms: Any) -> tuple[int, ...]:
    with kms.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(kms_certificate)).scalar_one()
    objects = [t.run(lambda s: len(list(s.get_objects())))
               for t in (kms.hsm_token, kms.software_token)]
    return (rows, *objects)


@given(data=st.data())
def test_generated_requests(kms: Any, hints: dict[str, st.SearchStrategy[Any]],
                            data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS))
    request = build(method.input_type, data.draw(values_of(method.input_type, hints)))
    check_call(kms.channel, method, request, lambda: _snapshot(kms))


@pytest.mark.sqlite_only(reason="refused before any servicer runs: no storage involved")
@given(data=st.data())
def test_undecodable_requests(kms: Any, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS))
    payload = data.draw(st.one_of(st.just(b"\x0a\x03\xff\xc0\x80"),
                                  st.binary(min_size=1, max_size=64)))
    try:
        call_raw(kms.channel, method, payload)
    except grpc.RpcError as err:
        assert_clean_refusal(err)
