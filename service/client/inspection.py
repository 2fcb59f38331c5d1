"""`hsmca inspect FILE`: what a certificate, CSR or CRL says, read locally (no service call).

PEM (one or more blocks) or DER; parsed with asn1crypto, so SM2 certificates read as well as
RSA and ECDSA ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from asn1crypto import crl as asn1_crl
from asn1crypto import csr as asn1_csr
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509

from service.client.cli import EXIT_OK, UsageError, guarded, read_input

__all__ = ["describe_certificate", "register"]


def _key(info: Any) -> str:
    if info.algorithm == "rsa":
        return f"RSA {info.bit_size}"
    if info.algorithm == "ec":
        curve = info.curve[1]
        return "SM2 (sm2p256v1)" if curve in ("1.2.156.10197.1.301", "sm2p256v1") else (
            f"EC {curve}")
    return str(info.algorithm)


def _names(general_names: Any) -> list[str]:
    out = []
    for name in general_names or ():
        kind = {"dns_name": "DNS", "ip_address": "IP", "rfc822_name": "email",
                "uniform_resource_identifier": "URI"}.get(name.name, name.name)
        out.append(f"{kind}:{name.native}")
    return out


def _signature_algorithm(algorithm: Any) -> str:
    dotted = algorithm["algorithm"].dotted
    return "sm3_sm2" if dotted == "1.2.156.10197.1.501" else str(algorithm.signature_algo
                                                                  if dotted else dotted)


def describe_certificate(der: bytes, now: dt.datetime | None = None) -> dict[str, Any]:
    """The fields of a certificate a person checks first, as a JSON-ready dict."""
    cert = asn1_x509.Certificate.load(der)
    now = now or dt.datetime.now(dt.UTC)
    constraints = cert.basic_constraints_value
    crl_urls = [str(url) for point in cert.crl_distribution_points
                for url in (point.url,) if url]
    return {
        "subject": cert.subject.human_friendly,
        "issuer": cert.issuer.human_friendly,
        "serial_number": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before.isoformat(),
        "not_after": cert.not_valid_after.isoformat(),
        "expired": cert.not_valid_after <= now,
        "days_left": (cert.not_valid_after - now).days,
        "subject_alternative_names": _names(cert.subject_alt_name_value),
        "public_key": _key(cert.public_key),
        "signature_algorithm": _signature_algorithm(cert["signature_algorithm"]),
        "is_ca": bool(constraints and constraints["ca"].native),
        "path_len_constraint": constraints["path_len_constraint"].native if constraints
        else None,
        "key_usage": sorted(cert.key_usage_value.native) if cert.key_usage_value else [],
        "extended_key_usage": list(cert.extended_key_usage_value.native)
        if cert.extended_key_usage_value else [],
        "subject_key_identifier": cert.key_identifier.hex() if cert.key_identifier else "",
        "authority_key_identifier": cert.authority_key_identifier.hex()
        if cert.authority_key_identifier else "",
        "crl_distribution_points": crl_urls,
        "self_signed": cert.self_signed != "no",
        "sha256_fingerprint": hashlib.sha256(der).hexdigest(),
    }


def _describe_csr(der: bytes) -> dict[str, Any]:
    request = asn1_csr.CertificationRequest.load(der)
    info = request["certification_request_info"]
    sans: list[str] = []
    for attribute in info["attributes"]:
        if attribute["type"].native == "extension_request":
            for extensions in attribute["values"]:
                for extension in extensions:
                    if extension["extn_id"].native == "subject_alt_name":
                        sans += _names(extension["extn_value"].parsed)
    return {"subject": info["subject"].human_friendly, "subject_alternative_names": sans,
            "public_key": _key(info["subject_pk_info"]),
            "signature_algorithm": _signature_algorithm(request["signature_algorithm"])}


def _describe_crl(der: bytes) -> dict[str, Any]:
    crl = asn1_crl.CertificateList.load(der)
    tbs = crl["tbs_cert_list"]
    next_update = tbs["next_update"].native
    return {"issuer": crl.issuer.human_friendly,
            "crl_number": crl.crl_number_value.native if crl.crl_number_value else None,
            "this_update": tbs["this_update"].native.isoformat(),
            "next_update": next_update.isoformat() if next_update else None,
            "revoked": [format(r["user_certificate"].native, "x")
                        for r in tbs["revoked_certificates"]]}


_KINDS = {"CERTIFICATE": ("certificate", describe_certificate),
          "CERTIFICATE REQUEST": ("csr", _describe_csr),
          "NEW CERTIFICATE REQUEST": ("csr", _describe_csr),
          "X509 CRL": ("crl", _describe_crl)}


def _objects(data: bytes, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if asn1_pem.detect(data):
        blocks = list(asn1_pem.unarmor(data, multiple=True))
    else:
        blocks = [(kind, {}, data) for kind in ("CERTIFICATE", "CERTIFICATE REQUEST",
                                                "X509 CRL")]
    found = False
    for kind, _, der in blocks:
        if kind not in _KINDS:
            continue
        label, describe = _KINDS[kind]
        try:
            described = describe(der)
        except (ValueError, TypeError, KeyError):
            if asn1_pem.detect(data):
                raise UsageError(f"{name}: a {kind} block does not parse") from None
            continue  # DER: try the next kind
        found = True
        yield label, described
        if not asn1_pem.detect(data):
            break
    if not found:
        raise UsageError(f"{name}: no certificate, CSR or CRL found (PEM or DER)")


def _cmd_inspect(args: argparse.Namespace) -> int:
    data = read_input(args.file, binary=True)
    objects = list(_objects(data, args.file))
    if args.json:
        print(json.dumps([{"type": label, **fields} for label, fields in objects], indent=2))
        return EXIT_OK
    for index, (label, fields) in enumerate(objects):
        if index:
            print()
        print(f"{label} {index + 1} of {len(objects)}:" if len(objects) > 1 else f"{label}:")
        for key, value in fields.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"  {key}: {shown}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add `hsmca inspect`."""
    p = sub.add_parser("inspect", help="show what a certificate, CSR or CRL file says",
                       description=__doc__)
    p.add_argument("file", metavar="FILE", help="PEM or DER file (- for stdin)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(fn=guarded(_cmd_inspect))
