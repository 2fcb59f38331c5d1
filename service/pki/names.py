"""Subject names, subject alternative names and extended key usages from API parameters.

Subject DNs follow RFC 5280 4.1.2.4 with explicit string types, each attribute in its type's
syntax: countryName and the other PrintableString attributes (X.520, RFC 5280 Appendix A,
RFC 3739) as PrintableString, emailAddress and domainComponent as IA5String, DirectoryString
attributes as UTF8String (RFC 5280 4.1.2.6: CAs MUST use UTF8String for DirectoryString from
2004 on). Upper bounds are RFC 5280 Appendix A's ``ub-*`` values. SANs follow RFC 5280
4.2.1.6; Matter attributes follow the Matter Core Specification 6.5.6 (operational certificate
DN encoding).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import idna
from asn1crypto import core, x509
from publicsuffixlist import PublicSuffixList

from service import limits
from service.errors import InvalidArgument, quote
from service.hints import spelling_hint

# ---------------------------------------------------------------------------------------
# Reasons
# ---------------------------------------------------------------------------------------

REASON_SUBJECT = "InvalidParameter.Subject"
REASON_SAN = "InvalidParameter.SubjectAlternativeNames"
REASON_DOMAIN = "InvalidParameter.Domain"
REASON_SAN_TYPE = "InvalidParameter.SanType"
REASON_SAN_VALUE = "InvalidParameter.SanValue"
REASON_EKU = "InvalidParameter.ExtendedKeyUsages"

# ---------------------------------------------------------------------------------------
# Subject alternative names (RFC 5280 4.2.1.6)
# ---------------------------------------------------------------------------------------


class SanType(enum.Enum):
    """A SAN type by its API spelling; ``asn1_name`` is the asn1crypto GeneralName choice."""

    RFC822_NAME = "rfc822Name"
    DNS_NAME = "dNSName"
    URI = "uniformResourceIdentifier"
    IP_ADDRESS = "iPAddress"

    @property
    def asn1_name(self) -> str:
        """The asn1crypto ``GeneralName`` alternative name for this type."""
        return _SAN_ASN1[self]


_SAN_ASN1 = {
    SanType.RFC822_NAME: "rfc822_name",
    SanType.DNS_NAME: "dns_name",
    SanType.URI: "uniform_resource_identifier",
    SanType.IP_ADDRESS: "ip_address",
}
_SAN_FROM_ASN1 = {v: k for k, v in _SAN_ASN1.items()}

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
# RFC 3986 2: unreserved / reserved / pct-encoded; anything else must be percent-encoded.
_URI_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*\Z")
# Schemes that carry content or script rather than name a subject: a URI SAN never needs them.
_REFUSED_URI_SCHEMES = frozenset(("javascript", "data", "vbscript", "blob", "about"))
# Characters no name value may hold: C0 and C1 controls and DEL (a NUL ends the name for C
# consumers), and the Unicode bidirectional formatting characters ALM, LRM, RLM, LRE..RLO,
# LRI..PDI, which make a name display as another (Unicode Technical Report #36).
UNSAFE_NAME_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Printable ASCII without space: 0x21..0x7E.
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*\Z")
# A whole dNSName that passes every check of normalize_dns_name, lower-case: an optional
# "*." then labels of _LABEL joined by dots. Only a shortcut for the accepted case; the
# checks below still decide (and word) every refusal.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?(?:{_DNS_LABEL}\.)*{_DNS_LABEL}\Z")
# What authorization reads as a host name in a CN (looks_like_host_name): looser than
# _DNS_NAME on purpose (upper case, a trailing dot, a label that starts with a hyphen).
_HOST_NAME_LIKE = re.compile(r"(\*\.)?([A-Za-z0-9-]+\.)+[A-Za-z0-9-]+\.?")
# Characters an IPv4 address can consist of; anything else without a ':' is no IP address.
_IPV4_CHARS = re.compile(r"[0-9.]*\Z")
# A dotted-quad IPv4 address already in canonical form (no leading zeros, each 0-255).
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}\Z")


def _fail(reason: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=reason)


def _check_printable_ascii(value: str, what: str, reason: str) -> None:
    if not _PRINTABLE_ASCII.match(value):
        raise _fail(
            reason,
            f"{what} {quote(value)} contains whitespace, control or non-ASCII characters "
            "(IA5String values in certificates; use the A-label/punycode or "
            "percent-encoded form)",
        )


def dns_name_syntax(value: str, *, reason: str = REASON_SAN, wildcard: bool = True) -> str:
    """Check a dNSName's syntax (RFC 5280 4.2.1.6, RFC 1123 2.1; ``*.`` prefix); lower-case it."""
    # Fast acceptance (runs several times per issued certificate). isascii() first: some
    # non-ASCII characters lower-case to ASCII (U+212A KELVIN SIGN -> "k").
    if value.isascii() and len(value) <= 253:
        name = value.lower()
        if (_DNS_NAME.match(name) and (wildcard or not name.startswith("*."))
                and not name.rpartition(".")[2].isdigit()):
            return name
    what = "DNS name"
    if value == "":
        raise _fail(reason, "DNS name is empty")
    _check_printable_ascii(value, what, reason)
    name = value.lower()
    if len(name) > 253:
        raise _fail(reason, f"DNS name {quote(value)} is {len(name)} characters long; at most 253")
    if name.endswith("."):
        raise _fail(reason, f"DNS name {quote(value)} must not end with a dot")
    labels = name.split(".")
    if labels[0] == "*":
        if not wildcard:
            raise _fail(reason, f"DNS name {quote(value)}: a wildcard is not allowed here")
        if len(labels) < 2:
            raise _fail(reason, f"DNS name {quote(value)}: a wildcard needs a domain after '*.'")
        labels = labels[1:]
    for label in labels:
        if label == "":
            raise _fail(reason, f"DNS name {quote(value)} has an empty label ('..' or leading dot)")
        if "*" in label:
            raise _fail(
                reason,
                f"DNS name {quote(value)}: '*' is only allowed as the whole left-most label ('*.')",
            )
        if len(label) > 63:
            raise _fail(reason, f"DNS name {quote(value)} has a label longer than 63 characters")
        if not _LABEL.match(label):
            raise _fail(
                reason,
                f"DNS name {quote(value)} has an invalid label {quote(label)}: labels use letters, "
                "digits and hyphens, and neither start nor end with a hyphen",
            )
    if labels[-1].isdigit():
        # RFC 1123 2.1: a top-level label is alphabetic; an all-numeric name is an IP address.
        raise _fail(
            reason,
            f"DNS name {quote(value)} ends in an all-numeric label; IP addresses go in iPAddress",
        )
    return name


