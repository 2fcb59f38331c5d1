"""KMS Certificates over the real gRPC API, real SoftHSM tokens and the OpenSSL CLI.

Each KeySpec x ProtectionLevel x ExportablePrivateKey: the CSR verifies and carries the
subject and SANs, token keys carry the attributes the level promises, a certificate from an
OpenSSL CA uploads, signatures verify with OpenSSL, encryption round-trips, export works
only for exportable keys (and the token itself refuses the others), delete removes the key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from kms_api_support import (
    CA_EXTENSIONS,
    COMBO_IDS,
    COMBOS,
    DISTID,
    LEAF_EXTENSIONS,
    Combo,
    Issued,
    OpensslCa,
    openssl,
    rpc_error,
)
from pkcs11 import Attribute, ObjectClass

from hsm import export as hsm_export
from hsm import keys as hsm_keys
from service.gen.hsmca.v1 import kms_pb2
from service.kms.sm2 import sm2_compute_e
from service.storage import repo

SUBJECT = r"CN=kms user\, test,OU=kms,O=hsmca,L=Hangzhou,ST=Zhejiang,C=CN"
SANS = ["a.example.com", "*.b.example.com"]
MESSAGE = b"the quick brown fox " * 40
PASSPHRASE = "correct horse battery staple"


def _row(kms: Any, certificate_id: str) -> repo.KmsCertificateRow:
    with kms.engine.connect() as conn:
        row = repo.get_kms_certificate(conn, "default", certificate_id)
    assert row is not None
    return row


def _token(kms: Any, row: repo.KmsCertificateRow) -> Any:
    return kms.hsm_token if row.protection_level == "HSM" else kms.software_token


def _create(kms: Any, combo: Combo, subject: str = SUBJECT) -> kms_pb2.CreateCertificateResponse:
    return kms.stub.CreateCertificate(
        kms_pb2.CreateCertificateRequest(
            key_spec=combo.key_spec,
            subject=subject,
            subject_alternative_names=SANS,
            exportable_private_key=combo.exportable,
            protection_level=combo.protection_level,
        )
    )


def _upload(kms: Any, certificate_id: str, certificate: str, chain: str) -> None:
    kms.stub.UploadCertificate(
        kms_pb2.UploadCertificateRequest(
            certificate_id=certificate_id, certificate=certificate, certificate_chain=chain
        )
    )


class Issuer:
    """Creates KMS certificates over the API and uploads OpenSSL-issued certificates."""

    def __init__(self, kms: Any, ca: OpensslCa, sm2_ca: OpensslCa, root: Path) -> None:
        self.kms, self.ca, self.sm2_ca, self.root = kms, ca, sm2_ca, root
        self._active: dict[Combo, Issued] = {}

    def ca_for(self, combo: Combo) -> OpensslCa:
        return self.sm2_ca if combo.key_spec == "EC_SM2" else self.ca

    def fresh(self, combo: Combo, *, upload: bool = True) -> Issued:
        created = _create(self.kms, combo)
        directory = self.root / created.certificate_id
        directory.mkdir()
        certificate = ""
        if upload:
            ca = self.ca_for(combo)
            certificate = ca.issue(created.csr)
            _upload(self.kms, created.certificate_id, certificate, ca.chain_pem)
            (directory / "cert.pem").write_text(certificate)
            openssl("x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem",
                    cwd=directory)
        return Issued(combo, created.certificate_id, created.csr, certificate, directory)

    def active(self, combo: Combo) -> Issued:
        """An ACTIVE certificate for ``combo``, shared by the tests that only use it."""
        if combo not in self._active:
            self._active[combo] = self.fresh(combo)
        return self._active[combo]


@pytest.fixture(scope="session")
def issuer(
    kms: Any, ca: OpensslCa, sm2_ca: OpensslCa, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Issuer]:
    yield Issuer(kms, ca, sm2_ca, tmp_path_factory.mktemp("issued"))


# --- CreateCertificate + UploadCertificate, for every combination --------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_create_and_upload(kms: Any, issuer: Issuer, combo: Combo, tmp_path: Path) -> None:
    created = _create(kms, combo)
    assert created.arn == f"acs:kms:cn-test:123456789012:certificate/{created.certificate_id}"
    assert created.request_id

    # The CSR verifies with OpenSSL and carries exactly the requested subject and SANs.
    (tmp_path / "req.pem").write_text(created.csr)
    vfy = ["-vfyopt", DISTID] if combo.key_spec == "EC_SM2" else []
    verified = openssl("req", "-in", "req.pem", "-verify", "-noout", *vfy, cwd=tmp_path)
    assert "verify OK" in verified.stdout + verified.stderr
    shown = openssl("req", "-in", "req.pem", "-noout", "-subject", "-nameopt", "RFC2253",
                    cwd=tmp_path).stdout
    assert shown.strip() == f"subject={SUBJECT}"
    text = openssl("req", "-in", "req.pem", "-noout", "-text", cwd=tmp_path).stdout
    assert "DNS:a.example.com, DNS:*.b.example.com" in text

    row = _row(kms, created.certificate_id)
    assert row.status == "PENDING"
    if combo.key_spec == "EC_SM2":
        # No SM2 in SoftHSM: the key exists only sealed under the software token's key.
        assert row.wrapped_private_key is not None
        assert b"PRIVATE KEY" not in row.wrapped_private_key
        assert not hsm_keys.key_exists(kms.software_token, bytes.fromhex(row.key_id))
    else:
        attrs = hsm_keys.read_key_attributes(_token(kms, row), bytes.fromhex(row.key_id))
        assert attrs.token and attrs.private and attrs.sensitive and attrs.local
        assert attrs.sign and attrs.decrypt == (combo.key_spec == "RSA_2048")
        assert not attrs.unwrap and not attrs.derive
        if combo.exportable:
            assert attrs.extractable
        else:
            assert not attrs.extractable
            assert attrs.always_sensitive and attrs.never_extractable
            assert attrs.proves_non_exportable

    # A certificate for the CSR, issued by an OpenSSL CA via an intermediate, uploads.
    ca = issuer.ca_for(combo)
    certificate = ca.issue(created.csr)
    _upload(kms, created.certificate_id, certificate, ca.chain_pem)
    described = kms.stub.DescribeCertificate(
        kms_pb2.DescribeCertificateRequest(certificate_id=created.certificate_id)
    )
    cert = x509.load_pem_x509_certificate(certificate.encode())
    assert described.status == "ACTIVE"
    assert described.key_spec == combo.key_spec
    assert described.protection_level == combo.protection_level
    assert described.exportable_private_key is combo.exportable
    assert described.subject == SUBJECT
    assert list(described.subject_alternative_names) == SANS
    assert described.issuer == "CN=Test Intermediate,O=hsmca tests,C=CN"
    assert described.serial == format(cert.serial_number, "x")
    assert described.not_after == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert described.subject_key_identifier == ski.hex()
    assert described.signature_algorithm == (
        "SM3WithSM2" if combo.key_spec == "EC_SM2" else "SHA256WithECDSA"
    )
    got = kms.stub.GetCertificate(
        kms_pb2.GetCertificateRequest(certificate_id=created.certificate_id)
    )
    assert x509.load_pem_x509_certificate(got.certificate.encode()) == cert
    assert len(x509.load_pem_x509_certificates(got.certificate_chain.encode())) == 2
    assert got.csr == created.csr


def test_hsm_default_is_non_exportable(kms: Any) -> None:
    created = kms.stub.CreateCertificate(
        kms_pb2.CreateCertificateRequest(
            key_spec="EC_P256", subject="CN=a,OU=b,O=c,C=CN", protection_level="HSM"
        )
    )
    row = _row(kms, created.certificate_id)
    assert row.exportable_private_key is False
    attrs = hsm_keys.read_key_attributes(kms.hsm_token, bytes.fromhex(row.key_id))
    assert attrs.proves_non_exportable


def test_software_default_is_exportable(kms: Any) -> None:
    created = kms.stub.CreateCertificate(
        kms_pb2.CreateCertificateRequest(key_spec="EC_P256", subject="CN=a,OU=b,O=c,C=CN")
    )
    row = _row(kms, created.certificate_id)
    assert (row.protection_level, row.exportable_private_key) == ("SOFTWARE", True)


@pytest.mark.parametrize(
    ("key_spec", "exportable", "code", "reason"),
    [
        ("EC_SM2", False, grpc.StatusCode.FAILED_PRECONDITION,
         "UnsupportedOperation.HsmSm2Mechanism"),
        ("RSA_2048", True, grpc.StatusCode.INVALID_ARGUMENT,
         "InvalidParameter.ExportablePrivateKey"),
        ("EC_P256", True, grpc.StatusCode.INVALID_ARGUMENT,
         "InvalidParameter.ExportablePrivateKey"),
    ],
)
def test_hsm_refusals(
    kms: Any, key_spec: str, exportable: bool, code: grpc.StatusCode, reason: str
) -> None:
    before = _private_key_count(kms.hsm_token)
    request = kms_pb2.CreateCertificateRequest(
        key_spec=key_spec, subject="CN=a,OU=b,O=c,C=CN", protection_level="HSM",
        exportable_private_key=exportable,
    )
    assert rpc_error(kms.stub.CreateCertificate, request) == (code, reason)
    assert _private_key_count(kms.hsm_token) == before


def test_sm2_hsm_error_names_the_missing_mechanism(kms: Any) -> None:
    request = kms_pb2.CreateCertificateRequest(
        key_spec="EC_SM2", subject="CN=a,OU=b,O=c,C=CN", protection_level="HSM"
    )
    with pytest.raises(grpc.RpcError) as info:
        kms.stub.CreateCertificate(request)
    assert "no SM2 mechanism" in info.value.details()


def _private_key_count(token: Any) -> int:
    return token.run(
        lambda s: len(list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})))
    )


def test_failed_insert_destroys_the_key(
    hsm_token: Any, software_token: Any, tmp_path: Path
) -> None:
    """Nothing half-done: if the record cannot be stored, the new token key is destroyed."""
    from service.kms.service import KmsCertificatesService
    from service.storage.db import create_engine_for

    # Not migrated: the INSERT fails after the key and CSR were made.
    engine = create_engine_for(f"sqlite:///{tmp_path / 'empty.db'}")
    service = KmsCertificatesService(
        engine, hsm_token, software_token, region="cn-test", account_id="1"
    )
    before = _private_key_count(software_token)
    with pytest.raises(Exception, match="no such table"):
        service.create_certificate(
            "default", key_spec="EC_P256", subject="CN=a,OU=b,O=c,C=CN"
        )
    assert _private_key_count(software_token) == before
    engine.dispose()


# --- UploadCertificate refusals ------------------------------------------------------------


def test_upload_of_a_certificate_for_another_key_is_refused(
    kms: Any, issuer: Issuer, ca: OpensslCa
) -> None:
    combo = Combo("EC_P256", "SOFTWARE", True)
    target = issuer.fresh(combo, upload=False)
    other = issuer.active(combo)
    request = kms_pb2.UploadCertificateRequest(
        certificate_id=target.certificate_id,
        certificate=other.certificate,
        certificate_chain=ca.chain_pem,
    )
    assert rpc_error(kms.stub.UploadCertificate, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "InvalidParameter.Certificate",
    )
    row = _row(kms, target.certificate_id)
    assert (row.status, row.certificate) == ("PENDING", None)


def _cut(pem: str) -> str:
    """``pem`` as a copy-paste truncation leaves it: last base64 line and END line lost."""
    return "\n".join(pem.splitlines()[:-2]) + "\n"


END = "-----END CERTIFICATE-----\n"

# Chains that must be refused, with nothing stored. The PEM cases are all ones a lax parser
# (asn1crypto's unarmor) reads as a shorter chain or ignores: a block must be complete.
BROKEN_CHAINS: dict[str, Callable[[OpensslCa, OpensslCa], str]] = {
    "other": lambda ca, other: other.chain_pem,  # names differ from the issuer
    "root_only": lambda ca, other: ca.root_pem,  # the intermediate is missing
    "reversed": lambda ca, other: ca.root_pem + ca.intermediate_pem,
    "garbage": lambda ca, other: "-----BEGIN CERTIFICATE-----\nAAAA\n" + END,
    "pem: root cut short": lambda ca, other: ca.intermediate_pem + _cut(ca.root_pem),
    "pem: intermediate cut short": lambda ca, other: _cut(ca.intermediate_pem) + ca.root_pem,
    "pem: END label differs": lambda ca, other: ca.intermediate_pem + ca.root_pem.replace(
        END, "-----END X509 CRL-----\n"
    ),
    "pem: stray END line": lambda ca, other: ca.chain_pem + END,
    "pem: text between blocks": lambda ca, other: ca.intermediate_pem + "root:\n" + ca.root_pem,
    "pem: a CSR block": lambda ca, other: ca.chain_pem + (ca.directory / "int.csr").read_text(),
}


@pytest.mark.parametrize("chain", BROKEN_CHAINS)
def test_upload_with_a_broken_chain_is_refused(
    kms: Any, issuer: Issuer, ca: OpensslCa, other_ca: OpensslCa, chain: str
) -> None:
    combo = Combo("EC_P256", "SOFTWARE", True)
    target = issuer.fresh(combo, upload=False)
    certificate = ca.issue(target.csr)
    request = kms_pb2.UploadCertificateRequest(
        certificate_id=target.certificate_id,
        certificate=certificate,
        certificate_chain=BROKEN_CHAINS[chain](ca, other_ca),
    )
    assert rpc_error(kms.stub.UploadCertificate, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "InvalidParameter.CertificateChain",
    )
    row = _row(kms, target.certificate_id)
    assert (row.status, row.certificate, row.certificate_chain) == ("PENDING", None, None)


# Certificate fields that must be refused: exactly one complete CERTIFICATE block.
BAD_CERTIFICATES: dict[str, Callable[[str, OpensslCa], str]] = {
    "two certificates": lambda cert, ca: cert + ca.intermediate_pem,
    "second block cut short": lambda cert, ca: cert + _cut(ca.intermediate_pem),
    "cut short": lambda cert, ca: _cut(cert),
    "END label differs": lambda cert, ca: cert.replace(END, "-----END X509 CRL-----\n"),
    "stray END line": lambda cert, ca: cert + END,
    "text before the block": lambda cert, ca: "subject=CN=kms user\n" + cert,
    "a CSR block": lambda cert, ca: (ca.directory / "int.csr").read_text(),
}


@pytest.mark.parametrize("certificate", BAD_CERTIFICATES)
def test_upload_of_a_malformed_certificate_is_refused(
    kms: Any, issuer: Issuer, ca: OpensslCa, certificate: str
) -> None:
    combo = Combo("EC_P256", "SOFTWARE", True)
    target = issuer.fresh(combo, upload=False)
    request = kms_pb2.UploadCertificateRequest(
        certificate_id=target.certificate_id,
        certificate=BAD_CERTIFICATES[certificate](ca.issue(target.csr), ca),
        certificate_chain=ca.chain_pem,
    )
    assert rpc_error(kms.stub.UploadCertificate, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "InvalidParameter.Certificate",
    )
    row = _row(kms, target.certificate_id)
    assert (row.status, row.certificate, row.certificate_chain) == ("PENDING", None, None)


@pytest.mark.parametrize("key_spec", ["EC_P256", "EC_SM2"])
def test_upload_with_a_forged_signature_is_refused(
    kms: Any, issuer: Issuer, key_spec: str, tmp_path: Path
) -> None:
    """Same issuer *name* as the real intermediate, another key: the signature check fails."""
    combo = Combo(key_spec, "SOFTWARE", True)
    target = issuer.fresh(combo, upload=False)
    sm2 = key_spec == "EC_SM2"
    forger = OpensslCa.make(tmp_path / "forger", sm2=sm2)  # same DNs, different keys
    request = kms_pb2.UploadCertificateRequest(
        certificate_id=target.certificate_id,
        certificate=forger.issue(target.csr),
        certificate_chain=issuer.ca_for(combo).chain_pem,
    )
    assert rpc_error(kms.stub.UploadCertificate, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "InvalidParameter.CertificateChain",
    )


_SKI_AKI = "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
_CA = "basicConstraints = critical, CA:TRUE\n"
_CA_KU = "keyUsage = critical, keyCertSign, cRLSign\n"
_PATHLEN_0 = ("pathlen0", "basicConstraints = critical, CA:TRUE, pathlen:0\n" + _CA_KU + _SKI_AKI)

# Issuers below the intermediate, top down; the last one issues the uploaded certificate.
# RFC 5280 6.1.4: every issuer needs cA=TRUE (k), keyCertSign if it has keyUsage (n), and
# no more non-self-issued intermediates below it than its pathLenConstraint (l), (m).
NOT_ISSUERS: dict[str, list[tuple[str, str]]] = {
    "end-entity certificate": [("ee", LEAF_EXTENSIONS)],
    "no basicConstraints": [("no-bc", _CA_KU + _SKI_AKI)],
    "cA=FALSE with keyCertSign": [("ca-false", "basicConstraints = critical, CA:FALSE\n"
                                   + _CA_KU + _SKI_AKI)],
    "CA without keyCertSign": [("no-kcs", _CA + "keyUsage = critical, digitalSignature, "
                                "cRLSign\n" + _SKI_AKI)],
    "pathLen 0 above an intermediate": [_PATHLEN_0, ("below-pathlen0", CA_EXTENSIONS)],
}
ISSUERS: dict[str, list[tuple[str, str]]] = {
    "pathLen 0 directly above": [_PATHLEN_0],
    "CA without keyUsage": [("ca-no-ku", _CA + _SKI_AKI)],
    # A self-issued certificate (a key rollover: same name, new key) does not count (l).
    "pathLen 0 above a self-issued CA": [_PATHLEN_0, ("pathlen0-rollover", CA_EXTENSIONS)],
}
_SUBJECTS = {"pathlen0-rollover": "/C=CN/O=hsmca tests/CN=pathlen0"}


def _issue_below(ca: OpensslCa, csr: str, issuers: list[tuple[str, str]]) -> tuple[str, str]:
    """The certificate for ``csr`` from the last of ``issuers``, and its chain up to the root."""
    parent = "int"
    chain = ca.chain_pem
    for name, extensions in issuers:
        subject = _SUBJECTS.get(name, "")
        chain = ca.add_issuer(name, extensions, parent=parent, subject=subject) + chain
        parent = name
    return ca.issue(csr, issuer=parent), chain


def _openssl_verifies(ca: OpensslCa, certificate: str, chain: str, directory: Path) -> bool:
    """Whether ``openssl verify`` accepts the path up to ``ca``'s root.

    ECDSA CAs only: OpenSSL 3.0's verify does not pass the SM2 distinguishing ID, so it
    rejects even the SM2 test CA's own intermediate ("certificate signature failure").
    """
    (directory / "leaf.pem").write_text(certificate)
    (directory / "untrusted.pem").write_text(chain)
    return openssl(
        "verify", "-CAfile", str(ca.directory / "root.pem"), "-untrusted",
        "untrusted.pem", "leaf.pem", cwd=directory, check=False,
    ).returncode == 0


def _assert_chain_refused(kms: Any, certificate_id: str, certificate: str, chain: str) -> None:
    """UploadCertificate answers InvalidParameter.CertificateChain and stores nothing."""
    request = kms_pb2.UploadCertificateRequest(
        certificate_id=certificate_id, certificate=certificate, certificate_chain=chain
    )
    assert rpc_error(kms.stub.UploadCertificate, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "InvalidParameter.CertificateChain",
    )
    row = _row(kms, certificate_id)
    assert (row.status, row.certificate, row.certificate_chain) == ("PENDING", None, None)


_CHAIN_CASES = [(case, False) for case in NOT_ISSUERS] + [(case, True) for case in ISSUERS]


@pytest.mark.parametrize("key_spec", ["EC_P256", "EC_SM2"])
@pytest.mark.parametrize(("case", "allowed"), _CHAIN_CASES, ids=[c for c, _ in _CHAIN_CASES])
def test_upload_accepts_a_chain_only_of_certificates_that_may_issue(
    kms: Any, issuer: Issuer, key_spec: str, case: str, allowed: bool, tmp_path: Path
) -> None:
    """Name and signature match in every case; what decides is whether each issuer is a CA
    allowed to issue here, and the check is not stricter than RFC 5280 path validation."""
    combo = Combo(key_spec, "SOFTWARE", True)
    ca = issuer.ca_for(combo)
    target = issuer.fresh(combo, upload=False)
    issuers = ISSUERS[case] if allowed else NOT_ISSUERS[case]
    certificate, chain = _issue_below(ca, target.csr, issuers)
    if not ca.sm2:  # an independent checker agrees
        assert _openssl_verifies(ca, certificate, chain, tmp_path) is allowed
    if allowed:
        _upload(kms, target.certificate_id, certificate, chain)
        row = _row(kms, target.certificate_id)
        assert (row.status, row.certificate_chain.count("BEGIN")) == ("ACTIVE", len(issuers) + 2)
        return
    _assert_chain_refused(kms, target.certificate_id, certificate, chain)


def test_upload_with_an_issuer_that_has_two_basic_constraints_is_refused(
    kms: Any, issuer: Issuer, ca: OpensslCa, tmp_path: Path
) -> None:
    """cA=FALSE, then a second basicConstraints with cA=TRUE: not read as a CA (RFC 5280 4.2)."""
    name, extensions = NOT_ISSUERS["cA=FALSE with keyCertSign"][0]
    _, _, der = asn1_pem.unarmor(ca.add_issuer(name, extensions).encode())
    original = asn1_x509.Certificate.load(der)
    tbs = original["tbs_certificate"].copy()
    tbs["extensions"] = asn1_x509.Extensions([
        *tbs["extensions"],
        {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": True}},
    ])
    parent_key = serialization.load_pem_private_key(
        (ca.directory / "int.key").read_bytes(), None
    )
    assert isinstance(parent_key, ec.EllipticCurvePrivateKey)
    two_constraints = asn1_x509.Certificate({
        "tbs_certificate": tbs,
        "signature_algorithm": original["signature_algorithm"],
        "signature_value": parent_key.sign(tbs.dump(), ec.ECDSA(hashes.SHA256())),
    })
    combo = Combo("EC_P256", "SOFTWARE", True)
    target = issuer.fresh(combo, upload=False)
    certificate = ca.issue(target.csr, issuer=name)
    chain = asn1_pem.armor("CERTIFICATE", two_constraints.dump()).decode() + ca.chain_pem
    assert not _openssl_verifies(ca, certificate, chain, tmp_path)
    _assert_chain_refused(kms, target.certificate_id, certificate, chain)


# --- CertificatePrivateKeySign / CertificatePublicKeyVerify --------------------------------

_SIGN_CASES = [
    (Combo("RSA_2048", "SOFTWARE", True), "RSA_PKCS1_SHA_256"),
    (Combo("RSA_2048", "HSM", False), "RSA_PKCS1_SHA_256"),
    (Combo("RSA_2048", "SOFTWARE", False), "RSA_PSS_SHA_256"),
    (Combo("RSA_2048", "HSM", False), "RSA_PSS_SHA_256"),
    (Combo("EC_P256", "SOFTWARE", True), "ECDSA_SHA_256"),
    (Combo("EC_P256", "HSM", False), "ECDSA_SHA_256"),
    (Combo("EC_SM2", "SOFTWARE", True), "SM2DSA"),
    (Combo("EC_SM2", "SOFTWARE", False), "SM2DSA"),
]


def _openssl_verify(issued: Issued, algorithm: str, message_type: str, sig: bytes) -> None:
    d = issued.directory
    (d / "msg").write_bytes(MESSAGE)
    (d / "sig").write_bytes(sig)
    pss = ["rsa_padding_mode:pss", "rsa_pss_saltlen:32"] if algorithm == "RSA_PSS_SHA_256" else []
    if message_type == "RAW":
        if algorithm == "SM2DSA":
            opts = ["-sm3", "-sigopt", DISTID]
        else:
            opts = ["-sha256", *[a for o in pss for a in ("-sigopt", o)]]
        out = openssl("dgst", *opts, "-verify", "pub.pem", "-signature", "sig", "msg", cwd=d)
        assert "Verified OK" in out.stdout
        return
    # DIGEST: pkeyutl checks the signature over the digest (for SM2: over e itself).
    if algorithm == "SM2DSA":
        (d / "dgst").write_bytes(sm2_compute_e(_spki(issued), MESSAGE))
        opts = []
    else:
        (d / "dgst").write_bytes(hashlib.sha256(MESSAGE).digest())
        opts = [a for o in ["digest:sha256", *pss] for a in ("-pkeyopt", o)]
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", *opts,
                  "-in", "dgst", "-sigfile", "sig", cwd=d)
    assert "Signature Verified Successfully" in out.stdout


def _spki(issued: Issued) -> bytes:
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) if issued.combo.key_spec != "EC_SM2" else _sm2_spki(issued)


def _sm2_spki(issued: Issued) -> bytes:
    from asn1crypto import pem as asn1_pem
    from asn1crypto import x509 as asn1_x509

    _, _, der = asn1_pem.unarmor(issued.certificate.encode())
    return bytes(asn1_x509.Certificate.load(der).public_key.dump())


@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
@pytest.mark.parametrize(("combo", "algorithm"), _SIGN_CASES,
                         ids=[f"{c.id}-{a}" for c, a in _SIGN_CASES])
def test_signatures_verify_with_openssl(
    kms: Any, issuer: Issuer, combo: Combo, algorithm: str, message_type: str
) -> None:
    issued = issuer.active(combo)
    if message_type == "RAW":
        message = MESSAGE
    elif algorithm == "SM2DSA":
        message = sm2_compute_e(_spki(issued), MESSAGE)
    else:
        message = hashlib.sha256(MESSAGE).digest()
    signed = kms.stub.CertificatePrivateKeySign(
        kms_pb2.CertificatePrivateKeySignRequest(
            certificate_id=issued.certificate_id, algorithm=algorithm, message=message,
            message_type=message_type,
        )
    )
    assert signed.certificate_id == issued.certificate_id
    _openssl_verify(issued, algorithm, message_type, signed.signature_value)

    def verify(msg: bytes, sig: bytes) -> bool:
        response = kms.stub.CertificatePublicKeyVerify(
            kms_pb2.CertificatePublicKeyVerifyRequest(
                certificate_id=issued.certificate_id, algorithm=algorithm, message=msg,
                message_type=message_type, signature_value=sig,
            )
        )
        return bool(response.signature_valid)

    assert verify(message, signed.signature_value) is True
    tampered = bytes([message[0] ^ 1]) + message[1:]
    assert verify(tampered, signed.signature_value) is False
    # Flip a bit of the last byte: setting it to 0 left the signature unchanged whenever its
    # last byte already was 0 (1 run in 256 per key), and the test failed.
    sig = signed.signature_value
    assert verify(message, sig[:-1] + bytes([sig[-1] ^ 1])) is False


@pytest.mark.parametrize(
    ("combo", "algorithm", "options"),
    [
        (Combo("RSA_2048", "SOFTWARE", True), "RSA_PKCS1_SHA_256", ["-sha256"]),
        (Combo("RSA_2048", "SOFTWARE", True), "RSA_PSS_SHA_256",
         ["-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]),
        (Combo("EC_P256", "SOFTWARE", True), "ECDSA_SHA_256", ["-sha256"]),
        (Combo("EC_SM2", "SOFTWARE", True), "SM2DSA", ["-sm3", "-sigopt", DISTID]),
    ],
    ids=["pkcs1", "pss", "ecdsa", "sm2"],
)
def test_openssl_signature_verifies_through_the_api(
    kms: Any, issuer: Issuer, combo: Combo, algorithm: str, options: list[str]
) -> None:
    """OpenSSL signs with the exported key; CertificatePublicKeyVerify accepts it."""
    issued = issuer.active(combo)
    exported = kms.stub.ExportCertificate(
        kms_pb2.ExportCertificateRequest(
            certificate_id=issued.certificate_id, export_format="PEM", passphrase=PASSPHRASE
        )
    )
    d = issued.directory
    (d / "key.enc.pem").write_text(exported.private_key)
    (d / "msg").write_bytes(MESSAGE)
    openssl("dgst", *options, "-sign", "key.enc.pem", "-passin", f"pass:{PASSPHRASE}",
            "-out", "osig", "msg", cwd=d)
    response = kms.stub.CertificatePublicKeyVerify(
        kms_pb2.CertificatePublicKeyVerifyRequest(
            certificate_id=issued.certificate_id, algorithm=algorithm, message=MESSAGE,
            signature_value=(d / "osig").read_bytes(),
        )
    )
    assert response.signature_valid is True


@pytest.mark.parametrize("export_format", ["PEM", "PKCS12"])
def test_the_longest_passphrase_accepted_exports_a_key_that_opens(
    kms: Any, issuer: Issuer, export_format: str
) -> None:
    """1023 bytes, the longest passphrase the API takes (the PEM encryption takes no more)."""
    issued = issuer.active(Combo("EC_P256", "SOFTWARE", True))
    passphrase = "p" * 1023
    exported = kms.stub.ExportCertificate(kms_pb2.ExportCertificateRequest(
        certificate_id=issued.certificate_id, export_format=export_format,
        passphrase=passphrase))
    if export_format == "PEM":
        key = serialization.load_pem_private_key(exported.private_key.encode(),
                                                 passphrase.encode())
    else:
        key = pkcs12.load_pkcs12(exported.pkcs12_blob, passphrase.encode()).key
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key is not None
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


# --- CertificatePublicKeyEncrypt / CertificatePrivateKeyDecrypt ----------------------------

_ENCRYPT_CASES = [
    (Combo("RSA_2048", "SOFTWARE", True), "RSAES_OAEP_SHA_1"),
    (Combo("RSA_2048", "SOFTWARE", True), "RSAES_OAEP_SHA_256"),
    (Combo("RSA_2048", "HSM", False), "RSAES_OAEP_SHA_1"),
    (Combo("RSA_2048", "HSM", False), "RSAES_OAEP_SHA_256"),
    (Combo("EC_SM2", "SOFTWARE", True), "SM2PKE"),
    (Combo("EC_SM2", "SOFTWARE", False), "SM2PKE"),
]


@pytest.mark.parametrize(("combo", "algorithm"), _ENCRYPT_CASES,
                         ids=[f"{c.id}-{a}" for c, a in _ENCRYPT_CASES])
def test_encrypt_decrypt_round_trips(
    kms: Any, issuer: Issuer, combo: Combo, algorithm: str
) -> None:
    issued = issuer.active(combo)
    plaintext = os.urandom(100)
    encrypted = kms.stub.CertificatePublicKeyEncrypt(
        kms_pb2.CertificatePublicKeyEncryptRequest(
            certificate_id=issued.certificate_id, algorithm=algorithm, plaintext=plaintext
        )
    )

    def decrypt(ciphertext: bytes) -> bytes:
        return bytes(kms.stub.CertificatePrivateKeyDecrypt(
            kms_pb2.CertificatePrivateKeyDecryptRequest(
                certificate_id=issued.certificate_id, algorithm=algorithm,
                ciphertext_blob=ciphertext,
            )
        ).plaintext)

    assert decrypt(encrypted.ciphertext_blob) == plaintext

    # A ciphertext made by OpenSSL with the certificate's public key decrypts too.
    d = issued.directory
    (d / "plain").write_bytes(plaintext)
    if algorithm == "SM2PKE":
        opts: list[str] = []
    else:
        md = "sha1" if algorithm == "RSAES_OAEP_SHA_1" else "sha256"
        opts = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}",
                "-pkeyopt", f"rsa_mgf1_md:{md}"]
    openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", *opts, "-in", "plain",
            "-out", "ct", cwd=d)
    assert decrypt((d / "ct").read_bytes()) == plaintext

    # A tampered ciphertext is INVALID_ARGUMENT, not an internal error.
    bad = bytearray(encrypted.ciphertext_blob)
    bad[-5] ^= 0xFF
    assert rpc_error(
        kms.stub.CertificatePrivateKeyDecrypt,
        kms_pb2.CertificatePrivateKeyDecryptRequest(
            certificate_id=issued.certificate_id, algorithm=algorithm, ciphertext_blob=bytes(bad)
        ),
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameter.CiphertextBlob")


# --- ExportCertificate ---------------------------------------------------------------------

_EXPORTABLE = [c for c in COMBOS if c.exportable]
_NON_EXPORTABLE = [c for c in COMBOS if not c.exportable]


def _public_der(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ))


@pytest.mark.parametrize("combo", _EXPORTABLE, ids=[c.id for c in _EXPORTABLE])
def test_export_pem_round_trip(kms: Any, issuer: Issuer, combo: Combo) -> None:
    issued = issuer.active(combo)
    exported = kms.stub.ExportCertificate(
        kms_pb2.ExportCertificateRequest(
            certificate_id=issued.certificate_id, export_format="PEM", passphrase=PASSPHRASE
        )
    )
    assert exported.certificate == issued.certificate
    assert len(x509.load_pem_x509_certificates(exported.certificate_chain.encode())) == 2
    assert "ENCRYPTED PRIVATE KEY" in exported.private_key
    if combo.key_spec == "EC_SM2":
        from tongsuopy.crypto import serialization as sm2_serialization

        key: Any = sm2_serialization.load_pem_private_key(
            exported.private_key.encode(), PASSPHRASE.encode()
        )
        assert bytes(key.public_key().public_bytes(
            sm2_serialization.Encoding.DER, sm2_serialization.PublicFormat.SubjectPublicKeyInfo
        )) == _spki(issued)
    else:
        with pytest.raises((TypeError, ValueError)):
            serialization.load_pem_private_key(exported.private_key.encode(), None)
        key = serialization.load_pem_private_key(
            exported.private_key.encode(), PASSPHRASE.encode()
        )
        assert _public_der(key) == _spki(issued)
    # OpenSSL reads it with the passphrase and finds the certificate's key.
    d = issued.directory
    (d / "exported.pem").write_text(exported.private_key)
    out = openssl("pkey", "-in", "exported.pem", "-passin", f"pass:{PASSPHRASE}", "-pubout",
                  cwd=d)
    assert out.stdout == (d / "pub.pem").read_text()


@pytest.mark.parametrize(
    "combo", [c for c in _EXPORTABLE if c.key_spec != "EC_SM2"],
    ids=[c.id for c in _EXPORTABLE if c.key_spec != "EC_SM2"],
)
def test_export_pkcs12_round_trip(kms: Any, issuer: Issuer, combo: Combo) -> None:
    issued = issuer.active(combo)
    exported = kms.stub.ExportCertificate(
        kms_pb2.ExportCertificateRequest(
            certificate_id=issued.certificate_id, export_format="PKCS12", passphrase=PASSPHRASE
        )
    )
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(exported.pkcs12_blob, b"wrong")
    key, cert, cas = pkcs12.load_key_and_certificates(exported.pkcs12_blob, PASSPHRASE.encode())
    assert cert is not None and key is not None
    assert cert == x509.load_pem_x509_certificate(issued.certificate.encode())
    assert _public_der(key) == _spki(issued)
    assert len(cas) == 2
    d = issued.directory
    (d / "out.p12").write_bytes(exported.pkcs12_blob)
    openssl("pkcs12", "-in", "out.p12", "-passin", f"pass:{PASSPHRASE}", "-noout", cwd=d)


def test_export_pkcs12_of_sm2_round_trips_through_openssl(kms: Any, issuer: Issuer) -> None:
    """cryptography cannot read SM2 keys; OpenSSL reads the PFX (more in test_kms_pkcs12.py)."""
    issued = issuer.active(Combo("EC_SM2", "SOFTWARE", True))
    exported = kms.stub.ExportCertificate(
        kms_pb2.ExportCertificateRequest(
            certificate_id=issued.certificate_id, export_format="PKCS12", passphrase=PASSPHRASE
        )
    )
    d = issued.directory
    (d / "out.p12").write_bytes(exported.pkcs12_blob)
    assert openssl("pkcs12", "-in", "out.p12", "-passin", "pass:wrong", "-noout", cwd=d,
                   check=False).returncode != 0
    openssl("pkcs12", "-in", "out.p12", "-passin", f"pass:{PASSPHRASE}", "-nodes",
            "-out", "out.pem", cwd=d)
    out = openssl("pkey", "-in", "out.pem", "-pubout", cwd=d)
    assert out.stdout == (d / "pub.pem").read_text()


@pytest.mark.parametrize("combo", _NON_EXPORTABLE, ids=[c.id for c in _NON_EXPORTABLE])
@pytest.mark.parametrize("export_format", ["PEM", "PKCS12"])
def test_export_of_non_exportable_keys_is_refused(
    kms: Any, issuer: Issuer, combo: Combo, export_format: str
) -> None:
    issued = issuer.active(combo)
    request = kms_pb2.ExportCertificateRequest(
        certificate_id=issued.certificate_id, export_format=export_format, passphrase=PASSPHRASE
    )
    assert rpc_error(kms.stub.ExportCertificate, request) == (
        grpc.StatusCode.PERMISSION_DENIED, "Forbidden.KeyNotExportable"
    )


@pytest.mark.parametrize(
    "combo", [c for c in _NON_EXPORTABLE if c.key_spec != "EC_SM2"],
    ids=[c.id for c in _NON_EXPORTABLE if c.key_spec != "EC_SM2"],
)
def test_token_itself_refuses_to_export_non_exportable_keys(
    kms: Any, issuer: Issuer, combo: Combo
) -> None:
    """Not only our check: asked directly, the token refuses to wrap the key out."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    row = _row(kms, issuer.active(combo).certificate_id)
    recipient = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(hsm_export.TokenRefusedExport) as info:
        hsm_export.export_private_key(_token(kms, row), bytes.fromhex(row.key_id),
                                      _public_der(recipient))
    assert info.value.return_code == "CKR_KEY_UNEXTRACTABLE"
    # And a plain attribute read of the private value is refused as well.
    import pkcs11

    def read_value(session: Any) -> Any:
        key = _token(kms, row).find_object(session, bytes.fromhex(row.key_id),
                                           ObjectClass.PRIVATE_KEY)
        attr = Attribute.PRIVATE_EXPONENT if combo.key_spec == "RSA_2048" else Attribute.VALUE
        return key[attr]

    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        _token(kms, row).run(read_value)


# --- DeleteCertificate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "combo",
    [Combo("EC_P256", "HSM", False), Combo("RSA_2048", "SOFTWARE", True),
     Combo("EC_SM2", "SOFTWARE", True)],
    ids=lambda c: c.id,
)
def test_delete_removes_key_and_record(kms: Any, issuer: Issuer, combo: Combo) -> None:
    issued = issuer.fresh(combo)
    row = _row(kms, issued.certificate_id)
    key_id = bytes.fromhex(row.key_id)
    kms.stub.DeleteCertificate(
        kms_pb2.DeleteCertificateRequest(certificate_id=issued.certificate_id)
    )
    assert not hsm_keys.key_exists(_token(kms, row), key_id)
    not_found = (grpc.StatusCode.NOT_FOUND, "NotFound.CertificateId")
    for call, request in [
        (kms.stub.GetCertificate, kms_pb2.GetCertificateRequest),
        (kms.stub.DescribeCertificate, kms_pb2.DescribeCertificateRequest),
        (kms.stub.DeleteCertificate, kms_pb2.DeleteCertificateRequest),
    ]:
        assert rpc_error(call, request(certificate_id=issued.certificate_id)) == not_found
