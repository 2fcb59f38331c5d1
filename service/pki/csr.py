"""Strict parsing and verification of PKCS#10 certificate signing requests (RFC 2986).

A CSR is accepted only as exactly one PEM block (RFC 7468 5.1 labels ``CERTIFICATE REQUEST``
or the legacy ``NEW CERTIFICATE REQUEST``) with nothing but whitespace around it, DER that
re-encodes byte for byte, a self-signature that verifies with the key it carries (proof of
possession, RFC 2986 3), and a key that passes the key policy.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

from asn1crypto import csr, keys, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from service.errors import InvalidArgument
from service.pki import pem
from service.pki.algorithms import (
    CURVE_BITS,
    SM2_CURVE,
    CaAlgorithm,
    KeyFamily,
    key_family_of_spki,
)
from service.pki.builder import read_child, read_tlv
from service.pki.names import SanType, SubjectAltName, common_name_of

REASON_CSR = "InvalidParameter.Csr"

MAX_CSR_CHARS = 64 * 1024
# Larger RSA keys only cost verification time; nobody needs them (and RSA_4096 is the API max).
MAX_RSA_BITS = 16384

_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)
_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=REASON_CSR)


@dataclass(frozen=True)
class ParsedCsr:
    """A CSR that parsed strictly, verified, and passed the key policy."""

    der: bytes
    subject_der: bytes  # the subject Name, exactly as in the CSR
    public_key_info: bytes  # SubjectPublicKeyInfo DER, as in the CSR
    key_family: KeyFamily
    key_bits: int  # RSA modulus bits, or the curve's field size (256/384/521)
    curve: str | None  # asn1crypto named curve for ECC/SM2, None for RSA
    signature_algorithm: str  # asn1crypto name of the CSR's signature, e.g. "sha256_ecdsa"
    requested_sans: tuple[SubjectAltName, ...]  # from the extensionRequest attribute
    common_name: str | None  # the subject's (last) commonName

    def __post_init__(self) -> None:
        """Keep the fields consistent with each other."""
        if (self.key_family == "RSA") != (self.curve is None):
            raise ValueError("ParsedCsr.curve must be set exactly for ECC and SM2 keys")
        if self.key_bits <= 0:
            raise ValueError("ParsedCsr.key_bits must be positive")

    @functools.cached_property
    def subject(self) -> x509.Name:
        """The subject as an asn1crypto Name (decoded on first use; issuance needs only DER)."""
        return x509.Name.load(self.subject_der, strict=True)

    @property
    def algorithm(self) -> CaAlgorithm | None:
        """The API algorithm name of the CSR's key, if it has one (RSA-3072 has none)."""
        bits_or_curve: int | str = self.curve if self.curve is not None else self.key_bits
        return CaAlgorithm.for_key(self.key_family, bits_or_curve)


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
    # The common CSR (RSA/ECDSA with SHA-2, a named curve, DNS/IP SANs) takes a DER walk
    # plus cryptography's Rust parser and verifier: ~1/4 of the asn1crypto path's time,
    # which runs once per issued certificate. Anything else, and every rejection, goes
    # the asn1crypto way below, which names what is wrong.
    try:
        fast = _parse_fast(der, min_rsa_bits)
    except (*_ASN1_ERRORS, InvalidArgument, UnsupportedAlgorithm, cx509.InvalidVersion):
        fast = None
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
        common_name = common_name_of(subject)
        empty = [i for i, rdn in enumerate(subject.chosen, 1) if len(rdn) == 0]
    except _ASN1_ERRORS as e:
        raise _fail(f"the CSR's subject cannot be decoded: {e}") from e
    if empty:
        # X.501 / RFC 5280 4.1.2.4: RelativeDistinguishedName ::= SET SIZE (1..MAX).
        raise _fail(f"the CSR's subject has an empty RDN (number {empty[0]}); an RDN holds at "
                    "least one attribute")
    return ParsedCsr(
        der=der,
        subject_der=subject.dump(),
        public_key_info=spki,
        key_family=family,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=signature_algorithm,
        requested_sans=_requested_sans(req),
        common_name=common_name,
    )


