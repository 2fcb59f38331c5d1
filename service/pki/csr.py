"""Strict parsing and verification of PKCS#10 certificate signing requests (RFC 2986).

A CSR is accepted only as exactly one PEM block (RFC 7468 5.1 labels ``CERTIFICATE REQUEST``
or the legacy ``NEW CERTIFICATE REQUEST``) with nothing but whitespace around it, DER that
re-encodes byte for byte, a self-signature that verifies with the key it carries (proof of
possession, RFC 2986 3), a key that passes the key policy, and a subject with at most one
commonName (the name authorization checks and the certificate carries).
"""

from __future__ import annotations

from asn1crypto import csr, keys, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from service.errors import InvalidArgument, quote
from service.pki import csr_fast, pem
from service.pki.algorithms import (
    CURVE_BITS,
    SM2_CURVE,
    KeyFamily,
    key_family_of_spki,
)
from service.pki.names import SubjectAltName, common_names_of
from service.pki.parsed_csr import MAX_RSA_BITS as MAX_RSA_BITS
from service.pki.parsed_csr import REASON_CSR as REASON_CSR
from service.pki.parsed_csr import ParsedCsr as ParsedCsr

MAX_CSR_CHARS = 64 * 1024

_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)
_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=REASON_CSR)


def decode_pem(text: str) -> bytes:
    """Extract the DER of the single CSR PEM block in ``text``, refusing anything else."""
    if len(text) > MAX_CSR_CHARS:
        raise _fail(f"the CSR is {len(text)} characters long; at most {MAX_CSR_CHARS} accepted")
    try:
        ders = pem.decode_blocks(text, _LABELS)
    except pem.PemError as e:
        raise _fail(f"CSR: {e}") from e
    if len(ders) > 1:
        raise _fail(
            f"the CSR text contains {len(ders)} PEM blocks; exactly one CERTIFICATE "
            "REQUEST block is expected"
        )
    return ders[0]


def _load_strict(der: bytes) -> csr.CertificationRequest:
    """Parse ``der`` as a PKCS#10 CertificationRequest, refusing BER and trailing octets."""
    try:
        # cryptography's Rust parser accepts DER only (X.690 10): non-minimal lengths,
        # indefinite lengths, unsorted SETs and trailing data fail here, including inside the
        # subject Name, which certificates copy byte for byte. That is ~200x faster than
        # re-encoding with asn1crypto, and this runs once per issued certificate.
        cx509.load_der_x509_csr(der)
    except cx509.InvalidVersion as e:
        raise _fail("the CSR version must be 0 (v1, RFC 2986 4.1)") from e
    except ValueError as e:
        raise _fail(f"the CSR is not a DER-encoded PKCS#10 request (RFC 2986): {e}") from e
    try:
        req = csr.CertificationRequest.load(der, strict=True)
        info = req["certification_request_info"]
        version = info["version"].native
    except _ASN1_ERRORS as e:
        raise _fail(f"the CSR is not a valid PKCS#10 structure (RFC 2986): {e}") from e
    if version != "v1":
        raise _fail("the CSR version must be 0 (v1, RFC 2986 4.1)")
    return req


