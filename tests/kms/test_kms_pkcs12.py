"""PKCS#12 files built by service/kms/pkcs12.py, checked by independent parsers.

SM2 PFXs go through the OpenSSL command line (``openssl pkcs12 -info -nodes``), which
reports the algorithms it found, checks the MAC and prints the key and certificates; RSA and
P-256 PFXs from the same builder also go through pyca/cryptography's PKCS#12 loader; over
the real gRPC API an exportable EC_SM2 certificate exports as PKCS12 and a non-exportable
one is still refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from asn1crypto import keys, pem
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from kms_api_support import DISTID, OpensslCa, openssl, rpc_error

from service.gen.hsmca.v1 import kms_pb2
from service.kms import sm2
from service.kms.pkcs12 import (
    MAC_ITERATIONS,
    PBES2_ITERATIONS,
    bmp_password,
    build_pkcs12,
    pkcs12_kdf,
)

PASSPHRASE = "pässword with spaces & 密码"
SM2_CURVE_OID = "1.2.156.10197.1.301"


@dataclass(frozen=True)
class OpensslView:
    """What ``openssl pkcs12 -info -nodes`` printed: the -info report and the PEM blocks."""

    info: str  # stderr: the algorithms and MAC parameters found
    bags: str  # stdout: bag attributes and the PEM blocks
    private_key: keys.PrivateKeyInfo
    certificates: list[bytes]


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_blocks(text: str) -> list[tuple[str, bytes]]:
    return [(kind, bytes(der)) for kind, _, der in pem.unarmor(text.encode(), multiple=True)]


def _openssl_pkcs12(directory: Path, blob: bytes, password: str) -> OpensslView:
    (directory / "f.p12").write_bytes(blob)
    out = openssl("pkcs12", "-in", "f.p12", "-passin", f"pass:{password}", "-nodes", "-info",
                  cwd=directory)
    blocks = _pem_blocks(out.stdout)
    [key_der] = [der for kind, der in blocks if kind == "PRIVATE KEY"]
    return OpensslView(
        info=out.stderr,
        bags=out.stdout,
        private_key=keys.PrivateKeyInfo.load(key_der),
        certificates=[der for kind, der in blocks if kind == "CERTIFICATE"],
    )


def _assert_openssl_rejects_password(directory: Path, blob: bytes) -> None:
    (directory / "f.p12").write_bytes(blob)
    out = openssl("pkcs12", "-in", "f.p12", "-passin", "pass:not the passphrase", "-nodes",
                  "-info", cwd=directory, check=False)
    assert out.returncode != 0
    assert "Mac verify error" in out.stderr
    assert "PRIVATE KEY" not in out.stdout


def _assert_openssl_layout(info: str) -> None:
    """The algorithms OpenSSL reports are the ones pkcs12.py promises (OpenSSL 3 defaults)."""
    pbes2 = f"PBES2, PBKDF2, AES-256-CBC, Iteration {PBES2_ITERATIONS}, PRF hmacWithSHA256"
    assert f"MAC: sha256, Iteration {MAC_ITERATIONS}" in info
    assert "MAC length: 32, salt length: 8" in info
    assert f"PKCS7 Encrypted data: {pbes2}" in info
    assert f"Shrouded Keybag: {pbes2}" in info


def _sm2_scalar(info: keys.PrivateKeyInfo) -> int:
    assert info["private_key_algorithm"]["algorithm"].dotted == "1.2.840.10045.2.1"
    assert info["private_key_algorithm"]["parameters"].chosen.dotted == SM2_CURVE_OID
    scalar: int = keys.ECPrivateKey.load(info["private_key"].contents)["private_key"].native
    return scalar


def _der(pem_text: str) -> list[bytes]:
    return [der for kind, der in _pem_blocks(pem_text) if kind == "CERTIFICATE"]


# --- the PKCS#12 KDF, against PFXs that OpenSSL (through cryptography) wrote -------------


@pytest.mark.parametrize("password", ["pw", PASSPHRASE, "emoji beyond the BMP 😀"])
def test_kdf_reproduces_the_mac_of_an_openssl_written_pfx(
    password: str, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """RFC 7292 B.2 with SHA-256 and ID 3 gives the MAC key OpenSSL used."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kdf")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(ec_key.public_key()).serial_number(1)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2035, 1, 1, tzinfo=dt.UTC)).sign(ec_key, hashes.SHA256())
    )
    blob = pkcs12.serialize_key_and_certificates(
        b"kdf", ec_key, cert, None, serialization.BestAvailableEncryption(password.encode())
    )
    pfx = asn1_pkcs12.Pfx.load(blob)
    mac_data = pfx["mac_data"]
    assert mac_data["mac"]["digest_algorithm"]["algorithm"].native == "sha256"
    mac_key = pkcs12_kdf(
        "sha256", bmp_password(password), mac_data["mac_salt"].native, 3,
        mac_data["iterations"].native, 32,
    )
    expected = mac_data["mac"]["digest"].native
    assert hmac.digest(mac_key, pfx["auth_safe"]["content"].native, "sha256") == expected


