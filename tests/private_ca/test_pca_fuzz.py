"""Fuzz the PrivateCa gRPC surface: generated requests, and bytes that are no request.

See tests/grpc_fuzz_support.py for what is generated and checked. The calls go to a
hierarchy of their own, so a revoked or disabled CA cannot disturb other tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from grpc_fuzz_support import TEXT, assert_clean_refusal, build, call_raw, check_call
from grpc_fuzz_support import message_values as values_of
from hypothesis import given
from hypothesis import strategies as st
from pca_support import Hierarchy, Pca, create_hierarchy, make_csr, new_key, snapshot
from test_pca_hostile import raw_csr

from service.gen.hsmca.v1 import private_ca_pb2

SERVICE = private_ca_pb2.DESCRIPTOR.services_by_name["PrivateCa"]
METHODS = list(SERVICE.methods)


@pytest.fixture(scope="module")
def fuzz_ca(pca: Pca) -> Hierarchy:
    return create_hierarchy(pca, "ECC_256")


@pytest.fixture(scope="module")
def hints(fuzz_ca: Hierarchy) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible values by field name, so that calls also get past the first check."""
    h = fuzz_ca
    csrs = [make_csr(new_key("ECC_256"), "fuzz.example.test", ["fuzz.example.test"]),
            make_csr(new_key("ECC_256"), "Fuzz \u00e9 Client"),
            raw_csr([[("2.5.4.3", "a"), ("2.5.4.10", "o")]]),
            raw_csr([])]
    return {
        "parent_identifier": st.sampled_from([h.sub_id, h.sub_id, h.root_id]),
        "identifier": st.sampled_from([h.sub_id, h.root_id]),
        "csr": st.sampled_from(csrs),
        "validity": st.sampled_from(["1d", "30d", "2030-01-01T00:00:00Z", "0d", "9y"]),
        "domain": st.sampled_from(["fuzz.example.test", "*.fuzz.example.test,10.0.0.1",
                                   "*.co.uk", "xn--zz.example"]),
        "algorithm": st.sampled_from(["ECC_256", "RSA_2048", "RSA_1024", "SM2_256"]),
        "common_name": st.sampled_from(["fuzz.example.test", "Fuzz User", "a\u202eb"]),
        "country": st.sampled_from(["CN", "UK", "cn"]),
        "country_code": st.sampled_from(["CN", "UK"]),
        "serial_number": st.sampled_from(["12345678901234567890", "0", "9" * 60]),
        "san_value": st.sampled_from(["ops@fuzz.example.test", "spiffe://fuzz/a",
                                      "javascript:alert(1)"]),
        "status": st.sampled_from(["ISSUE", "REVOKE", "PENDING"]),
        "value": st.sampled_from(["fuzz.example.test", "spiffe://fuzz/x"]),
        "type": st.sampled_from(["dNSName", "uniformResourceIdentifier", "iPAddress"]),
    }


@given(data=st.data())
def test_generated_requests(pca: Pca, hints: dict[str, st.SearchStrategy[Any]],
                            hsm_token: Any, software_token: Any, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS))
    values = data.draw(values_of(method.input_type, hints))
    request = build(method.input_type, values)
    check_call(pca.channel, method, request,
               lambda: snapshot(pca, (hsm_token, software_token)))


@pytest.mark.sqlite_only(reason="refused before any servicer runs: no storage involved")
@given(data=st.data())
def test_undecodable_requests(pca: Pca, fuzz_ca: Hierarchy, data: st.DataObject) -> None:
    """Valid request bytes with invalid UTF-8 spliced in, or random bytes."""
    import grpc
    method = data.draw(st.sampled_from(METHODS))
    prefix = build(method.input_type, data.draw(values_of(method.input_type, {
        "parent_identifier": st.just(fuzz_ca.sub_id)}))).SerializeToString()
    # Field 1 as a length-delimited string holding bytes that are not UTF-8.
    bad_utf8 = b"\x0a\x03\xff\xc0\x80"
    payload = data.draw(st.one_of(st.just(prefix + bad_utf8),
                                  st.binary(min_size=1, max_size=64)))
    try:
        call_raw(pca.channel, method, payload)
    except grpc.RpcError as err:
        assert_clean_refusal(err)


@given(TEXT)
def test_describe_any_identifier(pca: Pca, identifier: str) -> None:
    import grpc
    try:
        pca.stub.DescribeClientCertificate(
            private_ca_pb2.DescribeClientCertificateRequest(identifier=identifier))
    except grpc.RpcError as err:
        assert_clean_refusal(err)