# --- the fast path ------------------------------------------------------------------------
# AlgorithmIdentifier DER (RFC 4055 5 with NULL parameters; RFC 5758 3.2 without) -> the
# asn1crypto name, the key family it needs, and the verify() arguments after (signature,
# data) for that family's key: what cryptography's is_signature_valid would pass for it.
_FAST_SIGNATURE_ALGORITHMS: dict[bytes, tuple[str, KeyFamily, tuple[Any, ...]]] = {
    bytes.fromhex("300d06092a864886f70d01010b0500"):
        ("sha256_rsa", "RSA", (padding.PKCS1v15(), hashes.SHA256())),
    bytes.fromhex("300d06092a864886f70d01010c0500"):
        ("sha384_rsa", "RSA", (padding.PKCS1v15(), hashes.SHA384())),
    bytes.fromhex("300d06092a864886f70d01010d0500"):
        ("sha512_rsa", "RSA", (padding.PKCS1v15(), hashes.SHA512())),
    bytes.fromhex("300a06082a8648ce3d040302"):
        ("sha256_ecdsa", "ECC", (ec.ECDSA(hashes.SHA256()),)),
    bytes.fromhex("300a06082a8648ce3d040303"):
        ("sha384_ecdsa", "ECC", (ec.ECDSA(hashes.SHA384()),)),
    bytes.fromhex("300a06082a8648ce3d040304"):
        ("sha512_ecdsa", "ECC", (ec.ECDSA(hashes.SHA512()),)),
}
_RSA_ENCRYPTION = bytes.fromhex("300d06092a864886f70d0101010500")
# RFC 5480 2.1.1: id-ecPublicKey with the namedCurve of the key's curve, nothing else.
_EC_SPKI_ALGORITHMS = {
    "secp256r1": bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107"),
    "secp384r1": bytes.fromhex("301006072a8648ce3d020106052b81040022"),
    "secp521r1": bytes.fromhex("301006072a8648ce3d020106052b81040023"),
}
_OID_CN = bytes.fromhex("550403")
_OID_EXTENSION_REQUEST = bytes.fromhex("2a864886f70d01090e")
_OID_SAN = bytes.fromhex("551d11")
_SAN_TAGS = {0x81: SanType.RFC822_NAME, 0x82: SanType.DNS_NAME, 0x86: SanType.URI}
_CN_STRING_TAGS = {0x13: "ascii", 0x16: "ascii", 0x0C: "utf-8"}  # Printable, IA5, UTF8


def _parse_fast(der: bytes, min_rsa_bits: int) -> ParsedCsr | None:
    """The common CSR, fully checked; None for anything the asn1crypto path should judge."""
    # DER only, the whole input, version 0 (X.690 10, RFC 2986 4.1): after this the layout
    # below is known to be well formed; the walk only locates the parts and checks forms.
    request = cx509.load_der_x509_csr(der)
    tag, start, end = read_tlv(der)
    if tag != 0x30 or end != len(der):
        return None
    # CertificationRequest: certificationRequestInfo, signatureAlgorithm, signature.
    tag, info_start, info_end = read_tlv(der, start)
    if tag != 0x30:
        return None
    _, _, alg_end = read_tlv(der, info_end)
    algorithm = _FAST_SIGNATURE_ALGORITHMS.get(der[info_end:alg_end])
    if algorithm is None:
        return None
    signature_algorithm, family, verify_args = algorithm
    tag, sig_start, sig_end = read_tlv(der, alg_end)
    if tag != 0x03 or sig_end != end or sig_start == sig_end or der[sig_start] != 0:
        return None  # an octet-aligned BIT STRING, the last element
    # CertificationRequestInfo: version, subject, subjectPKInfo, [0] attributes; nothing else.
    if der[info_start:info_start + 3] != b"\x02\x01\x00":
        return None  # RFC 2986 4.1: version 0 (v1)
    subject_start = info_start + 3
    tag, subject_cs, spki_start = read_tlv(der, subject_start)
    if tag != 0x30:
        return None
    tag, spki_cs, spki_end = read_tlv(der, spki_start)
    if tag != 0x30:
        return None
    tag, attrs_cs, attrs_end = read_tlv(der, spki_end)
    if tag != 0xA0 or attrs_end != info_end:
        return None
    spki = der[spki_start:spki_end]
    _, _, spki_alg_end = read_tlv(der, spki_cs)
    spki_algorithm = der[spki_cs:spki_alg_end]
    public_key = request.public_key()
    if family == "RSA":
        # rsaEncryption with NULL parameters (RFC 3279 2.3.1), not id-RSASSA-PSS keys.
        if spki_algorithm != _RSA_ENCRYPTION or not isinstance(public_key, rsa.RSAPublicKey):
            return None
        key_bits, curve = public_key.key_size, None
        if not min_rsa_bits <= key_bits <= MAX_RSA_BITS:
            return None
    else:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return None
        curve = public_key.curve.name
        if spki_algorithm != _EC_SPKI_ALGORITHMS.get(curve):
            return None  # another curve, or not exactly id-ecPublicKey + namedCurve
        key_bits = CURVE_BITS[curve]
    # RFC 2986 4.2: proof of possession, with the algorithm the CSR names, over the DER of
    # certificationRequestInfo: what request.is_signature_valid does, minus a second key load.
    try:
        public_key.verify(der[sig_start + 1:sig_end], der[start:info_end], *verify_args)
    except InvalidSignature:
        return None
    common_name = _fast_common_name(der, subject_cs, spki_start)
    sans = _fast_requested_sans(der, attrs_cs, attrs_end)
    if sans is None:
        return None
    return ParsedCsr(
        der=der,
        subject_der=der[subject_start:spki_start],
        public_key_info=spki,
        key_family=family,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=signature_algorithm,
        requested_sans=sans,
        common_name=common_name,
    )