def _verify_signature(req: csr.CertificationRequest, spki: bytes, family: KeyFamily) -> str:
    """Verify the self-signature (RFC 2986 4.2) and return the signature algorithm name."""
    sig_alg = req["signature_algorithm"]
    name = str(sig_alg["algorithm"].native)
    tbs = req["certification_request_info"].dump()
    try:
        signature = req["signature"].native
    except _ASN1_ERRORS as e:
        raise _fail(f"the CSR signature BIT STRING is malformed: {e}") from e
    bad = _fail(
        "the CSR signature does not verify with the CSR's own public key "
        "(the CSR was altered or not signed by the key it contains)"
    )
    if name == "sm3_sm2":
        if family != "SM2":
            raise _fail(f"the CSR is signed with SM3withSM2 but its key is {family}")
        _verify_sm2(spki, signature, tbs, bad)
        return name
    try:
        algo = sig_alg.signature_algo
        hash_name = sig_alg.hash_algo
    except ValueError:
        raise _fail(f"unsupported CSR signature algorithm {name!r}") from None
    hash_cls = _HASHES.get(hash_name)
    if hash_cls is None:
        raise _fail(
            f"the CSR is signed with {hash_name.upper()}; only SHA-256, SHA-384 and SHA-512 "
            "(or SM3 for SM2 keys) are accepted"
        )
    public_key = serialization.load_der_public_key(spki)
    try:
        if algo == "rsassa_pkcs1v15":
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise _fail(f"the CSR is signed with {name} but its key is {family}")
            public_key.verify(signature, tbs, padding.PKCS1v15(), hash_cls())
        elif algo == "rsassa_pss":
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise _fail(f"the CSR is signed with RSASSA-PSS but its key is {family}")
            params = sig_alg["parameters"]
            mgf = params["mask_gen_algorithm"]
            # RFC 4055 3.1: MGF1 with the same hash; trailerField 1.
            if (
                mgf["algorithm"].native != "mgf1"
                or mgf["parameters"]["algorithm"].native != hash_name
                or params["trailer_field"].native != "trailer_field_bc"
            ):
                raise _fail("RSASSA-PSS CSR signatures must use MGF1 with the same hash")
            pss = padding.PSS(
                mgf=padding.MGF1(hash_cls()), salt_length=int(params["salt_length"].native)
            )
            public_key.verify(signature, tbs, pss, hash_cls())
        elif algo == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise _fail(f"the CSR is signed with {name} but its key is {family}")
            public_key.verify(signature, tbs, ec.ECDSA(hash_cls()))
        else:
            raise _fail(f"unsupported CSR signature algorithm {name!r}")
    except InvalidSignature:
        raise bad from None
    return name


def _verify_sm2(spki: bytes, signature: bytes, tbs: bytes, bad: InvalidArgument) -> None:
    """SM2 with SM3 and the default distinguishing ID 1234567812345678 (RFC 8998 3.2.1)."""
    try:
        from tongsuopy.crypto import hashes as sm_hashes
        from tongsuopy.crypto import serialization as sm_serialization
        from tongsuopy.crypto.asymciphers import ec as sm_ec
        from tongsuopy.crypto.exceptions import InvalidSignature as SmInvalidSignature
        from tongsuopy.crypto.exceptions import UnsupportedAlgorithm as SmUnsupported
    except ImportError:  # pragma: no cover - tongsuopy is a project dependency
        raise _fail("SM2 CSRs cannot be verified: the tongsuopy library is not installed") from None
    try:
        public_key = sm_serialization.load_der_public_key(spki)
    except (ValueError, SmUnsupported) as e:
        raise _fail(f"the CSR's SM2 public key is invalid: {e}") from e
    try:
        # Tongsuo computes Z with the default ID when none is set (GB/T 32918.2, RFC 8998).
        public_key.verify(signature, tbs, sm_ec.ECDSA(sm_hashes.SM3()))
    except SmInvalidSignature:
        raise _fail(
            f"{bad.message}; SM2 signatures are checked with SM3 and the default ID "
            "1234567812345678 (RFC 8998 3.2.1); OpenSSL 3.0 needs "
            "'-sigopt distid:1234567812345678' to sign with it"
        ) from None


def _requested_sans(req: csr.CertificationRequest) -> tuple[SubjectAltName, ...]:
    """The SANs of the extensionRequest attribute (PKCS#9 / RFC 2985 5.4.2), validated."""
    found: list[x509.Extensions] = []
    for attribute in req["certification_request_info"]["attributes"]:
        if attribute["type"].native == "extension_request":
            found.extend(attribute["values"])
    if len(found) > 1:
        raise _fail("the CSR has more than one extensionRequest value")
    if not found:
        return ()
    seen: set[str] = set()
    sans: tuple[SubjectAltName, ...] = ()
    try:
        extensions = list(found[0])
        for extension in extensions:
            extension["extn_id"].dotted  # noqa: B018 - decodes it now, inside the try
            extension["critical"].native  # noqa: B018
    except _ASN1_ERRORS as e:
        raise _fail(f"the CSR's extensionRequest cannot be decoded: {e}") from e
    for extension in extensions:
        oid = extension["extn_id"].dotted
        if oid in seen:
            # RFC 5280 4.2: a certificate MUST NOT include more than one instance of an extension.
            raise _fail(f"the CSR requests extension {oid} more than once")
        seen.add(oid)
        if extension["extn_id"].native == "subject_alt_name":
            try:
                general_names = extension["extn_value"].parsed
                if general_names is None:
                    raise ValueError("the extension has no value")
                general_names.native  # noqa: B018 - decodes every name now, inside the try
            except _ASN1_ERRORS as e:
                raise _fail(f"the CSR's subjectAltName extension cannot be decoded: {e}") from e
            sans = tuple(
                _csr_san(general_name, i) for i, general_name in enumerate(general_names, 1)
            )
    return sans


