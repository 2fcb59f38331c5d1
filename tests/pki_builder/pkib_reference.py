"""The slow reference path: the same certificates built from asn1crypto objects.

Independent of service.pki.builder except for the inputs: extension values are spelled
as asn1crypto natives, SKI comes from cryptography, algorithm identifiers from asn1crypto.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from asn1crypto import algos, core, keys, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization

from service.pki.signer import SignatureAlgorithm

_NULL_PARAM = {"sha256_rsa", "sha384_rsa", "sha512_rsa"}


def signature_algorithm(alg: SignatureAlgorithm) -> algos.SignedDigestAlgorithm:
    if alg is SignatureAlgorithm.RSASSA_PSS_SHA256:
        sha256 = {"algorithm": "sha256", "parameters": core.Null()}
        return algos.SignedDigestAlgorithm({
            "algorithm": "rsassa_pss",
            "parameters": {"hash_algorithm": sha256,
                           "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": sha256},
                           "salt_length": 32}})
    if alg is SignatureAlgorithm.SM3_SM2:
        return algos.SignedDigestAlgorithm({"algorithm": "1.2.156.10197.1.501"})
    if alg.value in _NULL_PARAM:
        return algos.SignedDigestAlgorithm({"algorithm": alg.value, "parameters": core.Null()})
    return algos.SignedDigestAlgorithm({"algorithm": alg.value})


def time(dt: datetime) -> x509.Time:
    return x509.Time({"utc_time": dt} if dt.year < 2050 else {"general_time": dt})


def ski_of(spki_der: bytes) -> bytes:
    pub = serialization.load_der_public_key(spki_der)
    return cx509.SubjectKeyIdentifier.from_public_key(pub).digest  # type: ignore[arg-type]


def ext(extn_id: str, critical: bool, value: Any) -> x509.Extension:
    return x509.Extension({"extn_id": extn_id, "critical": critical, "extn_value": value})


def reference_tbs(*, alg: SignatureAlgorithm, serial: int, issuer: x509.Name,
                  not_before: datetime, not_after: datetime, subject: x509.Name,
                  spki_der: bytes, extensions: Sequence[x509.Extension]) -> bytes:
    tbs = x509.TbsCertificate({
        "version": "v3",
        "serial_number": serial,
        "signature": signature_algorithm(alg),
        "issuer": issuer,
        "validity": {"not_before": time(not_before), "not_after": time(not_after)},
        "subject": subject,
        "subject_public_key_info": keys.PublicKeyInfo.load(spki_der),
        "extensions": list(extensions),
    })
    return bytes(tbs.dump(force=True))


def leaf_extensions(*, spki_der: bytes, issuer_ski: bytes, key_usage: set[str] | None,
                    ekus: list[str], sans: x509.GeneralNames | None, san_critical: bool = False,
                    eku_critical: bool = False, crl_url: str | None = None
                    ) -> list[x509.Extension]:
    out = [ext("basic_constraints", True, {"ca": False})]
    if key_usage:
        out.append(ext("key_usage", True, key_usage))
    if ekus:
        out.append(ext("extended_key_usage", eku_critical, ekus))
    out.append(ext("key_identifier", False, ski_of(spki_der)))
    out.append(ext("authority_key_identifier", False, {"key_identifier": issuer_ski}))
    if sans is not None:
        out.append(ext("subject_alt_name", san_critical, sans))
    if crl_url is not None:
        out.append(crl_dp(crl_url))
    return out


def crl_dp(url: str) -> x509.Extension:
    return ext("crl_distribution_points", False, [
        {"distribution_point": {"full_name": [
            x509.GeneralName("uniform_resource_identifier", url)]}}])


def ca_extensions(*, spki_der: bytes, issuer_ski: bytes, path_len: int | None,
                  key_usage: set[str], ekus: list[str] | None = None,
                  crl_url: str | None = None) -> list[x509.Extension]:
    bc: dict[str, Any] = {"ca": True}
    if path_len is not None:
        bc["path_len_constraint"] = path_len
    out = [ext("basic_constraints", True, bc), ext("key_usage", True, key_usage)]
    if ekus:
        out.append(ext("extended_key_usage", False, ekus))
    out.append(ext("key_identifier", False, ski_of(spki_der)))
    out.append(ext("authority_key_identifier", False, {"key_identifier": issuer_ski}))
    if crl_url is not None:
        out.append(crl_dp(url=crl_url))
    return out
