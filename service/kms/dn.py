"""The KMS ``Subject`` and ``SubjectAlternativeNames`` parameters: parsing, rules, encoding.

``Subject`` is an RFC 2253 / RFC 4514 distinguished-name string such as
``CN=userName,OU=kms,O=aliyun,C=CN``. The rules of the KMS Certificates Manager API apply on
top of the RFC 4514 grammar: CN, C, O and OU are required, ST and L optional, nothing else
is accepted, each attribute appears once, no value is empty and every value fits the
RFC 5280 Appendix A upper bound. C must be an upper-case ISO 3166-1 alpha-2 code: a
lower-case code is refused rather than silently rewritten, so the CSR carries exactly the
subject the caller sent.

Choices kept explicit:
- Encoding (RFC 5280 4.1.2.4, 4.1.2.6): C is a PrintableString (X.520 requires it), every
  other value a UTF8String.
- Order: RFC 4514 2.1 writes the most specific RDN first, so the encoded RDNSequence is the
  string's RDNs reversed (``CN=..,OU=..,O=..,C=CN`` encodes C first).
- Leniency: unescaped spaces around ``,``, ``+`` and ``=`` are ignored, as RFC 2253 4 asks
  of implementations; an escaped space (``\\ ``) is kept. Multi-valued RDNs (``+``), the
  ``#hexstring`` value form, quoted values and ``;`` as a separator are refused with a
  message saying so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from asn1crypto import x509

from service.errors import InvalidArgument, quote
from service.pki.names import UNSAFE_NAME_CHARS, country_problem, normalize_dns_name

SUBJECT_REASON = "InvalidParameter.Subject"
SAN_REASON = "InvalidParameter.SubjectAlternativeNames"

# The KMS API's limit on SubjectAlternativeNames (CreateCertificate documentation).
MAX_SUBJECT_ALTERNATIVE_NAMES = 10
# Ten names of at most 253 characters, quoted and separated, with room for whitespace.
MAX_SUBJECT_ALTERNATIVE_NAMES_CHARS = 8192
# The longest Subject: every attribute at its RFC 5280 upper bound, each character escaped
# (RFC 4514 2.4, three characters for one), with room for the types and separators.
MAX_SUBJECT_CHARS = 4096


@dataclass(frozen=True)
class _AttributeRule:
    """One attribute the KMS Subject accepts: short name, OID, upper bound, requiredness."""

    short_name: str
    oid: str
    max_length: int
    required: bool
    printable: bool = False


# RFC 5280 Appendix A: ub-common-name 64, ub-organization-name 64,
# ub-organizational-unit-name 64, ub-locality-name 128, ub-state-name 128;
# countryName is exactly two characters (X.520, ISO 3166-1 alpha-2).
_RULES: tuple[_AttributeRule, ...] = (
    _AttributeRule("CN", "2.5.4.3", 64, required=True),
    _AttributeRule("OU", "2.5.4.11", 64, required=True),
    _AttributeRule("O", "2.5.4.10", 64, required=True),
    _AttributeRule("L", "2.5.4.7", 128, required=False),
    _AttributeRule("ST", "2.5.4.8", 128, required=False),
    _AttributeRule("C", "2.5.4.6", 2, required=True, printable=True),
)
_BY_SHORT_NAME = {rule.short_name: rule for rule in _RULES}
_BY_OID = {rule.oid: rule for rule in _RULES}
_SUPPORTED = ", ".join(rule.short_name for rule in _RULES)
_REQUIRED = ", ".join(rule.short_name for rule in _RULES if rule.required)

# RFC 4514 2.3 / 3: attribute type names that a string representation may use, by OID.
_RFC4514_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}

# RFC 4514 3: descr = keystring, numericoid = number 1*( DOT number ).
_DESCR = re.compile(r"[A-Za-z][A-Za-z0-9-]*\Z")
_NUMERICOID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+\Z")
# RFC 4514 3: the characters "pair" may escape after ESC (besides a hexpair).
_ESCAPABLE = frozenset('\\"+,;<> #=')
_HEX = frozenset("0123456789abcdefABCDEF")
_COUNTRY = re.compile(r"[A-Z]{2}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class _Ava:
    """One parsed AttributeTypeAndValue: the type as written and the unescaped value."""

    type_text: str
    value: str


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(f"Subject: {message}", reason=SUBJECT_REASON)


def _is_space(dn: str, i: int) -> bool:
    return i < len(dn) and dn[i] == " "


def _parse_type(dn: str, i: int, previous: _Ava | None, separator: str) -> tuple[str, int]:
    """Read ``attributeType`` up to '='; returns the type text and the index after '='."""
    start = i
    while i < len(dn) and dn[i] not in "=,+":
        i += 1
    text = dn[start:i].strip(" ")
    if i < len(dn) and dn[i] == "=":
        if not text:
            raise _fail(f"missing attribute type before '=' at position {i + 1}")
        return text, i + 1
    if previous is None:
        raise _fail(f"expected TYPE=value (such as CN=name), got '{dn[start:i].strip()}'")
    if not text and i == len(dn):
        raise _fail(f"trailing '{separator}' after the value of {previous.type_text}")
    # A fragment without '=' after a separator is nearly always the rest of a value whose
    # separator character was meant literally (RFC 4514 2.4 requires escaping it).
    escaped = "\\" + separator
    raise _fail(
        f"unescaped '{separator}' in value of {previous.type_text}: "
        f"'{text}' is not a TYPE=value pair; write '{separator}' inside a value as '{escaped}'"
    )


def _parse_value(dn: str, i: int, type_text: str) -> tuple[str, int]:
    """Read an RFC 4514 ``string`` value; returns the unescaped value and the stop index."""
    while _is_space(dn, i):
        i += 1  # RFC 2253 4: spaces around '=' are ignored.
    if i < len(dn) and dn[i] == "#":
        raise _fail(
            f"value of {type_text} starts with '#': the RFC 4514 #hexstring form is not "
            "supported; write the value as text and escape a leading '#' as '\\#'"
        )
    out = bytearray()
    keep = 0  # length of ``out`` up to the last character that is not an unescaped space
    while i < len(dn):
        ch = dn[i]
        if ch in ",+":
            break
        if ch == "\\":
            nxt = dn[i + 1 : i + 2]
            if nxt and nxt in _ESCAPABLE:
                out += nxt.encode()
                i += 2
            elif nxt in _HEX and dn[i + 2 : i + 3] in _HEX:
                out.append(int(dn[i + 1 : i + 3], 16))
                i += 3
            else:
                shown = dn[i : i + (3 if nxt in _HEX else 2)]
                raise _fail(
                    f"invalid escape '{shown}' in value of {type_text}: after '\\' RFC 4514 "
                    'allows one of \\ " + , ; < > # = space, or two hex digits'
                )
            keep = len(out)
            continue
        if ch in '";<>':
            escaped = "\\" + ch
            hint = "; separate RDNs with ','" if ch == ";" else ""
            raise _fail(f"unescaped '{ch}' in value of {type_text}: write it as '{escaped}'{hint}")
        out += ch.encode()
        if ch != " ":
            keep = len(out)
        i += 1
    # RFC 2253 4: unescaped spaces before the next separator are ignored.
    raw = bytes(out[:keep])
    try:
        return raw.decode("utf-8"), i
    except UnicodeDecodeError as e:
        raise _fail(f"value of {type_text} has hex escapes that are not valid UTF-8") from e


def _parse_rdns(dn: str) -> list[list[_Ava]]:
    """Split an RFC 4514 string into RDNs of AVAs, in string order (most specific first)."""
    rdns: list[list[_Ava]] = [[]]
    previous: _Ava | None = None
    separator = ","
    i = 0
    while True:
        type_text, i = _parse_type(dn, i, previous, separator)
        value, i = _parse_value(dn, i, type_text)
        previous = _Ava(type_text, value)
        rdns[-1].append(previous)
        if i == len(dn):
            return rdns
        separator = dn[i]
        if separator == ",":
            rdns.append([])
        i += 1


def _rule_for(type_text: str) -> _AttributeRule:
    if _DESCR.match(type_text):
        rule = _BY_SHORT_NAME.get(type_text.upper())
    elif _NUMERICOID.match(type_text):
        rule = _BY_OID.get(type_text)
    else:
        raise _fail(f"'{type_text}' is not an attribute type (RFC 4514 3: name or dotted OID)")
    if rule is None:
        raise _fail(f"unsupported attribute type '{type_text}'; supported: {_SUPPORTED}")
    return rule


def _check_value(rule: _AttributeRule, value: str) -> None:
    name = rule.short_name
    if not value:
        raise _fail(f"empty value for {name}")
    if UNSAFE_NAME_CHARS.search(value):
        raise _fail(f"value of {name} contains a control character or a bidirectional "
                    "formatting character")
    if rule.printable:
        if not _COUNTRY.match(value):
            hint = f" (upper-case: '{value.upper()}')" if _COUNTRY.match(value.upper()) else ""
            raise _fail(
                f"C must be a two-letter upper-case ISO 3166-1 alpha-2 code such as CN, "
                f"got '{value}'{hint}"
            )
        problem = country_problem(value)  # the Private CA's check (X.520 countryName)
        if problem is not None:
            raise _fail(f"C '{value}' {problem}")
        return
    if len(value) > rule.max_length:
        raise _fail(
            f"value of {name} is {len(value)} characters; RFC 5280 allows at most {rule.max_length}"
        )


def _encode_ava(rule: _AttributeRule, value: str) -> x509.NameTypeAndValue:
    # RFC 5280 4.1.2.4: countryName is PrintableString; DirectoryString values UTF8String.
    choice = "printable_string" if rule.printable else "utf8_string"
    return x509.NameTypeAndValue(
        {"type": rule.oid, "value": x509.DirectoryString(name=choice, value=value)}
    )


def parse_subject(dn: str) -> x509.Name:
    """Parse the KMS ``Subject`` (RFC 4514 string) into an X.509 Name, enforcing KMS rules."""
    if not dn or not dn.strip(" "):
        raise _fail(
            f"is empty; give a DN such as CN=userName,OU=kms,O=aliyun,C=CN ({_REQUIRED} required)"
        )
    if len(dn) > MAX_SUBJECT_CHARS:
        raise _fail(f"is {len(dn)} characters long; at most {MAX_SUBJECT_CHARS}")
    rdns = _parse_rdns(dn)
    seen: dict[str, _AttributeRule] = {}
    encoded: list[x509.RelativeDistinguishedName] = []
    for rdn in rdns:
        if len(rdn) > 1:
            joined = "+".join(ava.type_text for ava in rdn)
            raise _fail(
                f"multi-valued RDN {joined} is not supported; separate attributes with ',' "
                "(or escape a literal '+' as '\\+')"
            )
        ava = rdn[0]
        rule = _rule_for(ava.type_text)
        if rule.short_name in seen:
            raise _fail(f"duplicate attribute {rule.short_name}; each may appear once")
        _check_value(rule, ava.value)
        seen[rule.short_name] = rule
        encoded.append(x509.RelativeDistinguishedName([_encode_ava(rule, ava.value)]))
    missing = [rule.short_name for rule in _RULES if rule.required and rule.short_name not in seen]
    if missing:
        raise _fail(f"missing required attribute {', '.join(missing)} (required: {_REQUIRED})")
    # RFC 4514 2.1: the string starts with the last RDN of the RDNSequence.
    return x509.Name(name="", value=x509.RDNSequence(list(reversed(encoded))))


def _escape_value(value: str) -> str:
    """Escape an attribute value per RFC 4514 2.4."""
    out: list[str] = []
    last = len(value) - 1
    for index, ch in enumerate(value):
        if ch in '"+,;<>\\':
            out.append("\\" + ch)
        elif (ch == " " and index in (0, last)) or (ch == "#" and index == 0):
            out.append("\\" + ch)
        elif _CONTROL.match(ch):
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def _format_ava(ava: x509.NameTypeAndValue) -> str:
    oid = ava["type"].dotted
    short_name = _RFC4514_SHORT_NAMES.get(oid)
    value = ava["value"]
    native = value.native
    if short_name is not None and isinstance(native, str):
        return f"{short_name}={_escape_value(native)}"
    # RFC 4514 2.4: a type without a short name is written as a dotted OID and its value
    # as '#' followed by the hex of the value's BER (here DER) encoding.
    return f"{oid}=#{value.dump().hex()}"


def format_subject(name: x509.Name) -> str:
    """Render an X.509 Name as an RFC 4514 string (most specific RDN first)."""
    rdns: x509.RDNSequence = name.chosen
    return ",".join("+".join(_format_ava(ava) for ava in rdn) for rdn in reversed(list(rdns)))


def _san_fail(message: str) -> InvalidArgument:
    return InvalidArgument(f"SubjectAlternativeNames: {message}", reason=SAN_REASON)


def _check_dns_name(index: int, name: str) -> None:
    """The Private CA's dNSName check (syntax, IDNA 2008 A-labels, wildcard placement)."""
    if name == "":
        raise _san_fail(f"entry {index + 1} is empty")
    try:
        normalize_dns_name(name, reason=SAN_REASON)
    except InvalidArgument as e:
        raise _san_fail(f"entry {index + 1}: {e.message}") from e


