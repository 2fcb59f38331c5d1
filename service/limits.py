"""Bounds on what one request may carry, so nothing a client sends is stored without bound.

The configurable ones come from the ``[limits]`` section (``configure`` at start-up); the
others follow the storage schema's column sizes and the APIs' documented maxima. Every
refusal is InvalidArgument with the reason of the parameter, and quotes no more than a short
prefix of the value (service.errors.quote).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from service.errors import InvalidArgument, quote

# Fixed by the storage schema (certificate_tag.tag_key/tag_value, resource_group_id,
# custom_identifier columns).
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
MAX_RESOURCE_GROUP_ID_CHARS = 128
MAX_CUSTOM_IDENTIFIER_CHARS = 128
# Resource identifiers this service hands out are UUIDs (36) or KMS ids; anything much
# longer names nothing and is refused before it reaches a query or a message.
MAX_IDENTIFIER_CHARS = 128


@dataclasses.dataclass(frozen=True)
class Limits:
    """The configurable bounds (``[limits]``)."""

    #: Subject alternative names in one certificate (CSR, Domain and ApiPassthrough together).
    max_sans: int = 100
    #: Tags on one resource, and tag filters in one list request.
    max_tags: int = 20
    #: Certificates in an uploaded certificate chain (KMS UploadCertificate).
    max_chain_certificates: int = 10

    def __post_init__(self) -> None:
        """Refuse bounds below one."""
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"limits.{field.name} must be at least 1")


_active = Limits()


def configure(limits: Limits) -> None:
    """Use ``limits`` from now on in this process (called once at start-up)."""
    global _active
    _active = limits


def active() -> Limits:
    """The bounds in force."""
    return _active


def check_length(value: str, maximum: int, what: str, reason: str) -> str:
    """Refuse ``value`` longer than ``maximum`` characters; return it."""
    if len(value) > maximum:
        raise InvalidArgument(f"{what} {quote(value)} is longer than {maximum} characters",
                              reason=reason)
    return value


def check_count(count: int, maximum: int, what: str, reason: str) -> None:
    """Refuse more than ``maximum`` items."""
    if count > maximum:
        raise InvalidArgument(f"{count} {what} given; at most {maximum}", reason=reason)


def check_tags(tags: Iterable[tuple[str, str]], *, reason: str) -> dict[str, str]:
    """Tags as a dict: at most max_tags, keys non-empty and unique, lengths as stored."""
    items = list(tags)
    check_count(len(items), _active.max_tags, "tags", reason)
    out: dict[str, str] = {}
    for key, value in items:
        if not key:
            raise InvalidArgument("a tag needs a key", reason=reason)
        check_length(key, MAX_TAG_KEY_CHARS, "tag key", reason)
        check_length(value, MAX_TAG_VALUE_CHARS, "tag value", reason)
        if key in out:
            raise InvalidArgument(f"tag key {quote(key)} is given twice", reason=reason)
        out[key] = value
    return out
