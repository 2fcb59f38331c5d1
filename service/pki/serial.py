"""Certificate serial numbers (RFC 5280 4.1.2.2, CA/B BR 7.1)."""

from __future__ import annotations

from service.entropy import random_bytes
from service.errors import InvalidArgument, quote

# RFC 5280 4.1.2.2: conforming CAs MUST NOT use serialNumber values longer than 20 octets.
MAX_SERIAL_OCTETS = 20
# A positive INTEGER of 20 octets is below 2**159, which has 48 decimal digits. Longer text is
# refused before int() sees it: Python refuses to convert more than 4300 digits (ValueError).
MAX_SERIAL_DIGITS = 48


def serial_octets(n: int) -> int:
    """Length in octets of the DER INTEGER contents encoding the non-negative ``n``."""
    return (n.bit_length() + 8) // 8


def new_serial() -> int:
    """A fresh serial: 16 CSPRNG bytes with the top bit cleared, never zero."""
    # BR 7.1: at least 64 bits of CSPRNG output; 127 bits here. Clearing the top bit keeps
    # the DER INTEGER positive and at most 16 octets (RFC 5280 4.1.2.2). random_bytes is
    # the OS CSPRNG (os.urandom read a block at a time; each byte is handed out once).
    while True:
        raw = bytearray(random_bytes(16))
        raw[0] &= 0x7F
        n = int.from_bytes(raw, "big")
        if n:
            return n


def validate_custom_serial(value: int | str) -> int:
    """Check a caller-chosen serial (api_passthrough.serial_number); returns it as an int."""
    if isinstance(value, str):
        text = value.strip()
        # The API documents a decimal "long integer"; refuse signs, spaces and other bases.
        if not text.isdigit() or not text.isascii():
            raise InvalidArgument(
                f"serial number {quote(value)} is not a decimal integer",
                reason="InvalidParameter.SerialNumber",
            )
        if len(text.lstrip("0")) > MAX_SERIAL_DIGITS:
            raise InvalidArgument(
                f"serial number has {len(text)} digits; a serial of at most 20 octets "
                f"(RFC 5280 4.1.2.2) has at most {MAX_SERIAL_DIGITS}",
                reason="InvalidParameter.SerialNumber",
            )
        n = int(text.lstrip("0") or "0")
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("serial number must be an integer",
                              reason="InvalidParameter.SerialNumber")
    else:
        n = value
    if n <= 0:
        raise InvalidArgument("serial number must be a positive integer (RFC 5280 4.1.2.2)",
                              reason="InvalidParameter.SerialNumber")
    if serial_octets(n) > MAX_SERIAL_OCTETS:
        raise InvalidArgument(
            "serial number is longer than 20 octets when DER-encoded (RFC 5280 4.1.2.2)",
            reason="InvalidParameter.SerialNumber",
        )
    return n