def parse_subject_alternative_names(json_text: str | None) -> list[str]:
    """Parse the KMS ``SubjectAlternativeNames`` JSON array of domain names (dNSName SANs)."""
    if json_text is None or not json_text.strip():
        return []
    if len(json_text) > MAX_SUBJECT_ALTERNATIVE_NAMES_CHARS:
        raise _san_fail(
            f"is {len(json_text)} characters long; at most "
            f"{MAX_SUBJECT_ALTERNATIVE_NAMES_CHARS} (up to {MAX_SUBJECT_ALTERNATIVE_NAMES} names)"
        )
    try:
        parsed: object = json.loads(json_text)
    except RecursionError:
        raise _san_fail("nested too deeply; expected a flat array of domain names") from None
    except ValueError as e:
        raise _san_fail(f'not valid JSON ({e}); expected an array such as ["a.example.com"]') from e
    if not isinstance(parsed, list):
        raise _san_fail(f"expected a JSON array of domain names, got {type(parsed).__name__}")
    if len(parsed) > MAX_SUBJECT_ALTERNATIVE_NAMES:
        raise _san_fail(
            f"{len(parsed)} names given; at most {MAX_SUBJECT_ALTERNATIVE_NAMES} are allowed"
        )
    names: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(parsed):
        if not isinstance(item, str):
            raise _san_fail(f"entry {index + 1} is {json.dumps(item)[:64]}, not a string")
        _check_dns_name(index, item)
        # DNS names compare case-insensitively (RFC 4343).
        if item.lower() in seen:
            raise _san_fail(f"entry {index + 1} ({quote(item)}) is a duplicate")
        seen.add(item.lower())
        names.append(item)
    return names
