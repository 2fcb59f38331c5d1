"""The common tasks as one command each: `hsmca pca issue-server`, `renew`, `crl`.

``issue-server`` makes a fresh key and a CSR locally (the key never leaves this process and is
written mode 0600), has the CA issue a server certificate for the names at once
(``immediately`` 2), checks that the certificate carries the key, and writes the files.
``renew`` does the same for an existing certificate when it is due (a third of its lifetime
left, or ``--before``), finding its CA by serial number. ``crl`` fetches a CA's CRL from the
URL the service publishes and verifies its issuer, signature and freshness.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import ipaddress
import math
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from service.client.cli import (
    EXIT_OK,
    CheckFailed,
    UsageError,
    add_connection_flags,
    connect,
    guarded,
    read_input,
    write_output,
)
from service.client.client import HsmcaClient
from service.client.errors import TransportError
from service.client.generated import CreateServerCertificateWithCsrResponse
from service.client.jsonio import message_to_json

__all__ = ["LocalKey", "new_key", "register"]

#: Key types a shortcut can make, by the Private CA's algorithm names.
KEY_ALGORITHMS = ("ECC_256", "ECC_384", "ECC_512", "RSA_2048", "RSA_4096", "SM2_256")
_CURVES: dict[str, ec.EllipticCurve] = {
    "ECC_256": ec.SECP256R1(), "ECC_384": ec.SECP384R1(), "ECC_512": ec.SECP521R1()}
_CSR_HASHES: dict[str, hashes.HashAlgorithm] = {
    "ECC_256": hashes.SHA256(), "ECC_384": hashes.SHA384(), "ECC_512": hashes.SHA512()}
#: Validity of `issue-server` when no --days/--months/--years is given.
DEFAULT_DAYS = 90
_DURATION = re.compile(r"^(\d+)([dhm])$")


@dataclass(frozen=True)
class LocalKey:
    """A key made here: its PKCS#8 PEM (written 0600, never sent) and its SPKI DER."""

    private_pem: bytes
    public_key_info: bytes
    algorithm: str


def new_key(algorithm: str) -> LocalKey:
    """A fresh key pair of the Private CA algorithm ``algorithm`` (ECC_256, RSA_2048, ...)."""
    if algorithm == "SM2_256":
        from tongsuopy.crypto import serialization as sm_serialization

        from service.kms import sm2

        pkcs8 = sm2.generate_sm2_private_key()
        key = sm_serialization.load_der_private_key(pkcs8, password=None)
        pem = key.private_bytes(sm_serialization.Encoding.PEM,
                                sm_serialization.PrivateFormat.PKCS8,
                                sm_serialization.NoEncryption())
        return LocalKey(bytes(pem), sm2.sm2_public_key_info(pkcs8), algorithm)
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm in _CURVES:
        private = ec.generate_private_key(_CURVES[algorithm])
    elif algorithm in ("RSA_2048", "RSA_4096"):
        private = rsa.generate_private_key(65537, int(algorithm.split("_")[1]))
    else:
        raise UsageError(f"cannot make a key of algorithm {algorithm!r}; "
                         f"use one of {', '.join(KEY_ALGORITHMS)}")
    return _local(private, algorithm)


def _local(private: Any, algorithm: str) -> LocalKey:
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return LocalKey(pem, spki, algorithm)


def _load_key(pem: bytes, path: str) -> tuple[Any, LocalKey]:
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path}: not an unencrypted PEM private key this command can reuse "
                         f"({e}); leave out --reuse-key for a new key") from None
    if isinstance(private, rsa.RSAPrivateKey):
        algorithm = f"RSA_{private.key_size}"
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "ECC_256", "secp384r1": "ECC_384", "secp521r1": "ECC_512"}
        algorithm = names.get(private.curve.name, private.curve.name)
    else:
        raise UsageError(f"{path}: only RSA and ECC keys can be reused")
    return private, _local(private, algorithm)