def looks_like_host_name(value: str) -> bool:
    """Whether a CN reads as a host name: two or more dotted labels of letters, digits and
    hyphens (an optional ``*.`` first, a trailing dot allowed).

    For authorization, which must bound every CN a relying party might take for a host name:
    so it accepts more than normalize_dns_name (a CN it would refuse as a dNSName is still
    held to a role's DNS names), and a single label such as "alice" is not a host name.
    """
    return _HOST_NAME_LIKE.fullmatch(value) is not None


def normalize_dns_name(value: str, *, reason: str = REASON_SAN, wildcard: bool = True) -> str:
    """Validate a dNSName and lower-case it: the one DNS-name check of KMS and Private CA.

    Beyond the syntax (dns_name_syntax): every A-label (``xn--``) must be a valid IDNA 2008
    label (RFC 5890 2.3.2.1, RFC 5891 5.4; checked with the ``idna`` package), and a
    wildcard must not stand for a whole public suffix: ``*.com`` or ``*.co.uk`` (CA/B Forum
    BR 3.2.2.6, the ICANN section of the Public Suffix List).
    """
    name = dns_name_syntax(value, reason=reason, wildcard=wildcard)
    if "xn--" in name:
        for label in name.split("."):
            if label.startswith("xn--"):
                _check_a_label(label, value, reason)
    if name.startswith("*.") and _public_suffixes().is_public(name[2:]):
        raise _fail(
            reason,
            f"DNS name {quote(value)}: a wildcard directly under a public suffix "
            f"({name[2:]!r}) would match every domain registered there (CA/B Forum BR "
            "3.2.2.6, Public Suffix List)",
        )
    return name


