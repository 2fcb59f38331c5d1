"""Token configuration: which PKCS#11 module, which token, and where its PIN comes from."""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path

from hsm.errors import TokenConfigError


class TokenRole(enum.Enum):
    """The two token roles: every CA key and ProtectionLevel=HSM keys live in HSM."""

    HSM = "hsm"
    SOFTWARE = "software"


@dataclasses.dataclass(frozen=True)
class TokenConfig:
    """One token: module path, token label and the PIN (never shown in repr or logs)."""

    role: TokenRole
    module: str
    token_label: str
    pin: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not self.module:
            raise TokenConfigError(f"{self.role.value} token: module path is empty")
        if not Path(self.module).is_file():
            raise TokenConfigError(
                f"{self.role.value} token: PKCS#11 module {self.module!r} does not exist"
            )
        if not self.token_label:
            raise TokenConfigError(f"{self.role.value} token: token_label is empty")
        if not self.pin:
            raise TokenConfigError(f"{self.role.value} token: the PIN is empty")


def read_pin(source: str) -> str:
    """Resolve a PIN source: ``env:NAME`` (environment variable) or ``file:PATH``."""
    kind, _, where = source.partition(":")
    if kind == "env" and where:
        value = os.environ.get(where)
        if value is None:
            raise TokenConfigError(f"PIN source {source!r}: environment variable {where} is unset")
        return value.strip()
    if kind == "file" and where:
        try:
            return Path(where).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise TokenConfigError(f"PIN source {source!r}: cannot read file ({e.strerror})") from e
    raise TokenConfigError(f"PIN source {source!r} must be 'env:NAME' or 'file:PATH'")