def _csr(key: LocalKey, names: list[str]) -> str:
    """A CSR for ``names`` (the first is the CN; IP addresses become iPAddress SANs)."""
    if key.algorithm == "SM2_256":
        from service.kms import sm2
        from service.kms.csr import build_csr

        if any(_is_ip(n) for n in names):
            raise UsageError("an SM2 CSR made here carries DNS names only")
        der = asn1_pem.unarmor(key.private_pem)[2]
        return build_csr(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
                         names, sm2.Sm2Signer(der))
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n)
        for n in names]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])).add_extension(
        x509.SubjectAlternativeName(sans), critical=False)
    digest = _CSR_HASHES.get(key.algorithm, hashes.SHA256())
    csr = builder.sign(private, digest)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _certificate_der(pem_or_der: bytes, what: str) -> bytes:
    try:
        if asn1_pem.detect(pem_or_der):
            _, _, der = asn1_pem.unarmor(pem_or_der)
        else:
            der = pem_or_der
        asn1_x509.Certificate.load(der).native  # noqa: B018 - parse it all
    except (ValueError, TypeError) as e:
        raise UsageError(f"{what}: not a PEM or DER certificate ({e})") from None
    return bytes(der)


def _check_carries_key(certificate_pem: str, key: LocalKey) -> None:
    der = _certificate_der(certificate_pem.encode(), "the issued certificate")
    spki = asn1_x509.Certificate.load(der).public_key
    ours = asn1_keys.PublicKeyInfo.load(key.public_key_info)
    if spki["public_key"].native != ours["public_key"].native:
        raise CheckFailed("the issued certificate does not carry the key made for it")


def _issue(client: HsmcaClient, args: argparse.Namespace, parent: str, key: LocalKey,
           names: list[str], subject: dict[str, str], enable_crl: int,
           days: int | None) -> CreateServerCertificateWithCsrResponse:
    issued = client.pca.create_server_certificate_with_csr(
        parent_identifier=parent, csr=_csr(key, names), domain=",".join(names[1:]),
        algorithm=key.algorithm, immediately=2, enable_crl=enable_crl,
        days=days, months=getattr(args, "months", None), years=getattr(args, "years", None),
        organization=subject.get("organization", ""),
        organization_unit=subject.get("organization_unit", ""),
        country=subject.get("country", ""), state=subject.get("state", ""),
        locality=subject.get("locality", ""))
    _check_carries_key(issued.x509_certificate, key)
    return issued


def _write_issued(args: argparse.Namespace, issued: CreateServerCertificateWithCsrResponse,
                  key: LocalKey | None) -> None:
    if key is not None:
        write_output(args.key_out, key.private_pem, secret=True)
    write_output(args.out, issued.x509_certificate, secret=False)
    if args.chain_out:
        write_output(args.chain_out, issued.certificate_chain, secret=False)


def _summary(args: argparse.Namespace, issued: CreateServerCertificateWithCsrResponse,
             key_written: bool) -> None:
    if args.json:
        from service.client.convert import to_proto

        print(message_to_json(to_proto(issued)))
        return
    cert = asn1_x509.Certificate.load(_certificate_der(issued.x509_certificate.encode(), "x"))
    print(f"identifier: {issued.identifier}\nserial_number: {issued.serial_number}\n"
          f"not_after: {cert.not_valid_after.isoformat()}\ncertificate: {args.out}"
          + (f"\nprivate key: {args.key_out} (mode 0600)" if key_written else "")
          + (f"\nchain: {args.chain_out}" if args.chain_out else ""))


def _ca(client: HsmcaClient, identifier: str) -> Any:
    ca = client.pca.describe_ca_certificate(identifier=identifier).certificate
    if ca is None:
        raise CheckFailed(f"the service described no CA for {identifier!r}")
    return ca


# --- issue-server ---------------------------------------------------------------------------