def _csr_san(general_name: x509.GeneralName, index: int) -> SubjectAltName:
    try:
        return SubjectAltName.from_asn1(general_name, reason=REASON_CSR)
    except InvalidArgument as e:
        raise _fail(f"subject alternative name {index} in the CSR: {e.message}") from e


def parse_csr(text: str, *, min_rsa_bits: int) -> ParsedCsr:
    """Parse a PEM CSR strictly, verify its signature and apply the key policy."""
    der = decode_pem(text)
    # The common CSR (RSA/ECDSA with SHA-2, a named curve, DNS/IP SANs) takes the fast path
    # (service.pki.csr_fast): ~1/4 of the asn1crypto path's time, and this runs once per
    # issued certificate. Anything else, and every rejection, goes
    # the asn1crypto way below, which names what is wrong.
    fast = csr_fast.parse(der, min_rsa_bits)
    if fast is not None:
        return fast
    req = _load_strict(der)
    info = req["certification_request_info"]
    spki_obj: keys.PublicKeyInfo = info["subject_pk_info"]
    spki = spki_obj.dump()
    family, bits_or_curve = key_family_of_spki(spki_obj, reason=REASON_CSR)
    if isinstance(bits_or_curve, int):
        key_bits, curve = bits_or_curve, None
        if key_bits < min_rsa_bits:
            raise _fail(f"the CSR's RSA key is {key_bits} bits; the minimum is {min_rsa_bits} bits")
        if key_bits > MAX_RSA_BITS:
            raise _fail(
                f"the CSR's RSA key is {key_bits} bits; at most {MAX_RSA_BITS} bits are accepted"
            )
    else:
        curve = bits_or_curve
        key_bits = CURVE_BITS[curve]
    try:
        signature_algorithm = _verify_signature(req, spki, family)
    except (ValueError, UnsupportedAlgorithm) as e:
        # Raised while loading the key: e.g. an EC point not on the curve, a bad RSA exponent.
        what = "SM2" if curve == SM2_CURVE else family
        raise _fail(f"the CSR's {what} public key is invalid: {e}") from e
    subject: x509.Name = info["subject"]
    try:
        common_names = common_names_of(subject)
        empty = [i for i, rdn in enumerate(subject.chosen, 1) if len(rdn) == 0]
    except _ASN1_ERRORS as e:
        raise _fail(f"the CSR's subject cannot be decoded: {e}") from e
    if empty:
        # X.501 / RFC 5280 4.1.2.4: RelativeDistinguishedName ::= SET SIZE (1..MAX).
        raise _fail(f"the CSR's subject has an empty RDN (number {empty[0]}); an RDN holds at "
                    "least one attribute")
    if len(common_names) > 1:
        # The CN is what authorization checks (a host name in it is held to a role's DNS
        # names) and what the certificate carries: one, never a choice among several.
        shown = ", ".join(quote(cn) for cn in common_names[:2])
        more = ", ..." if len(common_names) > 2 else ""
        raise _fail(f"the CSR's subject has {len(common_names)} commonName attributes "
                    f"({shown}{more}); a subject has at most one")
    return ParsedCsr(
        der=der,
        subject_der=subject.dump(),
        public_key_info=spki,
        key_family=family,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=signature_algorithm,
        requested_sans=_requested_sans(req),
        common_name=common_names[0] if common_names else None,
    )