def test_kdf_longer_than_one_hash_output() -> None:
    """Lengths past one digest run the I_j update of steps 6b-6c; the prefix is stable."""
    one = pkcs12_kdf("sha256", bmp_password("pw"), b"saltsalt", 1, 2048, 32)
    two = pkcs12_kdf("sha256", bmp_password("pw"), b"saltsalt", 1, 2048, 80)
    assert len(two) == 80 and two[:32] == one and two[32:64] != one
    # RFC 7292 B.3: another ID gives an unrelated key.
    assert pkcs12_kdf("sha256", bmp_password("pw"), b"saltsalt", 3, 2048, 32) != one


# --- (1) SM2 key + SM2 chain, read by the OpenSSL CLI ------------------------------------


@dataclass(frozen=True)
class Sm2Material:
    """An SM2 key and its certificate from the OpenSSL SM2 CA (intermediate -> root)."""

    pkcs8: bytes
    certificate: bytes
    chain: list[bytes]


@pytest.fixture(scope="module")
def sm2_material(sm2_ca: OpensslCa, tmp_path_factory: pytest.TempPathFactory) -> Sm2Material:
    directory = tmp_path_factory.mktemp("sm2-p12")
    pkcs8 = sm2.generate_sm2_private_key()
    (directory / "key.pem").write_bytes(pem.armor("PRIVATE KEY", pkcs8))
    openssl("req", "-new", "-key", "key.pem", "-sm3", "-sigopt", DISTID,
            "-subj", "/C=CN/O=hsmca tests/OU=kms/CN=sm2 pkcs12", "-out", "req.pem",
            cwd=directory)
    certificate = _der(sm2_ca.issue((directory / "req.pem").read_text()))
    return Sm2Material(pkcs8, certificate[0], _der(sm2_ca.chain_pem))


def test_sm2_pfx_reads_in_openssl_with_the_original_key(
    sm2_material: Sm2Material, tmp_path: Path
) -> None:
    blob = build_pkcs12(sm2_material.pkcs8, sm2_material.certificate, sm2_material.chain,
                        PASSPHRASE, friendly_name="sm2 export")
    view = _openssl_pkcs12(tmp_path, blob, PASSPHRASE)
    _assert_openssl_layout(view.info)
    original = keys.PrivateKeyInfo.load(sm2_material.pkcs8)
    assert _sm2_scalar(view.private_key) == _sm2_scalar(original)
    assert view.certificates == [sm2_material.certificate, *sm2_material.chain]
    # friendlyName and localKeyId (SHA-1 of the certificate) on the key and the leaf's bag.
    key_id = " ".join(f"{b:02X}" for b in hashlib.sha1(sm2_material.certificate).digest())
    assert view.bags.count("friendlyName: sm2 export") == 2
    assert view.bags.count(f"localKeyID: {key_id}") == 2
    # OpenSSL's own reading of the key: its public half is the certificate's.
    (tmp_path / "key.pem").write_bytes(pem.armor("PRIVATE KEY", view.private_key.dump()))
    (tmp_path / "cert.pem").write_bytes(pem.armor("CERTIFICATE", view.certificates[0]))
    text = openssl("pkey", "-in", "key.pem", "-text", "-noout", cwd=tmp_path).stdout
    assert "SM2" in text
    assert (
        openssl("pkey", "-in", "key.pem", "-pubout", cwd=tmp_path).stdout
        == openssl("x509", "-in", "cert.pem", "-pubkey", "-noout", cwd=tmp_path).stdout
    )


