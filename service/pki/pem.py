"""PEM (RFC 7468): the one encoder, and strict decoding shared by every field that takes PEM.

A lax parser (asn1crypto's ``unarmor``, for one) skips a BEGIN line with no END line, a
stray END line and an END label that differs from its BEGIN label, so a copy-paste
truncation loses a block without a word. Here every block must be complete: a BEGIN line,
base64 only (no RFC 1421 headers, RFC 7468 2), an END line with the same label, and nothing
but whitespace before, between and after the blocks.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

__all__ = ["PemError", "decode_blocks", "encode"]

_BEGIN = re.compile(r"-----BEGIN ([^-\r\n]*)-----")
_END = re.compile(r"-----END ([^-\r\n]*)-----")


class PemError(ValueError):
    """The text is not a sequence of complete PEM blocks with an accepted label.

    The message names labels and block numbers only, never the text: the block may be a
    private key pasted by mistake.
    """


def encode(der: bytes, label: str = "CERTIFICATE") -> str:
    """``der`` as one PEM block: RFC 7468 strict form, 64-character base64 lines."""
    # The bytes asn1crypto's pem.armor gives, built directly (it is on every issuance).
    b64 = base64.b64encode(der).decode("ascii")
    lines = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def decode_blocks(text: str, labels: Sequence[str]) -> list[bytes]:
    """The DER of every PEM block in ``text``, in order (at least one; labels in ``labels``)."""
    ders: list[bytes] = []
    position = 0
    while True:
        begin = _BEGIN.search(text, position)
        if begin is None:
            break
        number = len(ders) + 1
        if text[position : begin.start()].strip():
            if number == 1:
                raise PemError("unexpected data before the first PEM block")
            raise PemError(f"unexpected data between PEM blocks {number - 1} and {number}")
        label = begin.group(1)
        if label not in labels:
            raise PemError(f"PEM block {number} is a {label!r}, not a {labels[0]!r}")
        end = _END.search(text, begin.end())
        if end is None or _BEGIN.search(text, begin.end(), end.start()) is not None:
            # A block cut short: its END line is missing (the next BEGIN comes first).
            raise PemError(f"PEM block {number} has no '-----END {label}-----' line")
        if end.group(1) != label:
            raise PemError(
                f"PEM block {number} begins as {label!r} but ends as {end.group(1)!r}"
            )
        ders.append(_decode_body(text[begin.end() : end.start()], number))
        position = end.end()
    if not ders:
        raise PemError(f"not PEM: expected a block starting with '-----BEGIN {labels[0]}-----'")
    if text[position:].strip():
        if len(ders) == 1:
            raise PemError("trailing data after the PEM block")
        raise PemError(f"trailing data after the last PEM block ({len(ders)})")
    return ders


def _decode_body(body: str, number: int) -> bytes:
    if ":" in body:
        raise PemError(f"PEM block {number} has headers; only base64 data is allowed")
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise PemError(f"PEM block {number} is not valid base64") from None
    if not der:
        raise PemError(f"PEM block {number} is empty")
    return der