def _cmd_issue(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.name if n.strip()]
    if not names:
        raise UsageError("--name: give at least one DNS name or IP address")
    if not args.force and Path(args.key_out).exists():
        raise UsageError(f"{args.key_out} exists; pass --force to replace the key")
    subject = {k: v for k in ("organization", "organization_unit", "country", "state",
                              "locality") if (v := getattr(args, k))}
    with connect(args) as client:
        ca = _ca(client, args.parent_identifier)
        key = new_key(args.key_algorithm or ca.algorithm)
        enable_crl = ca.enable_crl if args.enable_crl is None else args.enable_crl
        days = args.days
        if days is None and args.months is None and args.years is None:
            days = DEFAULT_DAYS
        issued = _issue(client, args, args.parent_identifier, key, names, subject, enable_crl,
                        days)
    _write_issued(args, issued, key)
    _summary(args, issued, key_written=True)
    return EXIT_OK


# --- renew ----------------------------------------------------------------------------------


def _duration(text: str) -> dt.timedelta:
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"--before {text!r}: use a number and d, h or m (30d, 12h, 90m)")
    number, unit = int(match.group(1)), match.group(2)
    return {"d": dt.timedelta(days=number), "h": dt.timedelta(hours=number),
            "m": dt.timedelta(minutes=number)}[unit]


def _names_of(cert: asn1_x509.Certificate) -> list[str]:
    names: list[str] = []
    cn = cert.subject.native.get("common_name")
    if isinstance(cn, str):
        names.append(cn)
    for general in cert.subject_alt_name_value or ():
        if general.name in ("dns_name", "ip_address"):
            value = str(general.native).split("/")[0]
            if value not in names:
                names.append(value)
    return names


def _subject_of(cert: asn1_x509.Certificate) -> dict[str, str]:
    native = cert.subject.native
    wanted = {"organization_name": "organization", "organizational_unit_name":
              "organization_unit", "country_name": "country",
              "state_or_province_name": "state", "locality_name": "locality"}
    return {field: str(native[attr]) for attr, field in wanted.items()
            if isinstance(native.get(attr), str)}


def _key_algorithm_of(cert: asn1_x509.Certificate) -> str:
    key = cert.public_key
    if key.algorithm == "rsa":
        return f"RSA_{key.bit_size}"
    curve = key.curve[1]
    names = {"secp256r1": "ECC_256", "secp384r1": "ECC_384", "secp521r1": "ECC_512",
             "1.2.156.10197.1.301": "SM2_256", "sm2p256v1": "SM2_256"}
    if curve not in names:
        raise UsageError(f"the certificate's key ({curve}) is not one the service issues for")
    return names[curve]


def _issuing_ca(client: HsmcaClient, der: bytes, serial_hex: str) -> str:
    found = client.pca.describe_client_certificate_for_serial_number(serial_number=serial_hex)
    fingerprint = hashlib.sha256(der).hexdigest()
    for entry in found.certificate_list:
        if entry.sha2.lower() == fingerprint:
            return entry.parent_identifier
    raise UsageError("the service has no record of this certificate (by serial number and "
                     "fingerprint); pass --parent-identifier")


def _cmd_renew(args: argparse.Namespace) -> int:
    der = _certificate_der(read_input(args.cert, binary=True), args.cert)
    cert = asn1_x509.Certificate.load(der)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = cert.not_valid_before, cert.not_valid_after
    lifetime = not_after - not_before
    window = _duration(args.before) if args.before else lifetime / 3
    left = not_after - now
    if left > window and not args.force:
        message = (f"not due: {args.cert} expires {not_after.isoformat()} "
                   f"({left.days} days left); it is renewed when {window} or less is left")
        print(message if not args.json else '{"renewed": false}')
        return EXIT_OK
    names = _names_of(cert)
    if not names:
        raise UsageError(f"{args.cert} names no DNS name or IP address to renew for")
    if args.reuse_key:
        _, key = _load_key(read_input(args.key, binary=True), args.key)
        if asn1_keys.PublicKeyInfo.load(key.public_key_info)["public_key"].native != (
                cert.public_key["public_key"].native):
            raise UsageError(f"{args.key} is not the key of {args.cert}")
    else:
        key = new_key(_key_algorithm_of(cert))
    days = args.days or max(1, math.ceil(lifetime.total_seconds() / 86400))
    enable_crl = 1 if cert.crl_distribution_points else 0
    args.out, args.key_out = args.cert, args.key
    with connect(args) as client:
        parent = args.parent_identifier or _issuing_ca(client, der,
                                                       format(cert.serial_number, "x"))
        issued = _issue(client, args, parent, key, names, _subject_of(cert), enable_crl, days)
    _write_issued(args, issued, None if args.reuse_key else key)
    _summary(args, issued, key_written=not args.reuse_key)
    return EXIT_OK