def _fast_common_name(der: bytes, start: int, end: int) -> str | None:
    """The last commonName of the subject (as common_name_of), from the DER."""
    cn: str | None = None
    pos = start
    while pos < end:
        rdn_tag, rs, pos = read_child(der, pos, end)
        if rdn_tag != 0x31 or rs == pos:
            raise ValueError("RDN is not a non-empty SET")
        apos = rs
        while apos < pos:
            atv_tag, a_s, apos = read_child(der, apos, pos)
            if atv_tag != 0x30:
                raise ValueError("AttributeTypeAndValue is malformed")
            oid_tag, os_, oe = read_child(der, a_s, apos)
            if oid_tag != 0x06 or oe == apos:
                raise ValueError("AttributeTypeAndValue is malformed")
            value_tag, vs, ve = read_child(der, oe, apos)
            if ve != apos:
                raise ValueError("AttributeTypeAndValue is malformed")
            if der[os_:oe] == _OID_CN:
                encoding = _CN_STRING_TAGS.get(value_tag)
                if encoding is None:
                    raise ValueError("commonName string type left to asn1crypto")
                cn = der[vs:ve].decode(encoding)
    return cn


def _fast_requested_sans(der: bytes, start: int, end: int) -> tuple[SubjectAltName, ...] | None:
    """SANs of the extensionRequest (PKCS#9) as _requested_sans; None: use that one."""
    requests: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        attr_tag, s, pos = read_child(der, pos, end)
        if attr_tag != 0x30 or s == pos:
            return None
        oid_tag, os_, oe = read_child(der, s, pos)
        if oid_tag != 0x06 or oe == pos:
            return None
        set_tag, vs, ve = read_child(der, oe, pos)
        if set_tag != 0x31 or ve != pos:
            return None
        if der[os_:oe] == _OID_EXTENSION_REQUEST:
            while vs < ve:
                tag, cs, ce = read_child(der, vs, ve)
                requests.append((tag, cs, ce))
                vs = ce
    if len(requests) > 1:
        return None
    if not requests:
        return ()
    tag, s, e = requests[0]
    if tag != 0x30:
        return None
    seen: set[bytes] = set()
    sans: tuple[SubjectAltName, ...] = ()
    pos = s
    while pos < e:
        # Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }
        ext_tag, es, pos = read_child(der, pos, e)
        if ext_tag != 0x30 or es == pos:
            return None
        oid_tag, os_, oe = read_child(der, es, pos)
        if oid_tag != 0x06 or oe == pos:
            return None
        value_tag, vs, ve = read_child(der, oe, pos)
        if value_tag == 0x01:
            if ve - vs != 1 or ve == pos:
                return None
            value_tag, vs, ve = read_child(der, ve, pos)
        if value_tag != 0x04 or ve != pos:
            return None
        oid = der[os_:oe]
        if oid in seen:
            return None
        seen.add(oid)
        if oid == _OID_SAN:
            tag, ns, ne = read_child(der, vs, ve)
            if tag != 0x30 or ne != ve:
                return None
            names: list[SubjectAltName] = []
            while ns < ne:
                tag, cs, ce = read_child(der, ns, ne)
                names.append(_fast_san(der, tag, cs, ce))
                ns = ce
            sans = tuple(names)
    return sans


def _fast_san(der: bytes, tag: int, start: int, end: int) -> SubjectAltName:
    """One GeneralName as SubjectAltName.from_asn1 reads it (raises for the slow path)."""
    raw = der[start:end]
    if tag == 0x87:
        if len(raw) not in (4, 16):
            raise ValueError("iPAddress length")
        return SubjectAltName.of(SanType.IP_ADDRESS, str(ipaddress.ip_address(raw)),
                                 reason=REASON_CSR)
    san_type = _SAN_TAGS.get(tag)
    if san_type is None:
        raise ValueError("GeneralName type left to asn1crypto")
    return SubjectAltName.of(san_type, raw.decode("ascii"), reason=REASON_CSR)
