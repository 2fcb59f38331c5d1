"""Row factories for storage tests: valid rows with overridable fields."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from service.storage.repo import CaRow, CertificateRow, KmsCertificateRow

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def ca_row(owner: str = "default", **overrides: Any) -> CaRow:
    row = CaRow(
        identifier=new_id(),
        owner=owner,
        kind="ROOT",
        common_name="Test Root",
        subject_der=b"\x30\x00",
        algorithm="ECC_256",
        key_token="hsm",
        key_id="0a0b",
        public_key_info=b"\x30\x01\x00",
        serial="1a2b",
        not_before=T0,
        not_after=T0 + dt.timedelta(days=3650),
        status="ISSUE",
        created_at=T0,
        updated_at=T0,
        certificate=b"\x30\x02\x00\x00",
        enable_crl=True,
        crl_day=7,
        tags={"env": "test"},
    )
    return dataclasses.replace(row, **overrides)


def reserved_cert(issuer: CaRow, serial: str, **overrides: Any) -> CertificateRow:
    row = CertificateRow(
        identifier=new_id(),
        owner=issuer.owner,
        issuer_identifier=issuer.identifier,
        status="RESERVED",
        kind="SERVER",
        created_at=T0,
        updated_at=T0,
        serial=serial,
        tbs=b"\x30\x03tbs",
        common_name="www.example.com",
        subject_der=b"\x30\x00",
        sans=(("dNSName", "www.example.com"), ("iPAddress", "192.0.2.1")),
        not_before=T0,
        not_after=T0 + dt.timedelta(days=90),
    )
    return dataclasses.replace(row, **overrides)


def pending_job(issuer: CaRow, **overrides: Any) -> CertificateRow:
    row = CertificateRow(
        identifier=new_id(),
        owner=issuer.owner,
        issuer_identifier=issuer.identifier,
        status="PENDING",
        kind="CLIENT",
        created_at=T0,
        updated_at=T0,
        asynchronous=True,
        request={"common_name": "alice", "days": 30},
        request_fingerprint="f" * 64,
    )
    return dataclasses.replace(row, **overrides)


def kms_row(owner: str = "default", **overrides: Any) -> KmsCertificateRow:
    cid = new_id()
    row = KmsCertificateRow(
        certificate_id=cid,
        owner=owner,
        arn=f"acs:kms:cn-local:000000000000:certificate/{cid}",
        key_spec="EC_P256",
        protection_level="HSM",
        exportable_private_key=False,
        key_token="hsm",
        key_id="beef",
        subject="CN=user,OU=kms,O=example,C=CN",
        csr="-----BEGIN CERTIFICATE REQUEST-----\n...\n-----END CERTIFICATE REQUEST-----\n",
        subject_public_key=b"\x30\x00",
        status="PENDING",
        created_at=T0,
        updated_at=T0,
        subject_alternative_names=("a.example.com", "b.example.com"),
        tags={"team": "x"},
    )
    return dataclasses.replace(row, **overrides)
