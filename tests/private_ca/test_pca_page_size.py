"""List pages stay well under a client's 4 MiB, or are refused with a reason.

Measured here: a page of 100 ordinary certificates, and one entry with every bound at its
maximum (100 SANs of 253 characters, 20 tags of 128/256 characters): such entries make a
100-entry page larger than MAX_RESPONSE_BYTES, which is refused with
LimitExceeded.ResponseSize (the client asks for fewer) instead of failing on the wire.
"""

from __future__ import annotations

import grpc
import pytest
from pca_support import Hierarchy, Pca, make_csr, new_key

from service.gen.hsmca.v1 import common_pb2
from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.rpc.client import error_info
from service.rpc.interceptor import MAX_RESPONSE_BYTES

CLIENT_RECEIVE_LIMIT = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def page_ca(pca: Pca) -> Hierarchy:
    from pca_support import create_hierarchy
    return create_hierarchy(pca, "ECC_256")


def test_a_page_of_100_ordinary_certificates(pca: Pca, page_ca: Hierarchy) -> None:
    key = new_key("ECC_256")
    for i in range(100):
        pca.stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
            parent_identifier=page_ca.sub_id, csr=make_csr(key, f"h{i}.page.example.test"),
            days=1, immediately=1, tags=[common_pb2.Tag(key="page", value="ordinary")]))
    page = pca.stub.ListClientCertificate(pb.ListClientCertificateRequest(
        show_size=100, tags=[common_pb2.Tag(key="page", value="ordinary")]))
    assert len(page.certificate_list) == 100
    print(f"\n[page] 100 ordinary certificates: {page.ByteSize()} bytes")
    assert page.ByteSize() < CLIENT_RECEIVE_LIMIT // 4  # well under


def _long_name(i: int) -> str:
    tail = f"{i:03d}.page.example.test"
    return ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * (253 - 3 * 64 - len(tail) - 1)]) \
        + "." + tail


def test_an_entry_at_every_bound(pca: Pca, page_ca: Hierarchy) -> None:
    tags = [common_pb2.Tag(key=f"max{i:02d}" + "k" * 123, value="v" * 256) for i in range(20)]
    pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
        parent_identifier=page_ca.sub_id, csr=make_csr(new_key("ECC_256"), "max"),
        validity="1d", immediately=1, tags=tags, resource_group_id="r" * 128,
        api_passthrough=pb.ApiPassthrough(extensions=pb.Extensions(
            subject_alternative_names=[pb.SubjectAlternativeName(type="dNSName",
                                                                 value=_long_name(i))
                                       for i in range(100)]))))
    page = pca.stub.ListClientCertificate(pb.ListClientCertificateRequest(
        show_size=100, tags=tags[:1]))
    entry = page.ByteSize()
    print(f"\n[page] one entry at every bound: {entry} bytes; "
          f"{MAX_RESPONSE_BYTES // entry} such entries fit a response")
    assert entry < MAX_RESPONSE_BYTES // 20


def test_an_oversized_page_is_refused_with_a_reason(pca: Pca, page_ca: Hierarchy) -> None:
    """Enough entries at the bounds: the page is refused, the client reads why."""
    san = [pb.SubjectAlternativeName(type="dNSName", value=_long_name(i)) for i in range(100)]
    tags = [common_pb2.Tag(key="big", value="v" * 256)] + [
        common_pb2.Tag(key=f"t{i:02d}" + "k" * 125, value="v" * 256) for i in range(19)]
    size = 0
    while True:
        pca.stub.CreateCustomCertificate(pb.CreateCustomCertificateRequest(
            parent_identifier=page_ca.sub_id, csr=make_csr(new_key("ECC_256"), "big"),
            validity="1d", immediately=1, tags=tags,
            api_passthrough=pb.ApiPassthrough(extensions=pb.Extensions(
                subject_alternative_names=san))))
        try:
            size = pca.stub.ListClientCertificate(pb.ListClientCertificateRequest(
                show_size=100, tags=tags[:1])).ByteSize()
        except grpc.RpcError as err:
            assert error_info(err) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       "LimitExceeded.ResponseSize")
            break
        assert size <= MAX_RESPONSE_BYTES
