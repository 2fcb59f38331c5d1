"""The issuance cycle's one place for per-call hooks: IssuanceObserver, and ObserverChain."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cryptography import x509
from pca_support import OWNER, Hierarchy, Pca, make_csr, new_key, snapshot
from sqlalchemy import func, select

from hsm.errors import TokenUnavailable
from service import token_keys
from service.errors import PermissionDenied, TokenOutage
from service.private_ca.issuance import IssuanceEvent, ObserverChain
from service.private_ca.requests import (
    CreateRootCa,
    CreateServerCertificate,
    CreateSubCa,
    IssueCommon,
    SubjectFields,
    ValidityPeriod,
)
from service.private_ca.service import PrivateCaService
from service.storage.schema import certificate as cert_t


@dataclasses.dataclass
class Recorder:
    name: str
    calls: list[tuple[str, str, Any]]
    refuse: bool = False
    refuse_issued: bool = False

    def authorize(self, event: IssuanceEvent) -> None:
        self.calls.append((self.name, "authorize", event))
        if self.refuse:
            raise PermissionDenied("not this one", reason="Forbidden.Test")

    def issued(self, event: IssuanceEvent, certificate: bytes) -> None:
        self.calls.append((self.name, "issued", (event, certificate)))
        if self.refuse_issued:
            raise RuntimeError("the observer failed after the record")

    def failed(self, event: IssuanceEvent, error: BaseException) -> None:
        self.calls.append((self.name, "failed", (event, error)))


def _service(pca: Pca, *observers: Recorder) -> PrivateCaService:
    svc = pca.service
    return PrivateCaService(pca.engine, svc.tokens.hsm, svc.tokens.software,
                            public_base_url="http://127.0.0.1:8080", min_rsa_bits=2048,
                            observer=ObserverChain(*observers))


def _request(h: Hierarchy, cn: str) -> CreateServerCertificate:
    return CreateServerCertificate(IssueCommon(h.sub_id, immediately=1), SubjectFields(),
                                   ValidityPeriod(days=10),
                                   csr=make_csr(new_key("ECC_256"), cn))


def _rows(pca: Pca) -> int:
    with pca.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(cert_t)).scalar_one())


def test_observers_see_the_issuance_in_order_with_what_was_signed(pca: Pca,
                                                                  ecc_ca: Hierarchy) -> None:
    calls: list[tuple[str, str, Any]] = []
    svc = _service(pca, Recorder("authz", calls), Recorder("audit", calls))
    issued = svc.create_server_certificate(OWNER, _request(ecc_ca, "observed.example"))
    assert [(n, what) for n, what, _ in calls] == [
        ("authz", "authorize"), ("audit", "authorize"), ("authz", "issued"),
        ("audit", "issued")]
    event, certificate = calls[-1][2]
    assert event.identifier == issued.identifier and event.serial == issued.serial_number
    assert event.ca_identifier == ecc_ca.sub_id and event.kind == "SERVER"
    assert event.key_id  # the CA key that signed
    assert issued.certificate_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert x509.load_der_x509_certificate(certificate).serial_number == int(
        issued.serial_number, 16)


def test_a_refusal_in_authorize_stores_nothing_and_asks_no_later_observer(
        pca: Pca, ecc_ca: Hierarchy) -> None:
    calls: list[tuple[str, str, Any]] = []
    svc = _service(pca, Recorder("authz", calls, refuse=True), Recorder("metrics", calls))
    before = _rows(pca)
    with pytest.raises(PermissionDenied):
        svc.create_server_certificate(OWNER, _request(ecc_ca, "refused.example"))
    assert [(n, what) for n, what, _ in calls] == [("authz", "authorize")]
    assert _rows(pca) == before
    with pytest.raises(PermissionDenied):
        svc.create_root_ca(OWNER, CreateRootCa(SubjectFields("refused root", country="CN"),
                                               "ECC_256", 1))
    assert _rows(pca) == before


def test_a_failure_after_authorize_reaches_every_observer(pca: Pca, ecc_ca: Hierarchy,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    calls: list[tuple[str, str, Any]] = []
    svc = _service(pca, Recorder("a", calls), Recorder("b", calls))

    def broken(reservation: Any) -> bytes:
        raise RuntimeError("injected")

    monkeypatch.setattr(svc.pipeline, "issue", broken)
    with pytest.raises(RuntimeError):
        svc.create_server_certificate(OWNER, _request(ecc_ca, "failing.example"))
    assert [(n, what) for n, what, _ in calls] == [
        ("a", "authorize"), ("b", "authorize"), ("a", "failed"), ("b", "failed")]
    assert isinstance(calls[-1][2][1], RuntimeError)


def test_ca_creation_failing_before_its_signature_reaches_every_observer(
        pca: Pca, monkeypatch: pytest.MonkeyPatch) -> None:
    # Key generation is the step between authorize and the reservation; a token that
    # fails there must be reported like a failure at any later step.
    calls: list[tuple[str, str, Any]] = []
    svc = _service(pca, Recorder("a", calls), Recorder("b", calls))
    tokens = (svc.tokens.hsm,)
    before = snapshot(pca, tokens)

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise TokenUnavailable("token 'hsmca-hsm' is unavailable: injected")

    monkeypatch.setattr(token_keys, "generate_key_pair", unavailable)
    with pytest.raises(TokenOutage) as refused:
        svc.create_root_ca(OWNER, CreateRootCa(SubjectFields("failing root", country="CN"),
                                               "ECC_256", 1))
    assert [(n, what) for n, what, _ in calls] == [
        ("a", "authorize"), ("b", "authorize"), ("a", "failed"), ("b", "failed")]
    event, error = calls[-1][2]
    assert error is refused.value and event.kind == "ROOTCA" and not event.serial
    assert snapshot(pca, tokens) == before


def test_an_observer_failing_after_a_ca_is_recorded_leaves_its_key(pca: Pca) -> None:
    # issued() runs after the record: the CA exists, so its key must survive the error.
    calls: list[tuple[str, str, Any]] = []
    svc = _service(pca, Recorder("audit", calls, refuse_issued=True))
    with pytest.raises(RuntimeError, match="after the record"):
        svc.create_root_ca(OWNER, CreateRootCa(SubjectFields("observed root", country="CN"),
                                               "ECC_256", 2))
    assert [what for _, what, _ in calls] == ["authorize", "issued", "failed"]
    event, certificate = calls[1][2]
    root = x509.load_der_x509_certificate(certificate)
    assert root.serial_number == int(event.serial, 16)
    # The recorded root still signs: a sub CA under it, through a service without the
    # failing observer, chains to it.
    sub = pca.service.create_sub_ca(OWNER, CreateSubCa(
        event.identifier, SubjectFields("sub of the observed root", country="CN"),
        "ECC_256", 1))
    sub_cert = x509.load_pem_x509_certificate(sub.certificate_pem.encode())
    sub_cert.verify_directly_issued_by(root)