def _check_a_label(label: str, value: str, reason: str) -> None:
    """RFC 5891 5.4: an A-label decodes to a valid U-label that encodes back to it."""
    try:
        ok = idna.encode(idna.decode(label)) == label.encode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        ok = False
    if not ok:
        raise _fail(
            reason,
            f"DNS name {quote(value)} has {quote(label)}, which is not a valid IDNA 2008 "
            "A-label (RFC 5891)",
        )


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List bundled with publicsuffixlist, ICANN section only (BR 3.2.2.6)."""
    return PublicSuffixList(only_icann=True)


def may_be_ip_address(value: str) -> bool:
    """False when ``value`` cannot be an IP address: no ':' (IPv6) and not only digits and
    dots (IPv4). A cheap test before normalize_ip_address, whose refusal is an exception."""
    return ":" in value or _IPV4_CHARS.match(value) is not None


def normalize_ip_address(value: str, *, reason: str = REASON_SAN) -> str:
    """Validate an IPv4/IPv6 address (no prefix, no zone) and return its canonical text."""
    if type(value) is str and ":" not in value:
        if _CANONICAL_IPV4.match(value):
            return value  # what ipaddress would return for it, without its parse
        if not may_be_ip_address(value):
            # Neither IPv6 (needs ':') nor IPv4 (digits and dots): skip ipaddress's parses.
            raise _fail(reason, f"{quote(value)} is not an IPv4 or IPv6 address")
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise _fail(reason, f"{quote(value)} is not an IPv4 or IPv6 address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise _fail(reason, f"IP address {quote(value)} must not carry a zone ('%...')")
    return addr.compressed


def normalize_email(value: str, *, reason: str = REASON_SAN) -> str:
    """Validate an rfc822Name as a basic addr-spec ``local@domain`` (RFC 5280 4.2.1.6)."""
    if value == "":
        raise _fail(reason, "email address is empty")
    _check_printable_ascii(value, "email address", reason)
    if len(value) > 254:
        raise _fail(reason, f"email address {quote(value)} is longer than 254 characters")
    local, sep, domain = value.rpartition("@")
    if not sep or not local:
        raise _fail(reason, f"{quote(value)} is not an email address of the form local-part@domain")
    # RFC 5322 3.4.1 dot-atom local part; quoted local parts are not accepted.
    atoms = local.split(".")
    if len(local) > 64 or any(not _ATEXT.match(a) for a in atoms):
        raise _fail(
            reason,
            f"email address {quote(value)} has an invalid local part {quote(local)} "
            "(dot-separated atoms of letters, digits and !#$%&'*+/=?^_`{|}~-; at most 64)",
        )
    try:
        domain_norm = normalize_dns_name(domain, reason=reason, wildcard=False)
    except InvalidArgument as e:
        raise _fail(reason, f"email address {quote(value)} has an invalid domain: "
                    f"{e.message}") from e
    return f"{local}@{domain_norm}"


def normalize_uri(value: str, *, reason: str = REASON_SAN) -> str:
    """Validate an absolute URI (RFC 3986 4.3; RFC 5280 4.2.1.6: scheme and host rules)."""
    if value == "":
        raise _fail(reason, "URI is empty")
    _check_printable_ascii(value, "URI", reason)
    scheme, sep, rest = value.partition(":")
    if not sep or not _URI_SCHEME.match(scheme):
        raise _fail(
            reason,
            f"URI {quote(value)} is not absolute: it must start with a scheme such as 'https:'",
        )
    if scheme.lower() in _REFUSED_URI_SCHEMES:
        raise _fail(
            reason,
            f"URI {quote(value)}: the {scheme.lower()}: scheme names content or script, not "
            "an identity; no certificate needs it (use https:, spiffe:, urn:, ...)",
        )
    if rest == "" or rest == "//":
        raise _fail(reason, f"URI {quote(value)} has no scheme-specific part")
    if "#" in rest:
        raise _fail(reason, f"URI {quote(value)} has a fragment; an absolute URI has none")
    if not _URI_CHARS.match(rest):
        raise _fail(
            reason,
            f"URI {quote(value)} contains characters that RFC 3986 requires to be percent-encoded "
            "(or a malformed %-escape)",
        )
    if rest.startswith("//"):
        # RFC 5280 4.2.1.6: a URI with an authority MUST name a FQDN or IP address as host.
        authority = rest[2:].split("/", 1)[0].split("?", 1)[0]
        hostport = authority.rpartition("@")[2]
        if hostport.startswith("["):
            host = hostport[1 : hostport.find("]")] if "]" in hostport else ""
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise _fail(reason, f"URI {quote(value)} has an invalid IPv6 host") from None
        else:
            host = hostport.split(":", 1)[0]
            if host == "":
                raise _fail(reason, f"URI {quote(value)} has an empty host")
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                try:
                    normalize_dns_name(host, reason=reason, wildcard=False)
                except InvalidArgument as e:
                    raise _fail(reason, f"URI {quote(value)} has an invalid host: "
                                f"{e.message}") from e
    return f"{scheme.lower()}:{rest}"


_NORMALIZERS = {
    SanType.DNS_NAME: normalize_dns_name,
    SanType.IP_ADDRESS: normalize_ip_address,
    SanType.RFC822_NAME: normalize_email,
    SanType.URI: normalize_uri,
}


@dataclass(frozen=True)
class SubjectAltName:
    """One SAN entry in normalised form (DNS names and email domains lower-case)."""

    type: SanType
    value: str

    def __post_init__(self) -> None:
        """Refuse values that are invalid or not in normalised form."""
        if not isinstance(self.type, SanType):
            raise TypeError(f"SubjectAltName.type must be a SanType, not {self.type!r}")
        normalized = _NORMALIZERS[self.type](self.value)
        if normalized != self.value:
            raise _fail(
                REASON_SAN,
                f"{self.type.value} {quote(self.value)} is not normalised ({quote(normalized)})",
            )

    @classmethod
    def of(cls, san_type: SanType, value: str, *, reason: str = REASON_SAN) -> SubjectAltName:
        """Validate and normalise ``value`` as ``san_type``; errors carry ``reason``."""
        normalized = _NORMALIZERS[san_type](value, reason=reason)
        if cls is not SubjectAltName:
            return cls(san_type, normalized)
        # The normalisers are idempotent: what __post_init__ would re-check holds already.
        san = object.__new__(cls)
        object.__setattr__(san, "type", san_type)
        object.__setattr__(san, "value", normalized)
        return san

    @classmethod
    def from_asn1(cls, name: x509.GeneralName, *, reason: str = REASON_SAN) -> SubjectAltName:
        """Convert an asn1crypto GeneralName of one of the four supported types."""
        san_type = _SAN_FROM_ASN1.get(name.name)
        if san_type is None:
            raise _fail(
                reason,
                f"subject alternative name type {name.name!r} is not supported; supported: "
                + ", ".join(t.value for t in SanType),
            )
        if san_type is SanType.IP_ADDRESS:
            raw = name.chosen.contents
            if len(raw) not in (4, 16):
                # RFC 5280 4.2.1.6: 4 octets (IPv4) or 16 (IPv6); a mask only in constraints.
                raise _fail(reason, "an iPAddress SAN must be 4 or 16 octets long")
            return cls.of(san_type, str(ipaddress.ip_address(raw)), reason=reason)
        # Read the raw IA5String octets: asn1crypto's native value IDNA-decodes some types.
        try:
            text = name.chosen.contents.decode("ascii")
        except UnicodeDecodeError:
            raise _fail(reason, f"{san_type.value} SAN is not ASCII (IA5String)") from None
        return cls.of(san_type, text, reason=reason)

    def to_asn1(self) -> x509.GeneralName:
        """The asn1crypto GeneralName (IA5String / 4- or 16-octet OCTET STRING)."""
        if self.type is SanType.IP_ADDRESS:
            packed = ipaddress.ip_address(self.value).packed
            return x509.GeneralName(name="ip_address", value=x509.IPAddress(contents=packed))
        if self.type is SanType.DNS_NAME:
            return x509.GeneralName(name="dns_name", value=x509.DNSName(contents=self._ia5()))
        if self.type is SanType.RFC822_NAME:
            return x509.GeneralName(
                name="rfc822_name", value=x509.EmailAddress(contents=self._ia5())
            )
        return x509.GeneralName(
            name="uniform_resource_identifier", value=x509.URI(contents=self._ia5())
        )

    def _ia5(self) -> bytes:
        # Set contents directly: asn1crypto's DNSName/URI/EmailAddress setters IDNA-encode.
        return self.value.encode("ascii")


def parse_san(type_name: str, value: str, *, reason: str = REASON_SAN) -> SubjectAltName:
    """Parse one ``api_passthrough.extensions.subject_alternative_names`` entry."""
    try:
        san_type = SanType(type_name)
    except ValueError:
        raise _fail(
            reason,
            f"unknown subject alternative name type {quote(type_name)}"
            + spelling_hint(type_name, SanType) + "; valid types: "
            + ", ".join(t.value for t in SanType),
        ) from None
    return SubjectAltName.of(san_type, value, reason=reason)


def _split_list(text: str, what: str, reason: str) -> list[str]:
    if text.strip() == "":
        return []
    items = [item.strip() for item in text.split(",")]
    for i, item in enumerate(items, 1):
        if item == "":
            raise _fail(reason, f"{what} item {i} of {len(items)} is empty (stray comma?)")
    return items


def _reject_duplicates(names: list[SubjectAltName], reason: str) -> None:
    seen: set[SubjectAltName] = set()
    for n in names:
        if n in seen:
            raise _fail(reason, f"{n.type.value} {quote(n.value)} is listed more than once")
        seen.add(n)


def parse_domain_list(domain: str, *, reason: str = REASON_DOMAIN) -> list[SubjectAltName]:
    """Parse ``Domain`` ("a.example.com,10.0.0.1,2001:db8::1") into dNSName/iPAddress SANs."""
    names: list[SubjectAltName] = []
    items = _split_list(domain, "domain", reason)
    limits.check_count(len(items), limits.active().max_sans, "domain names", reason)
    for item in items:
        try:
            ip = normalize_ip_address(item, reason=reason)
        except InvalidArgument:
            names.append(SubjectAltName.of(SanType.DNS_NAME, item, reason=reason))
        else:
            names.append(SubjectAltName(SanType.IP_ADDRESS, ip))
    _reject_duplicates(names, reason)
    return names


# CreateClientCertificate SanType: the GeneralName CHOICE tag numbers (RFC 5280 4.2.1.6).
_CLIENT_SAN_TYPES = {1: SanType.RFC822_NAME, 6: SanType.URI}


def parse_client_sans(san_type: int, san_value: str) -> list[SubjectAltName]:
    """Parse CreateClientCertificate ``SanType`` (1 email, 6 URI) + comma-separated ``SanValue``."""
    if san_value.strip() == "":
        if san_type not in (0, *_CLIENT_SAN_TYPES):
            raise _fail(
                REASON_SAN_TYPE, f"san_type {san_type} is invalid; use 1 (email) or 6 (URI)"
            )
        return []
    if san_type == 0:
        raise _fail(
            REASON_SAN_TYPE, "san_type is required when san_value is set: 1 (email) or 6 (URI)"
        )
    kind = _CLIENT_SAN_TYPES.get(san_type)
    if kind is None:
        raise _fail(REASON_SAN_TYPE, f"san_type {san_type} is invalid; use 1 (email) or 6 (URI)")
    items = _split_list(san_value, "san_value", REASON_SAN_VALUE)
    limits.check_count(len(items), limits.active().max_sans, "san_value items",
                       REASON_SAN_VALUE)
    names = [SubjectAltName.of(kind, item, reason=REASON_SAN_VALUE) for item in items]
    _reject_duplicates(names, REASON_SAN_VALUE)
    return names


def san_extension_value(names: Iterable[SubjectAltName | x509.GeneralName]) -> x509.GeneralNames:
    """The subjectAltName extension value (RFC 5280 4.2.1.6) for ``names``, in order."""
    items = [n.to_asn1() if isinstance(n, SubjectAltName) else n for n in names]
    if not items:
        # GeneralNames ::= SEQUENCE SIZE (1..MAX): an empty SAN extension is invalid.
        raise ValueError("a subjectAltName extension needs at least one name")
    return x509.GeneralNames(items)


# ---------------------------------------------------------------------------------------
# Subject DN (RFC 5280 4.1.2.4, 4.1.2.6, Appendix A)
# ---------------------------------------------------------------------------------------

OID_COUNTRY = "2.5.4.6"
OID_STATE = "2.5.4.8"
OID_LOCALITY = "2.5.4.7"
OID_ORGANIZATION = "2.5.4.10"
OID_ORGANIZATION_UNIT = "2.5.4.11"
OID_COMMON_NAME = "2.5.4.3"
OID_EMAIL_ADDRESS = "1.2.840.113549.1.9.1"
OID_DOMAIN_COMPONENT = "0.9.2342.19200300.100.1.25"

# Longest dotted OID accepted: room for a 2.25 UUID OID (X.667) and any registered arc.
MAX_OID_CHARS = 128
_DOTTED_OID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+\Z")


# ISO 3166-1 alpha-2 country codes, for countryName (X.520; RFC 5280 Appendix A,
# X520countryName: "ISO 3166 codes only") and the other attributes holding a country.
# Source: the 249 officially assigned codes of the ISO 3166 Maintenance Agency (ISO Online
# Browsing Platform, https://www.iso.org/obp/ui/#search/code/). Also accepted, as pkilint's
# CA/B Forum linter does: the user-assigned XK (Kosovo, as the European Commission uses it)
# and XX (CA/B Forum Baseline Requirements: no official code has been assigned).
ISO_3166_ALPHA2: frozenset[str] = frozenset("""
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI
    BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN
    CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK
    FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK
    ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    XK XX
