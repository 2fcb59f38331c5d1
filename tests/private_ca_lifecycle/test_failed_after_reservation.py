"""A FAILED row whose TBS may have been signed: listed with its serial, revocable, on the CRL."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any

from lc_support import fetch_crl_listing
from pca_support import OWNER, Hierarchy

from service.gen.hsmca.v1 import private_ca_pb2 as pb
from service.storage import repo
from service.storage.schema import CertificateKind, CertificateStatus


def test_failed_after_reservation_is_revocable_and_reaches_the_crl(lc: Any, ecc: Hierarchy
                                                                   ) -> None:
    serial = format(int.from_bytes(secrets.token_bytes(16)) >> 1, "x")
    now = dt.datetime.now(dt.UTC)
    row = repo.CertificateRow(
        identifier=str(uuid.uuid4()), owner=OWNER, issuer_identifier=ecc.sub_id,
        status=CertificateStatus.RESERVED, kind=CertificateKind.SERVER, created_at=now,
        updated_at=now, serial=serial, tbs=b"\x30\x03tbs", common_name="failed.example")
    with lc.engine.begin() as conn:
        # Reserved, then the token failed (or the process lost the answer): FAILED.
        repo.reserve_certificate(conn, row)
        assert repo.mark_failed(conn, row.identifier, "GeneralError: the token failed")
    status = lc.stub.DescribeClientCertificateStatus(pb.DescribeClientCertificateStatusRequest(
        identifier=row.identifier)).certificate_status[0]
    assert (status.status, status.serial_number) == ("FAILED", serial)
    lc.stub.CreateRevokeClientCertificate(pb.CreateRevokeClientCertificateRequest(
        identifier=row.identifier, reason_code=1))
    listed = lc.stub.ListRevokeCertificate(pb.ListRevokeCertificateRequest(
        parent_identifier=ecc.sub_id, show_size=100)).certificate_list
    assert [r.serial_number for r in listed if r.identifier == row.identifier] == [serial]
    crl = fetch_crl_listing(f"http://127.0.0.1:{lc.http_port}/crl/{ecc.sub_id}.crl",
                            int(serial, 16))
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