# --- crl ------------------------------------------------------------------------------------


def _fetch(url: str, timeout: float) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"CRL URL {url!r} is not http(s)")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - checked
            return bytes(answer.read())
    except urllib.error.HTTPError as e:
        raise TransportError(grpc.StatusCode.UNAVAILABLE,
                             f"GET {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise TransportError(grpc.StatusCode.UNAVAILABLE, f"GET {url}: {e}") from None


def _cmd_crl(args: argparse.Namespace) -> int:
    from service.errors import HsmcaError
    from service.pki import pem
    from service.pki.verify import verify_crl

    with connect(args) as client:
        ca = _ca(client, args.identifier)
    url = args.url or ca.crl_url
    if not url:
        raise UsageError(f"CA {args.identifier} publishes no CRL (enable_crl 0)")
    der = _fetch(url, args.timeout)
    if asn1_pem.detect(der):
        der = asn1_pem.unarmor(der)[2]
    try:
        crl = asn1_crl.CertificateList.load(der)
        tbs = crl["tbs_cert_list"]
        this_update = tbs["this_update"].native
        next_update = tbs["next_update"].native
        revoked = [(format(r["user_certificate"].native, "x"),
                    r["revocation_date"].native.isoformat(),
                    str(r.crl_reason_value.native) if r.crl_reason_value else "unspecified")
                   for r in tbs["revoked_certificates"]]
    except (ValueError, TypeError, KeyError) as e:
        raise CheckFailed(f"{url} did not return a DER CRL ({e})") from None
    ca_cert = asn1_x509.Certificate.load(_certificate_der(ca.x509_certificate.encode(), "CA"))
    now = dt.datetime.now(dt.UTC)
    if crl.issuer != ca_cert.subject:
        raise CheckFailed(f"the CRL's issuer is not CA {args.identifier}")
    try:
        verify_crl(der, ca_cert.public_key.dump())
    except HsmcaError:
        raise CheckFailed(f"the CRL's signature does not verify with CA {args.identifier}'s "
                          "key") from None
    if this_update > now + dt.timedelta(minutes=5):
        raise CheckFailed(f"the CRL's thisUpdate {this_update.isoformat()} is in the future")
    if next_update is None or next_update <= now:
        raise CheckFailed(f"the CRL is stale: nextUpdate {next_update} has passed")
    if args.out:
        data: bytes | str = pem.encode(der, "X509 CRL") if args.pem else der
        write_output(args.out, data, secret=False)
    number = crl.crl_number_value.native if crl.crl_number_value else None
    summary = {"url": url, "issuer": crl.issuer.human_friendly, "verified": True,
               "crl_number": number, "this_update": this_update.isoformat(),
               "next_update": next_update.isoformat(), "revoked_count": len(revoked),
               "revoked": [{"serial_number": s, "revocation_date": d, "reason": r}
                           for s, d, r in revoked]}
    if args.json:
        import json

        print(json.dumps(summary, indent=2))
    else:
        print(f"CRL of CA {args.identifier} from {url}: signature verified, current\n"
              f"issuer: {summary['issuer']}\ncrl_number: {number}\n"
              f"this_update: {summary['this_update']}\nnext_update: {summary['next_update']}\n"
              f"revoked: {len(revoked)}")
        for s, d, r in revoked:
            print(f"  {s}  {d}  {r}")
    return EXIT_OK


# --- registration ---------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add the shortcuts to the `hsmca pca` command parser."""
    p = commands.add_parser(
        "issue-server", allow_abbrev=False,
        help="shortcut: key + CSR made here, server certificate for names",
        description="Make a fresh key and a CSR here (the key is never sent), have the CA "
        "issue a server certificate for the names at once, check it carries the key, and "
        "write certificate, key (mode 0600) and chain.")
    p.add_argument("--parent-identifier", required=True, help="the issuing subordinate CA")
    p.add_argument("--name", action="append", required=True, metavar="NAME",
                   help="DNS name or IP address; the first is also the CN. Repeat for more.")
    p.add_argument("--out", required=True, metavar="FILE", help="certificate (PEM)")
    p.add_argument("--key-out", required=True, metavar="FILE", help="private key (PKCS#8 "
                   "PEM, mode 0600)")
    p.add_argument("--chain-out", metavar="FILE", help="CA chain (PEM)")
    p.add_argument("--key-algorithm", choices=KEY_ALGORITHMS,
                   help="key type (default: the CA's algorithm)")
    for name in ("days", "months", "years"):
        p.add_argument(f"--{name}", type=int, help=f"validity in {name}, added together "
                       f"(default: {DEFAULT_DAYS} days)")
    p.add_argument("--enable-crl", type=int, choices=(0, 1), help="1: put the CA's CRL URL "
                   "in the certificate (default: 1 if the CA publishes a CRL)")
    for name in ("organization", "organization_unit", "country", "state", "locality"):
        p.add_argument("--" + name.replace("_", "-"), help=f"subject {name} (default: the "
                       "CA's, for state and locality)")
    p.add_argument("--force", action="store_true", help="replace an existing --key-out")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    add_connection_flags(p)
    p.set_defaults(fn=guarded(_cmd_issue))

    p = commands.add_parser(
        "renew", allow_abbrev=False, help="shortcut: renew a certificate (new key) when it is due",
        description="Renew CERT when a third of its lifetime (or --before) is left: a new "
        "key and CSR made here, the same names, subject and lifetime, from the CA that "
        "issued it (found by serial number). CERT and KEY are replaced atomically.")
    p.add_argument("--cert", required=True, metavar="FILE", help="the certificate (PEM)")
    p.add_argument("--key", required=True, metavar="FILE",
                   help="its private key file; replaced by the new key (mode 0600)")
    p.add_argument("--chain-out", metavar="FILE", help="write the CA chain (PEM)")
    p.add_argument("--before", metavar="DURATION", help="renew when this much or less is "
                   "left: 30d, 12h, 90m (default: a third of the lifetime)")
    p.add_argument("--force", action="store_true", help="renew now, due or not")
    p.add_argument("--reuse-key", action="store_true", help="keep the key (RSA and ECC)")
    p.add_argument("--days", type=int, help="validity (default: the old certificate's)")
    p.add_argument("--parent-identifier", help="the issuing CA (default: looked up)")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    add_connection_flags(p)
    p.set_defaults(fn=guarded(_cmd_renew))

    p = commands.add_parser(
        "crl", allow_abbrev=False, help="shortcut: fetch a CA's CRL and verify it",
        description="Fetch the CRL of a CA from the URL the service publishes (or --url), "
        "verify issuer, signature (with the CA certificate from the service) and "
        "freshness, and list the revoked serial numbers. Exit 4 if it does not verify.")
    p.add_argument("--identifier", required=True, help="the CA")
    p.add_argument("--url", help="fetch from here instead of the CA's crl_url")
    p.add_argument("--out", metavar="FILE", help="write the CRL (DER; --pem for PEM)")
    p.add_argument("--pem", action="store_true", help="write --out as PEM")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_flags(p)
    p.set_defaults(fn=guarded(_cmd_crl))
