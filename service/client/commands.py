"""Everything the client adds to the `hsmca` command: `pca`, `kms` and `inspect`."""

from __future__ import annotations

from typing import Any

from service.client import inspection, shortcuts
from service.client.cli import add_rpc_commands

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add `pca` (with the shortcuts), `kms` and `inspect` to the `hsmca` sub-commands."""
    groups = add_rpc_commands(sub)
    shortcuts.register(groups["pca"])
    inspection.register(sub)