""".split())


def country_problem(value: str) -> str | None:
    """Why ``value`` is not an ISO 3166-1 alpha-2 code, or None if it is one."""
    if value in ISO_3166_ALPHA2:
        return None
    if not re.fullmatch(r"[A-Z]{2}", value):
        return "must be a two-letter upper-case ISO 3166-1 alpha-2 code such as CN or US"
    hint = " (the United Kingdom is GB)" if value == "UK" else ""
    return (f"is not an ISO 3166-1 alpha-2 country code{hint}; use an assigned code "
            "such as CN or US")


def _gender_problem(value: str) -> str | None:
    """RFC 3739 3.2.2: Gender ::= PrintableString (SIZE(1)) -- "M", "F", "m" or "f"."""
    return None if value in ("M", "F", "m", "f") else "must be M, F, m or f (RFC 3739 3.2.2)"


def _domain_component_problem(value: str) -> str | None:
    """RFC 4519 2.4: a domainComponent holds one label of a DNS domain name."""
    # isascii() first: some non-ASCII characters lower-case to ASCII (U+212A KELVIN SIGN).
    if value.isascii() and _LABEL.match(value.lower()):
        return None
    return ("must be one DNS label (RFC 4519 2.4): letters, digits and hyphens, at most 63, "
            "not starting or ending with a hyphen; give each label its own domainComponent")


def _email_address_problem(value: str) -> str | None:
    """emailAddress (RFC 2985, RFC 5280 Appendix A) holds an RFC 5322 addr-spec."""
    try:
        normalize_email(value, reason=REASON_SUBJECT)
    except InvalidArgument as e:
        return f"is not an e-mail address: {e.message}"
    return None


@dataclass(frozen=True)
class _AttrRule:
    label: str  # API field name used in messages
    # The attribute's ASN.1 syntax: "utf8" a DirectoryString (emitted as UTF8String),
    # "printable" a PrintableString, "ia5" an IA5String.
    string_type: str
    max_len: int | None  # RFC 5280 Appendix A ub-* (or the attribute's own SIZE bound)
    # The value's syntax beyond its string type: why a value is wrong, or None if it is fine.
    check: Callable[[str], str | None] | None = None


# Standard attributes we know the rules for. Anything else custom is UTF8String, no bound:
# RFC 5280 4.1.2.4, the value's syntax is the attribute type's, so an attribute whose syntax
# is not a DirectoryString needs a rule here (or an entry in _UNSUPPORTED_ATTRIBUTES).
ATTRIBUTE_RULES: dict[str, _AttrRule] = {
    OID_COUNTRY: _AttrRule("Country", "printable", 2, country_problem),
    OID_STATE: _AttrRule("State", "utf8", 128),  # ub-state-name
    OID_LOCALITY: _AttrRule("Locality", "utf8", 128),  # ub-locality-name
    OID_ORGANIZATION: _AttrRule("Organization", "utf8", 64),  # ub-organization-name
    OID_ORGANIZATION_UNIT: _AttrRule("OrganizationUnit", "utf8", 64),  # ub-organizational-unit-name
    OID_COMMON_NAME: _AttrRule("CommonName", "utf8", 64),  # ub-common-name
    "2.5.4.4": _AttrRule("surname (2.5.4.4)", "utf8", 32768),  # ub-name
    "2.5.4.5": _AttrRule("serialNumber (2.5.4.5)", "printable", 64),  # ub-serial-number
    "2.5.4.9": _AttrRule("street (2.5.4.9)", "utf8", 128),  # X.520 ub-street-address
    "2.5.4.12": _AttrRule("title (2.5.4.12)", "utf8", 64),  # ub-title
    "2.5.4.42": _AttrRule("givenName (2.5.4.42)", "utf8", 32768),  # ub-name
    "2.5.4.46": _AttrRule("dnQualifier (2.5.4.46)", "printable", None),
    "2.5.4.65": _AttrRule("pseudonym (2.5.4.65)", "utf8", 128),  # ub-pseudonym
    "2.5.4.41": _AttrRule("name (2.5.4.41)", "utf8", 32768),  # ub-name
    "2.5.4.43": _AttrRule("initials (2.5.4.43)", "utf8", 32768),  # ub-name
    "2.5.4.44": _AttrRule("generationQualifier (2.5.4.44)", "utf8", 32768),  # ub-name
    "2.5.4.15": _AttrRule("businessCategory (2.5.4.15)", "utf8", 128),  # X.520
    "2.5.4.17": _AttrRule("postalCode (2.5.4.17)", "utf8", 40),  # X.520 ub-postal-code
    # CA/B Forum EV Guidelines: jurisdiction locality and state as X520LocalityName and
    # X520StateOrProvinceName (ub-locality-name, ub-state-name).
    "1.3.6.1.4.1.311.60.2.1.1": _AttrRule("jurisdictionLocalityName (1.3.6.1.4.1.311.60.2.1.1)",
                                          "utf8", 128),
    "1.3.6.1.4.1.311.60.2.1.2": _AttrRule(
        "jurisdictionStateOrProvinceName (1.3.6.1.4.1.311.60.2.1.2)", "utf8", 128),
    OID_EMAIL_ADDRESS: _AttrRule("emailAddress", "ia5", 255,  # ub-emailaddress-length
                                 _email_address_problem),
    OID_DOMAIN_COMPONENT: _AttrRule("domainComponent", "ia5", 63, _domain_component_problem),
    # X.520 TelephoneNumber ::= PrintableString (SIZE (1..ub-telephone-number)), ub 32.
    "2.5.4.20": _AttrRule("telephoneNumber (2.5.4.20)", "printable", 32),
    # RFC 3739 3.2.2 (id-pda): Gender PrintableString (SIZE(1)); CountryOfCitizenship and
    # CountryOfResidence PrintableString (SIZE (2)), ISO 3166 codes.
    "1.3.6.1.5.5.7.9.3": _AttrRule("gender (1.3.6.1.5.5.7.9.3)", "printable", 1,
                                   _gender_problem),
    "1.3.6.1.5.5.7.9.4": _AttrRule("countryOfCitizenship (1.3.6.1.5.5.7.9.4)", "printable", 2,
                                   country_problem),
    "1.3.6.1.5.5.7.9.5": _AttrRule("countryOfResidence (1.3.6.1.5.5.7.9.5)", "printable", 2,
                                   country_problem),
    # CA/B Forum EV Guidelines: jurisdictionCountryName is an X520countryName.
    "1.3.6.1.4.1.311.60.2.1.3": _AttrRule("jurisdictionCountryName (1.3.6.1.4.1.311.60.2.1.3)",
                                          "printable", 2, country_problem),
}

# Attributes whose syntax is no character string: refused rather than encoded as one.
_UNSUPPORTED_ATTRIBUTES: dict[str, str] = {
    "1.3.6.1.5.5.7.9.1": "dateOfBirth is a GeneralizedTime (RFC 3739 3.2.2), which "
                         "custom attributes do not support",
    "2.5.4.45": "x500UniqueIdentifier is a BIT STRING (X.520), which custom attributes do "
                "not support",
}

# Matter Core Specification 6.5.6.x: Matter DN attributes are UTF8String holding fixed-length
# upper-case hexadecimal. OID -> (name, number of hex digits).
MATTER_ARC = "1.3.6.1.4.1.37244."
MATTER_ATTRIBUTES: dict[str, tuple[str, int]] = {
    "1.3.6.1.4.1.37244.1.1": ("matter-node-id", 16),
    "1.3.6.1.4.1.37244.1.2": ("matter-firmware-signing-id", 16),
    "1.3.6.1.4.1.37244.1.3": ("matter-icac-id", 16),
    "1.3.6.1.4.1.37244.1.4": ("matter-rcac-id", 16),
    "1.3.6.1.4.1.37244.1.5": ("matter-fabric-id", 16),
    "1.3.6.1.4.1.37244.1.6": ("matter-noc-cat", 8),
    "1.3.6.1.4.1.37244.2.1": ("matter-vid", 4),
    "1.3.6.1.4.1.37244.2.2": ("matter-pid", 4),
}
_UPPER_HEX = re.compile(r"[0-9A-F]+\Z")
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*\Z")  # X.680 41.4 PrintableString


def validate_oid(oid: str, *, reason: str = REASON_SUBJECT + ".CustomAttributes") -> str:
    """Check a dotted-decimal OID (X.660: first arc 0-2, second < 40 under 0 and 1)."""
    if len(oid) > MAX_OID_CHARS:
        # Checked before any int(): Python refuses to convert more than 4300 digits.
        raise _fail(reason, f"object identifier {quote(oid)} is longer than {MAX_OID_CHARS} "
                    "characters")
    if not _DOTTED_OID.match(oid):
        raise _fail(reason, f"{quote(oid)} is not a dotted-decimal object identifier like 2.5.4.3")
    arcs = oid.split(".")
    if int(arcs[0]) > 2 or (int(arcs[0]) < 2 and int(arcs[1]) >= 40):
        raise _fail(reason, f"{quote(oid)} is not a valid object identifier (X.660 arc ranges)")
    return oid


def _check_matter(oid: str, value: str, reason: str) -> None:
    name, digits = MATTER_ATTRIBUTES[oid]
    if len(value) != digits or not _UPPER_HEX.match(value):
        raise _fail(
            reason,
            f"{name} ({oid}) value {quote(value)} must be exactly {digits} upper-case hexadecimal "
            f"digits, e.g. {'0' * (digits - 1)}1 (Matter Core Specification 6.5.6)",
        )
    number = int(value, 16)
    if name == "matter-node-id" and not 1 <= number <= 0xFFFFFFEFFFFFFFFF:
        # Matter 2.5.5: operational node IDs are 0x0000_0000_0000_0001..0xFFFF_FFEF_FFFF_FFFF.
        raise _fail(reason, f"{name} {value} is outside the operational node ID range")
    if name == "matter-fabric-id" and number == 0:
        raise _fail(reason, f"{name} must not be 0 (reserved, Matter 2.5.1)")
    if name == "matter-noc-cat" and number & 0xFFFF == 0:
        raise _fail(reason, f"{name} {value}: the CAT version (low 16 bits) must not be 0")


def _attribute(oid: str, value: str, reason: str, label: str) -> x509.NameTypeAndValue:
    """One AttributeTypeAndValue with an explicit string type, validated."""
    if oid in _UNSUPPORTED_ATTRIBUTES:
        raise _fail(reason, f"{label}: {_UNSUPPORTED_ATTRIBUTES[oid]}")
    rule = ATTRIBUTE_RULES.get(oid)
    if UNSAFE_NAME_CHARS.search(value):
        raise _fail(reason, f"{label} {quote(value)} contains control characters or "
                    "bidirectional formatting characters")
    if value != value.strip():
        raise _fail(reason, f"{label} {quote(value)} has leading or trailing whitespace")
    if rule is not None and rule.max_len is not None and len(value) > rule.max_len:
        raise _fail(
            reason,
            f"{label} is {len(value)} characters long; at most {rule.max_len} "
            "(RFC 5280 Appendix A upper bound)",
        )
    if rule is not None and rule.check is not None:
        problem = rule.check(value)
        if problem is not None:
            raise _fail(reason, f"{label} {quote(value)} {problem}")
    if oid == OID_EMAIL_ADDRESS:
        # The rfc822Name SAN's normal form (domain in lower case): RFC 5280 4.1.2.6 wants the
        # address in the SAN too, and checkers compare the two octet for octet.
        value = normalize_email(value, reason=reason)
    if oid.startswith(MATTER_ARC):
        if oid not in MATTER_ATTRIBUTES:
            raise _fail(
                reason,
                f"{oid} is not a known Matter DN attribute; known: "
                + ", ".join(f"{o} ({n})" for o, (n, _) in MATTER_ATTRIBUTES.items()),
            )
        _check_matter(oid, value, reason)
    string_type = rule.string_type if rule is not None else "utf8"
    attr_type = x509.NameType(oid)
    spec_name = attr_type.native  # asn1crypto's name for known OIDs, else the dotted OID
    encoded: core.Asn1Value
    if string_type == "printable":
        if not _PRINTABLE.match(value):
            raise _fail(
                reason,
                f"{label} {quote(value)} contains characters outside PrintableString "
                "(letters, digits, space and '()+,-./:=?)",
            )
        encoded = core.PrintableString(value)
    elif string_type == "ia5":
        if not value.isascii():
            raise _fail(reason, f"{label} {quote(value)} must be ASCII (IA5String)")
        encoded = core.IA5String(value)
    else:
        encoded = core.UTF8String(value)
    if x509.NameTypeAndValue._oid_specs.get(spec_name) is x509.DirectoryString:
        alt = {"printable": "printable_string", "utf8": "utf8_string"}[string_type]
        encoded = x509.DirectoryString(name=alt, value=value)
    elif spec_name in x509.NameTypeAndValue._oid_specs:
        # Typed by asn1crypto (emailAddress and domainComponent IA5String, telephoneNumber
        # PrintableString, the TCG attributes UTF8String): the same octets in its class, set
        # raw because its DNSName/EmailAddress setters IDNA-encode.
        spec = x509.NameTypeAndValue._oid_specs[spec_name]
        encoded = spec(contents=encoded.contents)
    return x509.NameTypeAndValue({"type": attr_type, "value": encoded})


def build_name(
    common_name: str | None = "",
    organization: str | None = "",
    organization_unit: str | None = "",
    country: str | None = "",
    state: str | None = "",
    locality: str | None = "",
    custom_attributes: Sequence[tuple[str, str]] = (),
) -> x509.Name:
    """Build a subject DN: one attribute per RDN in order C, ST, L, O, OU, CN, then custom.

    A custom attribute may not repeat a fixed attribute that is set, and the subject gets at
    most one commonName (common_name, or one custom attribute 2.5.4.3).
    """
    fixed = [
        (OID_COUNTRY, country, "Country"),
        (OID_STATE, state, "State"),
        (OID_LOCALITY, locality, "Locality"),
        (OID_ORGANIZATION, organization, "Organization"),
        (OID_ORGANIZATION_UNIT, organization_unit, "OrganizationUnit"),
        (OID_COMMON_NAME, common_name, "CommonName"),
    ]
    rdns: list[x509.RelativeDistinguishedName] = []
    present: set[str] = set()
    for oid, value, label in fixed:
        if value:  # "" and None mean absent
            atv = _attribute(oid, value, f"{REASON_SUBJECT}.{label}", label)
            rdns.append(x509.RelativeDistinguishedName([atv]))
            present.add(oid)
    custom_reason = f"{REASON_SUBJECT}.CustomAttributes"
    custom_cn = 0  # the custom attribute that is the commonName, if one is
    for i, (oid, value) in enumerate(custom_attributes, 1):
        oid = validate_oid(oid.strip(), reason=custom_reason)
        if oid in present and oid in {o for o, _, _ in fixed}:
            label = next(lbl for o, _, lbl in fixed if o == oid)
            raise _fail(
                custom_reason,
                f"custom attribute {i} ({oid}) repeats {label}, which is already set; "
                "set it in one place only",
            )
        if oid == OID_COMMON_NAME:
            # One commonName per subject, from common_name or from one custom attribute:
            # the one CN authorization checks is the one the certificate carries.
            if custom_cn:
                raise _fail(
                    custom_reason,
                    f"custom attribute {i} ({oid}) is a second commonName (custom attribute "
                    f"{custom_cn}); a subject has at most one",
                )
            custom_cn = i
        if value == "":
            raise _fail(custom_reason, f"custom attribute {i} ({oid}) has an empty value")
        rule = ATTRIBUTE_RULES.get(oid)
        label = f"custom attribute {i} ({rule.label if rule else oid})"
        rdns.append(x509.RelativeDistinguishedName([_attribute(oid, value, custom_reason, label)]))
    return x509.Name(name="", value=x509.RDNSequence(rdns))


def common_names_of(name: x509.Name) -> list[str]:
    """Every commonName in ``name``, in order (build_name makes at most one)."""
    return [str(atv["value"].native) for rdn in name.chosen for atv in rdn
            if atv["type"].dotted == OID_COMMON_NAME]


# ---------------------------------------------------------------------------------------
# Extended key usage (RFC 5280 4.2.1.12)
# ---------------------------------------------------------------------------------------

EKU_OIDS: dict[str, str] = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "OCSPSigning": "1.3.6.1.5.5.7.3.9",
    "any": "2.5.29.37.0",  # anyExtendedKeyUsage
}
_EKU_BY_LOWER = {k.lower(): v for k, v in EKU_OIDS.items()}


def parse_extended_key_usages(items: Iterable[str], *, reason: str = REASON_EKU) -> list[str]:
    """Map API EKU names (case-insensitive) and dotted OIDs to dotted OIDs, order kept."""
    out: list[str] = []
    for item in items:
        text = item.strip()
        oid = _EKU_BY_LOWER.get(text.lower())
        if oid is None:
            if not _DOTTED_OID.match(text):
                raise _fail(
                    reason,
                    f"unknown extended key usage {quote(item)}"
                    + spelling_hint(text, EKU_OIDS) + "; use one of "
                    + ", ".join(EKU_OIDS)
                    + " or a dotted OID",
                )
            oid = validate_oid(text, reason=reason)
        if oid in out:
            raise _fail(reason,
                        f"extended key usage {quote(item)} ({oid}) is listed more than once")
        out.append(oid)
    return out