def test_sm2_pfx_mac_rejects_a_wrong_password(sm2_material: Sm2Material, tmp_path: Path) -> None:
    blob = build_pkcs12(sm2_material.pkcs8, sm2_material.certificate, sm2_material.chain,
                        PASSPHRASE, friendly_name="sm2 export")
    _assert_openssl_rejects_password(tmp_path, blob)


def test_sm2_pfx_is_fresh_each_time(sm2_material: Sm2Material) -> None:
    """Salts and IVs are random: two exports of the same key share no ciphertext."""
    args = (sm2_material.pkcs8, sm2_material.certificate, [], PASSPHRASE)
    first = build_pkcs12(*args, friendly_name="a")
    second = build_pkcs12(*args, friendly_name="a")
    assert first != second


def _wrong(m: Sm2Material, other: bytes) -> Callable[[], bytes]:
    return lambda: build_pkcs12(m.pkcs8, other, [], PASSPHRASE, friendly_name="x")


@pytest.mark.parametrize(
    "case",
    ["empty passphrase", "junk key", "junk certificate", "junk chain", "key of another algorithm"],
)
def test_bad_inputs_are_refused(
    case: str, sm2_material: Sm2Material, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    m = sm2_material
    calls: dict[str, Callable[[], bytes]] = {
        "empty passphrase": lambda: build_pkcs12(m.pkcs8, m.certificate, [], "",
                                                 friendly_name="x"),
        "junk key": lambda: build_pkcs12(b"\x30\x03\x02\x01\x00", m.certificate, [], PASSPHRASE,
                                         friendly_name="x"),
        "junk certificate": _wrong(m, b"not DER"),
        "junk chain": lambda: build_pkcs12(m.pkcs8, m.certificate, [b"\x30\x00"], PASSPHRASE,
                                           friendly_name="x"),
        # A P-256 PKCS#8 with the SM2 certificate: id-ecPublicKey both, but another curve.
        "key of another algorithm": lambda: build_pkcs12(
            ec_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
            m.certificate, [], PASSPHRASE, friendly_name="x",
        ),
    }
    with pytest.raises(ValueError):
        calls[case]()


# --- (2) RSA and P-256 through the same builder, read by pyca/cryptography ---------------


@pytest.fixture(scope="module", params=["RSA", "P-256"])
def software_key(request: pytest.FixtureRequest) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if request.param == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def test_rsa_and_p256_pfx_load_in_cryptography(
    software_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    ca: OpensslCa,
    tmp_path: Path,
) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cryptography p12")]))
        .sign(software_key, hashes.SHA256())
    )
    leaf = x509.load_pem_x509_certificate(
        ca.issue(csr.public_bytes(serialization.Encoding.PEM).decode()).encode()
    )
    chain = x509.load_pem_x509_certificates(ca.chain_pem.encode())
    pkcs8 = software_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    blob = build_pkcs12(
        pkcs8,
        leaf.public_bytes(serialization.Encoding.DER),
        [c.public_bytes(serialization.Encoding.DER) for c in chain],
        PASSPHRASE,
        friendly_name="software export",
    )

    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(blob, b"not the passphrase")
    key, cert, cas = pkcs12.load_key_and_certificates(blob, PASSPHRASE.encode())
    assert key is not None and cert == leaf and cas == chain
    assert key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) == pkcs8
    loaded = pkcs12.load_pkcs12(blob, PASSPHRASE.encode())
    assert loaded.cert is not None and loaded.cert.friendly_name == b"software export"
    # And OpenSSL reports the same layout for these keys as for SM2.
    _assert_openssl_layout(_openssl_pkcs12(tmp_path, blob, PASSPHRASE).info)


