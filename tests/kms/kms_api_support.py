"""KMS API test support: an OpenSSL CA, certificate issuance for CSRs, error helpers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from service.rpc.client import error_info

DISTID = "distid:1234567812345678"  # the SM2 default distinguishing ID (GB/T 32918.2)

LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the openssl command line in ``cwd``."""
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


@dataclass(frozen=True)
class OpensslCa:
    """A CA made with the OpenSSL CLI: root -> intermediate; issues leaf certificates."""

    directory: Path
    sm2: bool
    #: SM2 only: the ID the CA signs with ("-sigopt distid:..."); "" is OpenSSL 3's default,
    #: no -sigopt at all (an empty ID).
    distid: str = DISTID

    @property
    def chain_pem(self) -> str:
        """Intermediate then root, the order UploadCertificate expects."""
        return self.intermediate_pem + self.root_pem

    @property
    def root_pem(self) -> str:
        """The root certificate alone."""
        return (self.directory / "root.pem").read_text()

    @property
    def intermediate_pem(self) -> str:
        """The intermediate certificate alone."""
        return (self.directory / "int.pem").read_text()

    def _sig_args(self) -> list[str]:
        if not self.sm2:
            return ["-sha256"]
        return ["-sm3", "-sigopt", self.distid] if self.distid else ["-sm3"]

    @classmethod
    def make(cls, directory: Path, *, sm2: bool, distid: str = DISTID) -> OpensslCa:
        """Create root and intermediate keys and certificates with the OpenSSL CLI."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.ext").write_text(CA_EXTENSIONS)
        (directory / "leaf.ext").write_text(LEAF_EXTENSIONS)
        ca = cls(directory, sm2, distid)
        for name in ("root", "int"):
            ca._genkey(name)
        openssl(
            "req", "-x509", "-new", "-key", "root.key", *ca._sig_args(),
            "-subj", "/C=CN/O=hsmca tests/CN=Test Root" + (" SM2" if sm2 else ""),
            "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "root.pem",
            cwd=directory,
        )
        openssl(
            "req", "-new", "-key", "int.key", *ca._sig_args(),
            "-subj", "/C=CN/O=hsmca tests/CN=Test Intermediate", "-out", "int.csr",
            cwd=directory,
        )
        ca._sign("int.csr", "int.pem", "root", "ca.ext")
        return ca

    def _genkey(self, name: str) -> None:
        keygen = (
            ["genpkey", "-algorithm", "SM2"]
            if self.sm2
            else ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        )
        openssl(*keygen, "-out", f"{name}.key", cwd=self.directory)

    def add_issuer(
        self, name: str, extensions: str, *, parent: str = "int", subject: str = ""
    ) -> str:
        """Certificate ``name`` (own key, ``extensions``) issued by ``parent``; its PEM.

        Made once per CA: a later call with the same name returns the same certificate.
        """
        pem = self.directory / f"{name}.pem"
        if not pem.exists():
            self._genkey(name)
            (self.directory / f"{name}.ext").write_text(extensions)
            openssl(
                "req", "-new", "-key", f"{name}.key", *self._sig_args(),
                "-subj", subject or f"/C=CN/O=hsmca tests/CN={name}", "-out", f"{name}.csr",
                cwd=self.directory,
            )
            self._sign(f"{name}.csr", f"{name}.pem", parent, f"{name}.ext")
        return pem.read_text()

    def _sign(self, csr: str, out: str, issuer: str, ext: str, *, csr_distid: str | None = None
              ) -> None:
        # A CSR is checked under the ID it was self-signed with: this CA's own ID for its
        # issuers' CSRs, the default ID for the service's (``csr_distid``).
        distid = self.distid if csr_distid is None else csr_distid
        vfy = ["-vfyopt", distid] if self.sm2 and distid else []
        openssl(
            "x509", "-req", "-in", csr, *vfy, "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
            *self._sig_args(), "-set_serial", "0x" + os.urandom(15).hex(), "-days", "20",
            "-extfile", ext, "-out", out,
            cwd=self.directory,
        )

    def issue(self, csr_pem: str, issuer: str = "int") -> str:
        """Issue a leaf certificate for ``csr_pem`` from the intermediate (or ``issuer``); PEM."""
        name = os.urandom(6).hex()
        (self.directory / f"{name}.csr").write_text(csr_pem)
        self._sign(f"{name}.csr", f"{name}.pem", issuer, "leaf.ext", csr_distid=DISTID)
        return (self.directory / f"{name}.pem").read_text()


def rpc_error(call: Callable[[Any], Any], request: Any) -> tuple[grpc.StatusCode, str]:
    """Call an RPC that must fail; return (status code, ErrorInfo reason)."""
    try:
        call(request)
    except grpc.RpcError as e:
        return error_info(e)
    raise AssertionError(f"{request!r} unexpectedly succeeded")


@dataclass(frozen=True)
class Combo:
    """One KeySpec x ProtectionLevel x ExportablePrivateKey choice."""

    key_spec: str
    protection_level: str
    exportable: bool

    @property
    def id(self) -> str:
        """A readable pytest id."""
        return f"{self.key_spec}-{self.protection_level}-{'exp' if self.exportable else 'nonexp'}"


# EC_SM2 only with SOFTWARE; HSM keys are only non-exportable (docs/architecture.md, invariant 1).
COMBOS = (
    Combo("RSA_2048", "SOFTWARE", True),
    Combo("RSA_2048", "SOFTWARE", False),
    Combo("RSA_2048", "HSM", False),
    Combo("EC_P256", "SOFTWARE", True),
    Combo("EC_P256", "SOFTWARE", False),
    Combo("EC_P256", "HSM", False),
    Combo("EC_SM2", "SOFTWARE", True),
    Combo("EC_SM2", "SOFTWARE", False),
)
COMBO_IDS = [c.id for c in COMBOS]


@dataclass(frozen=True)
class Issued:
    """A KMS certificate created over the API and (if uploaded) its certificate."""

    combo: Combo
    certificate_id: str
    csr: str
    certificate: str
    directory: Path  # holds cert.pem and pub.pem (the certificate's public key)
