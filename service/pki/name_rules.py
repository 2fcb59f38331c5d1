"""The rules a subject attribute value must meet, on its DER tag and contents octets.

RFC 5280 4.1.2.4/4.1.2.6 and Appendix A, as ``names.ATTRIBUTE_RULES`` states them for
build_name. Shared by the reference lint (``service.pki.lint``) and its DER walk
(``service.pki.lint_fast``), so both judge a subject by the same rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.pki.builder import der_oid, read_tlv
from service.pki.names import ATTRIBUTE_RULES, OID_EMAIL_ADDRESS, UNSAFE_NAME_CHARS

__all__ = ["EMAIL_ADDRESS_OID", "EMAIL_ADDRESS_OID_TLV", "attribute_value_problem",
           "oid_contents"]

_PRINTABLE = 0x13
_UTF8 = 0x0C
_IA5 = 0x16
_STRING_TYPE_NAMES = {_PRINTABLE: "PrintableString", _UTF8: "UTF8String", _IA5: "IA5String"}
_PRINTABLE_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


@dataclass(frozen=True)
class _NameRule:
    """What a subject attribute's value must be: string tags, 1..max_len characters, check."""

    tags: frozenset[int]
    max_len: int | None
    check: Callable[[str], str | None] | None = None


# RFC 5280 4.1.2.6: a DirectoryString as PrintableString or UTF8String (the others only for
# backward compatibility, which a new certificate does not need).
_DIRECTORY_STRING = frozenset((_PRINTABLE, _UTF8))
_TAGS_OF = {"utf8": _DIRECTORY_STRING, "printable": frozenset((_PRINTABLE,)),
            "ia5": frozenset((_IA5,))}
_OTHER_ATTRIBUTE = _NameRule(_DIRECTORY_STRING, None)


def oid_contents(dotted: str) -> bytes:
    """The DER contents octets of the OBJECT IDENTIFIER ``dotted``."""
    tlv = der_oid(dotted)
    _, start, end = read_tlv(tlv)
    return tlv[start:end]


EMAIL_ADDRESS_OID = oid_contents(OID_EMAIL_ADDRESS)
EMAIL_ADDRESS_OID_TLV = der_oid(OID_EMAIL_ADDRESS)


# The rules build_name applies (names.ATTRIBUTE_RULES, the one source of string types, RFC 5280
# Appendix A upper bounds and value checks), keyed by the OID's DER contents octets, as both
# the DER walk and asn1crypto's ObjectIdentifier.contents give them.
_NAME_RULES: dict[bytes, _NameRule] = {
    oid_contents(oid): _NameRule(_TAGS_OF[rule.string_type], rule.max_len, rule.check)
    for oid, rule in ATTRIBUTE_RULES.items()
}


def attribute_value_problem(oid: bytes, tag: int, contents: bytes) -> str | None:
    """Why one AttributeValue breaks its attribute's rule, or None (RFC 5280 4.1.2.4)."""
    rule = _NAME_RULES.get(oid, _OTHER_ATTRIBUTE)
    if tag not in rule.tags:
        allowed = " or ".join(sorted(_STRING_TYPE_NAMES[t] for t in rule.tags))
        return f"uses string tag 0x{tag:02x}; it must be {allowed}"
    if tag == _UTF8:
        try:
            text = contents.decode("utf-8")
        except UnicodeDecodeError:
            return "is not valid UTF-8"
    elif not contents.isascii():
        return f"has non-ASCII octets in a {_STRING_TYPE_NAMES[tag]}"
    else:
        text = contents.decode("ascii")
        if tag == _PRINTABLE and not set(text) <= _PRINTABLE_CHARS:
            return "has characters outside PrintableString"
    # X.520 / RFC 5280 Appendix A: SIZE (1..ub-...), counted in characters.
    if not text:
        return "is empty"
    if UNSAFE_NAME_CHARS.search(text):
        # A NUL ends the name in C-string consumers; bidi overrides make a name display as
        # another (Unicode Technical Report #36, visual spoofing).
        return "contains a control or bidirectional-formatting character"
    if rule.max_len is not None and len(text) > rule.max_len:
        return (f"is {len(text)} characters long; at most {rule.max_len} "
                "(RFC 5280 Appendix A upper bound)")
    return rule.check(text) if rule.check is not None else None