# --- (3) ExportCertificate over the real gRPC API -----------------------------------------


def _create_and_upload_sm2(kms: Any, sm2_ca: OpensslCa, *, exportable: bool) -> tuple[str, str]:
    created = kms.stub.CreateCertificate(
        kms_pb2.CreateCertificateRequest(
            key_spec="EC_SM2",
            subject="CN=pkcs12 export,OU=kms,O=hsmca,C=CN",
            exportable_private_key=exportable,
            protection_level="SOFTWARE",
        )
    )
    certificate = sm2_ca.issue(created.csr)
    kms.stub.UploadCertificate(
        kms_pb2.UploadCertificateRequest(
            certificate_id=created.certificate_id,
            certificate=certificate,
            certificate_chain=sm2_ca.chain_pem,
        )
    )
    return created.certificate_id, certificate


def test_export_pkcs12_of_an_exportable_sm2_key_round_trips(
    kms: Any, sm2_ca: OpensslCa, tmp_path: Path
) -> None:
    certificate_id, certificate = _create_and_upload_sm2(kms, sm2_ca, exportable=True)
    exported = kms.stub.ExportCertificate(
        kms_pb2.ExportCertificateRequest(
            certificate_id=certificate_id, export_format="PKCS12", passphrase=PASSPHRASE
        )
    )
    # The PKCS12 result carries the blob only, as for RSA and P-256 keys.
    assert exported.certificate_id == certificate_id
    assert exported.pkcs12_blob and not exported.private_key and not exported.certificate

    view = _openssl_pkcs12(tmp_path, exported.pkcs12_blob, PASSPHRASE)
    _assert_openssl_layout(view.info)
    assert view.certificates == _der(certificate) + _der(sm2_ca.chain_pem)
    assert f"friendlyName: {certificate_id}" in view.bags
    _sm2_scalar(view.private_key)  # an EC key on sm2p256v1
    # The key OpenSSL recovered is the one behind the certificate: its public half matches,
    # and a signature it makes verifies against the certificate over SM2 with the default ID.
    (tmp_path / "key.pem").write_bytes(pem.armor("PRIVATE KEY", view.private_key.dump()))
    (tmp_path / "cert.pem").write_text(certificate)
    assert (
        openssl("pkey", "-in", "key.pem", "-pubout", cwd=tmp_path).stdout
        == openssl("x509", "-in", "cert.pem", "-pubkey", "-noout", cwd=tmp_path).stdout
    )
    (tmp_path / "msg").write_bytes(b"signed with the exported key")
    openssl("dgst", "-sm3", "-sign", "key.pem", "-sigopt", DISTID, "-out", "sig", "msg",
            cwd=tmp_path)
    openssl("x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem", cwd=tmp_path)
    verified = openssl("dgst", "-sm3", "-verify", "pub.pem", "-sigopt", DISTID,
                       "-signature", "sig", "msg", cwd=tmp_path)
    assert "Verified OK" in verified.stdout
    _assert_openssl_rejects_password(tmp_path, exported.pkcs12_blob)


def test_export_pkcs12_of_a_non_exportable_sm2_key_is_still_refused(
    kms: Any, sm2_ca: OpensslCa
) -> None:
    certificate_id, _ = _create_and_upload_sm2(kms, sm2_ca, exportable=False)
    request = kms_pb2.ExportCertificateRequest(
        certificate_id=certificate_id, export_format="PKCS12", passphrase=PASSPHRASE
    )
    assert rpc_error(kms.stub.ExportCertificate, request) == (
        grpc.StatusCode.PERMISSION_DENIED, "Forbidden.KeyNotExportable"
    )
