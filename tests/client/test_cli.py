"""`hsmca pca|kms|inspect` as a user sees them, against a real server on SoftHSM.

What is asserted is what a user gets: exit codes, files and their modes, the JSON (proto field
names, zero values present), the refusal's reason on stderr, and never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_support import Served
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.cli import main
from service.client.generated import RPCS

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], served: Served | None, *argv: str
        ) -> tuple[int, str, str]:
    """`hsmca ARGV` in this process; (exit code, stdout, stderr)."""
    connection = ["--target", served.target, "--insecure"] if served else []
    try:
        code = main([*argv, *connection])
    except SystemExit as e:  # argparse's usage errors and --help
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return code, out, err


def run_process(served: Served, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m service.cli ARGV` in a child process, as a shell user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSMCA_")}
    # The test server is plaintext on loopback; the configuration says so to every client.
    env.update(HSMCA_TARGET=served.target, HSMCA_GRPC_INSECURE="true")
    result = subprocess.run([sys.executable, "-m", "service.cli", *argv],
                            input=stdin, capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=120, check=False)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def hierarchy(served: Served) -> dict[str, str]:
    """Root and sub CA made through the CLI (ECC_256, CRLs on)."""
    ids: dict[str, str] = {}
    for name, argv in (
        ("root", ["pca", "create-root-ca-certificate", "--common-name", "CLI Root",
                  "--organization", "hsmca", "--country-code", "CN", "--algorithm", "ECC_256",
                  "--years", "5", "--enable-crl", "1", "--crl-day", "2", "--json"]),
        ("sub", ["pca", "create-sub-ca-certificate", "--common-name", "CLI Sub",
                 "--organization", "hsmca", "--country-code", "CN", "--algorithm", "ECC_256",
                 "--years", "2", "--enable-crl", "1", "--crl-day", "1", "--json"]),
    ):
        if name == "sub":
            argv += ["--parent-identifier", ids["root"]]
        result = run_process(served, *argv)
        assert result.returncode == 0, result.stderr
        ids[name] = json.loads(result.stdout)["identifier"]
    return ids


# --- every RPC has a command, every field a flag -------------------------------------------


@pytest.mark.parametrize(("group", "service"), [("pca", "PrivateCa"),
                                                ("kms", "KmsCertificates")])
def test_every_rpc_has_a_command_with_a_flag_per_field(
        capsys: pytest.CaptureFixture[str], group: str, service: str) -> None:
    from service.client.cli import kebab
    from service.client.generated import proto_class

    for method, (request_type, _) in RPCS[service].items():
        code, out, _ = run(capsys, None, group, kebab(method), "--help")
        assert code == 0, method
        descriptor = proto_class(request_type).DESCRIPTOR
        for fd in descriptor.fields:
            flag = "--" + kebab(fd.name)
            assert flag in out or f"{flag}." in out, f"{method}: no {flag}"


# --- the shortcut: issue a server certificate with a local key -----------------------------


def test_issue_server_writes_key_0600_and_a_certificate_for_the_names(
        capsys: pytest.CaptureFixture[str], served: Served, hierarchy: dict[str, str],
        tmp_path: Path) -> None:
    code, out, err = run(capsys, served, "pca", "issue-server", "--parent-identifier",
                         hierarchy["sub"], "--name", "api.example.com", "--name", "10.1.2.3",
                         "--days", "30", "--out", str(tmp_path / "cert.pem"),
                         "--key-out", str(tmp_path / "key.pem"),
                         "--chain-out", str(tmp_path / "chain.pem"))
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    key = serialization.load_pem_private_key((tmp_path / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert.public_key() == key.public_key()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.example.com"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    chain = x509.load_pem_x509_certificates((tmp_path / "chain.pem").read_bytes())
    cert.verify_directly_issued_by(chain[0])
    assert "private key: " in out and "(mode 0600)" in out
    # The key never went to the service: it knows of no key for this certificate.
    identifier = next(line.split(": ")[1] for line in out.splitlines()
                      if line.startswith("identifier: "))
    code, _, err = run(capsys, served, "pca", "describe-certificate-private-key",
                       "--identifier", identifier, "--encrypted-code", "pw")
    assert code == 1
    assert "FAILED_PRECONDITION UnsupportedOperation.NoSystemGeneratedKey" in err


def test_issue_server_refuses_to_replace_a_key_without_force(
        capsys: pytest.CaptureFixture[str], served: Served, hierarchy: dict[str, str],
        tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("precious")
    code, _, err = run(capsys, served, "pca", "issue-server", "--parent-identifier",
                       hierarchy["sub"], "--name", "x.example.com",
                       "--out", str(tmp_path / "c.pem"), "--key-out", str(tmp_path / "key.pem"))
    assert code == 2 and "--force" in err
    assert (tmp_path / "key.pem").read_text() == "precious"


def test_renew_replaces_cert_and_key_when_due_and_not_before(
        capsys: pytest.CaptureFixture[str], served: Served, hierarchy: dict[str, str],
        tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert run(capsys, served, "pca", "issue-server", "--parent-identifier", hierarchy["sub"],
               "--name", "renew.example.com", "--days", "30", "--out", str(cert_path),
               "--key-out", str(key_path))[0] == 0
    old_cert, old_key = cert_path.read_bytes(), key_path.read_bytes()
    # 30 days left of 30: not due by default (a third of the lifetime).
    code, out, _ = run(capsys, served, "pca", "renew", "--cert", str(cert_path),
                       "--key", str(key_path))
    assert code == 0 and out.startswith("not due")
    assert cert_path.read_bytes() == old_cert
    # Due when 60 days or less are left: renewed, with a new key, same names and lifetime.
    code, out, err = run(capsys, served, "pca", "renew", "--cert", str(cert_path),
                         "--key", str(key_path), "--before", "60d")
    assert code == 0, err
    new = x509.load_pem_x509_certificate(cert_path.read_bytes())
    old = x509.load_pem_x509_certificate(old_cert)
    assert new.serial_number != old.serial_number
    assert key_path.read_bytes() != old_key
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert new.public_key() == key.public_key()
    assert new.subject == old.subject
    assert (new.not_valid_after_utc - new.not_valid_before_utc).days == 30
    sans = new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["renew.example.com"]


# --- asynchronous issuance with a CSR from stdin, polling, JSON with zero values ------------


def test_csr_from_stdin_async_issue_poll_and_fetch(served: Served, hierarchy: dict[str, str],
                                                    tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "async.example.com")])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    # immediately unset: the API's default 0, asynchronous.
    result = run_process(served, "pca", "create-server-certificate-with-csr",
                         "--parent-identifier", hierarchy["sub"], "--csr", "-", "--days", "7",
                         "--json", stdin=csr)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["x509_certificate"] == ""  # zero values are printed, not dropped
    identifier = created["identifier"]
    deadline = time.monotonic() + 30
    while True:
        polled = run_process(served, "pca", "describe-client-certificate-status",
                             "--identifier", identifier, "--json")
        status = json.loads(polled.stdout)["certificate_status"][0]
        if status["status"] != "PENDING" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "ISSUE"
    assert status["revoke_time"] == "0"  # int64 zero, present
    fetched = run_process(served, "pca", "describe-client-certificate", "--identifier",
                          identifier, "--out", str(tmp_path / "cert.pem"), "--chain-out",
                          str(tmp_path / "chain.pem"))
    assert fetched.returncode == 0, fetched.stderr
    assert f"x509_certificate: (written to {tmp_path / 'cert.pem'})" in fetched.stdout
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert cert.public_key() == key.public_key()
    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == 0o644


def test_json_includes_zero_values(capsys: pytest.CaptureFixture[str], served: Served,
                                   hierarchy: dict[str, str]) -> None:
    code, out, _ = run(capsys, served, "pca", "describe-ca-certificate", "--identifier",
                       hierarchy["sub"], "--json")
    assert code == 0
    ca = json.loads(out)["certificate"]
    assert ca["path_len_constraint"] == 0
    assert ca["extended_key_usages"] == []
    code, out, _ = run(capsys, served, "kms", "list-certificates", "--status", "INACTIVE",
                       "--json")
    assert code == 0
    listed = json.loads(out)
    assert listed["total_count"] == 0 and listed["certificates"] == []


# --- exit codes ---------------------------------------------------------------------------


def test_a_refusal_prints_reason_and_message_and_exits_1(capsys: pytest.CaptureFixture[str],
                                                          served: Served) -> None:
    code, out, err = run(capsys, served, "pca", "describe-ca-certificate",
                         "--identifier", "no-such-ca")
    assert code == 1 and out == ""
    assert err.startswith("hsmca: refused: NOT_FOUND NotFound.Identifier: ")
    assert "request_id " in err


def test_a_misspelled_enum_is_refused_with_a_hint(capsys: pytest.CaptureFixture[str],
                                                  served: Served) -> None:
    code, _, err = run(capsys, served, "pca", "create-root-ca-certificate", "--common-name",
                       "x", "--organization", "o", "--country-code", "CN", "--algorithm",
                       "EC_P256", "--years", "1")
    assert code == 1
    assert "InvalidParameter.Algorithm" in err
    assert "unknown algorithm 'EC_P256'; the Private CA uses ECC_256" in err


@pytest.mark.parametrize("argv", [
    ["pca", "create-server-certificate-with-csr", "--csr", "/nonexistent/server.csr"],
    ["pca", "describe-ca-certificate", "--from-json", "-"],
    ["pca", "describe-ca-certificate", "--no-such-flag", "x"],
    ["pca", "describe-ca-certificate", "--identifer", "x"],  # no abbreviations, no typos
    ["pca", "create-sub-ca-certificate", "--years", "ten"],
])
def test_usage_errors_exit_2_without_calling(capsys: pytest.CaptureFixture[str],
                                             served: Served, argv: list[str]) -> None:
    code, _, err = run(capsys, served, *argv)
    assert code == 2, err
    assert err.strip()


def test_bad_json_names_the_fields(served: Served) -> None:
    result = run_process(served, "pca", "describe-ca-certificate", "--from-json", "-",
                         stdin='{"identifer": "x"}')
    assert result.returncode == 2
    assert "unknown field 'identifer'" in result.stderr
    assert "did you mean 'identifier'?" in result.stderr
    result = run_process(served, "pca", "describe-ca-certificate", "--from-json", "-",
                         stdin='{"identifier": ')
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_no_server_is_a_transport_failure_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, None, "pca", "describe-ca-certificate", "--identifier", "x",
                       "--target", "127.0.0.1:1", "--insecure", "--timeout", "2")
    assert code == 3
    assert err.startswith("hsmca: no answer from the service: UNAVAILABLE")


def test_missing_client_credentials_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    code, _, err = run(capsys, None, "pca", "describe-ca-certificate", "--identifier", "x",
                       "--target", "127.0.0.1:1", "--tls-dir", str(tmp_path))
    assert code == 2
    assert "ca.pem" in err


# --- revocation, CRL fetch and verification -------------------------------------------------


def test_revoke_then_crl_lists_it_and_verifies(capsys: pytest.CaptureFixture[str],
                                               served: Served, hierarchy: dict[str, str],
                                               tmp_path: Path) -> None:
    code, out, err = run(capsys, served, "pca", "issue-server", "--parent-identifier",
                         hierarchy["sub"], "--name", "revoked.example.com", "--out",
                         str(tmp_path / "c.pem"), "--key-out", str(tmp_path / "k.pem"), "--json")
    assert code == 0, err
    issued = json.loads(out)
    code, out, _ = run(capsys, served, "pca", "create-revoke-client-certificate",
                       "--identifier", issued["identifier"], "--reason-code", "1", "--json")
    assert code == 0 and int(json.loads(out)["revoke_date"]) > 0
    code, out, err = run(capsys, served, "pca", "crl", "--identifier", hierarchy["sub"],
                         "--out", str(tmp_path / "sub.crl"), "--json")
    assert code == 0, err
    crl = json.loads(out)
    assert crl["verified"] is True
    assert issued["serial_number"] in [r["serial_number"] for r in crl["revoked"]]
    loaded = x509.load_der_x509_crl((tmp_path / "sub.crl").read_bytes())
    assert loaded.get_revoked_certificate_by_serial_number(int(issued["serial_number"], 16))
    code, _, err = run(capsys, served, "pca", "crl", "--identifier", hierarchy["sub"],
                       "--out", str(tmp_path / "sub.crl.pem"), "--pem")
    assert code == 0, err
    text = (tmp_path / "sub.crl.pem").read_text()
    assert text.startswith("-----BEGIN X509 CRL-----\n")
    assert text.endswith("-----END X509 CRL-----\n")
    from_pem = x509.load_pem_x509_crl(text.encode())
    assert from_pem.issuer == loaded.issuer
    assert from_pem.get_revoked_certificate_by_serial_number(int(issued["serial_number"], 16))


def test_a_crl_from_another_ca_fails_the_check_exit_4(capsys: pytest.CaptureFixture[str],
                                                      served: Served,
                                                      hierarchy: dict[str, str]) -> None:
    root_crl = f"http://127.0.0.1:{served.http_port}/crl/{hierarchy['root']}.crl"
    code, out, err = run(capsys, served, "pca", "crl", "--identifier", hierarchy["sub"],
                         "--url", root_crl)
    assert code == 4
    assert "check failed" in err and out == ""


# --- inspect --------------------------------------------------------------------------------


def test_inspect_a_certificate_and_garbage(capsys: pytest.CaptureFixture[str], served: Served,
                                           hierarchy: dict[str, str], tmp_path: Path) -> None:
    assert run(capsys, served, "pca", "issue-server", "--parent-identifier", hierarchy["sub"],
               "--name", "inspect.example.com", "--out", str(tmp_path / "c.pem"),
               "--key-out", str(tmp_path / "k.pem"))[0] == 0
    code, out, _ = run(capsys, None, "inspect", str(tmp_path / "c.pem"), "--json")
    assert code == 0
    (cert,) = json.loads(out)
    assert cert["type"] == "certificate"
    assert cert["subject_alternative_names"] == ["DNS:inspect.example.com"]
    assert cert["public_key"] == "EC secp256r1" and cert["is_ca"] is False
    assert cert["crl_distribution_points"][0].endswith(f"/crl/{hierarchy['sub']}.crl")
    code, out, _ = run(capsys, None, "inspect", str(tmp_path / "c.pem"))
    assert "subject_alternative_names: DNS:inspect.example.com" in out
    (tmp_path / "junk").write_bytes(b"not a certificate")
    code, _, err = run(capsys, None, "inspect", str(tmp_path / "junk"))
    assert code == 2 and "no certificate, CSR or CRL" in err


# --- KMS through the CLI, its certificate issued by the Private CA ---------------------------


def test_kms_key_csr_issue_upload_sign_verify(capsys: pytest.CaptureFixture[str],
                                              served: Served, hierarchy: dict[str, str],
                                              tmp_path: Path) -> None:
    code, out, err = run(capsys, served, "kms", "create-certificate", "--key-spec", "EC_P256",
                         "--subject", "CN=kms.example.com,OU=kms,O=hsmca,C=CN",
                         "--subject-alternative-names", "kms.example.com",
                         "--protection-level", "HSM", "--no-exportable-private-key",
                         "--out", str(tmp_path / "kms.csr"), "--json")
    assert code == 0, err
    certificate_id = json.loads(out)["certificate_id"]
    code, _, err = run(capsys, served, "pca", "create-server-certificate-with-csr",
                       "--parent-identifier", hierarchy["sub"], "--csr",
                       str(tmp_path / "kms.csr"), "--immediately", "2", "--days", "30",
                       "--out", str(tmp_path / "kms.pem"),
                       "--chain-out", str(tmp_path / "chain.pem"))
    assert code == 0, err
    code, _, err = run(capsys, served, "kms", "upload-certificate", "--certificate-id",
                       certificate_id, "--certificate", str(tmp_path / "kms.pem"),
                       "--certificate-chain", str(tmp_path / "chain.pem"))
    assert code == 0, err
    (tmp_path / "msg").write_bytes(b"hello from the CLI")
    code, _, err = run(capsys, served, "kms", "certificate-private-key-sign",
                       "--certificate-id", certificate_id, "--algorithm", "ECDSA_SHA_256",
                       "--message", str(tmp_path / "msg"), "--out", str(tmp_path / "sig"))
    assert code == 0, err
    code, out, _ = run(capsys, served, "kms", "certificate-public-key-verify",
                       "--certificate-id", certificate_id, "--algorithm", "ECDSA_SHA_256",
                       "--message", str(tmp_path / "msg"),
                       "--signature-value", str(tmp_path / "sig"), "--json")
    assert code == 0 and json.loads(out)["signature_valid"] is True
    # The signature verifies with the certificate outside the service too.
    cert = x509.load_pem_x509_certificate((tmp_path / "kms.pem").read_bytes())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    from cryptography.hazmat.primitives import hashes

    public.verify((tmp_path / "sig").read_bytes(), b"hello from the CLI",
                  ec.ECDSA(hashes.SHA256()))
    code, _, err = run(capsys, served, "kms", "create-certificate", "--key-spec", "ECC_256",
                       "--subject", "CN=x,OU=kms,O=hsmca,C=CN")
    assert code == 1 and "InvalidParameter.KeySpec" in err and "KMS uses EC_P256" in err


# --- hsmca call -----------------------------------------------------------------------------


def test_call_bad_json_unknown_field_and_zero_values(served: Served,
                                                     hierarchy: dict[str, str]) -> None:
    target = ["--target", served.target]
    bad = run_process(served, "call", "PrivateCa/DescribeCACertificate", '{"identifier": ',
                      *target)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    unknown = run_process(served, "call", "PrivateCa/DescribeCACertificate",
                          '{"ca_identifier": "x"}', *target)
    assert unknown.returncode == 2
    assert "unknown field 'ca_identifier'" in unknown.stderr and "identifier" in unknown.stderr
    ok = run_process(served, "call", "PrivateCa/DescribeCACertificate",
                     json.dumps({"identifier": hierarchy["sub"]}), *target)
    assert ok.returncode == 0, ok.stderr
    described = json.loads(ok.stdout)["certificate"]
    assert described["path_len_constraint"] == 0


def test_kms_export_writes_pkcs12_and_keys_mode_0600(capsys: pytest.CaptureFixture[str],
                                                     served: Served, hierarchy: dict[str, str],
                                                     tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    code, out, err = run(capsys, served, "kms", "create-certificate", "--key-spec", "EC_P256",
                         "--subject", "CN=export.example.com,OU=kms,O=hsmca,C=CN",
                         "--out", str(tmp_path / "req.csr"), "--json")
    assert code == 0, err
    certificate_id = json.loads(out)["certificate_id"]
    assert run(capsys, served, "pca", "create-server-certificate-with-csr",
               "--parent-identifier", hierarchy["sub"], "--csr", str(tmp_path / "req.csr"),
               "--immediately", "2", "--days", "30", "--out", str(tmp_path / "cert.pem"),
               "--chain-out", str(tmp_path / "chain.pem"))[0] == 0
    assert run(capsys, served, "kms", "upload-certificate", "--certificate-id", certificate_id,
               "--certificate", str(tmp_path / "cert.pem"), "--certificate-chain",
               str(tmp_path / "chain.pem"))[0] == 0
    code, out, err = run(capsys, served, "kms", "export-certificate", "--certificate-id",
                         certificate_id, "--export-format", "PKCS12", "--passphrase", "pw-1",
                         "--out", str(tmp_path / "bundle.p12"))
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "bundle.p12").stat().st_mode) == 0o600
    loaded = pkcs12.load_pkcs12((tmp_path / "bundle.p12").read_bytes(), b"pw-1")
    assert loaded.cert is not None and loaded.key is not None
    code, _, err = run(capsys, served, "kms", "export-certificate", "--certificate-id",
                       certificate_id, "--export-format", "PEM", "--passphrase", "pw-2",
                       "--out", str(tmp_path / "c.pem"), "--chain-out", str(tmp_path / "ch.pem"),
                       "--key-out", str(tmp_path / "k.pem"))
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    key = serialization.load_pem_private_key((tmp_path / "k.pem").read_bytes(), b"pw-2")
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    assert cert.public_key() == key.public_key()


def test_renew_can_keep_the_key_and_inspect_reads_csrs(
        capsys: pytest.CaptureFixture[str], served: Served, hierarchy: dict[str, str],
        tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert run(capsys, served, "pca", "issue-server", "--parent-identifier", hierarchy["sub"],
               "--name", "keep.example.com", "--days", "10", "--out", str(cert_path),
               "--key-out", str(key_path))[0] == 0
    old_serial = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
    old_key = key_path.read_bytes()
    code, _, err = run(capsys, served, "pca", "renew", "--cert", str(cert_path), "--key",
                       str(key_path), "--reuse-key", "--force")
    assert code == 0, err
    new = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert new.serial_number != old_serial and key_path.read_bytes() == old_key
    assert new.public_key() == serialization.load_pem_private_key(old_key, None).public_key()
    # A key that is not the certificate's is refused before anything is asked of the CA.
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (tmp_path / "other.pem").write_bytes(other)
    code, _, err = run(capsys, served, "pca", "renew", "--cert", str(cert_path), "--key",
                       str(tmp_path / "other.pem"), "--reuse-key", "--force")
    assert code == 2 and "is not the key of" in err
    # inspect reads CSRs as well as certificates.
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "csr.example.com")])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("csr.example.com")]), critical=False).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    (tmp_path / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    code, out, _ = run(capsys, None, "inspect", str(tmp_path / "req.csr"), "--json")
    assert code == 0
    (described,) = json.loads(out)
    assert described["type"] == "csr"
    assert described["subject_alternative_names"] == ["DNS:csr.example.com"]
