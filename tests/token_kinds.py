"""Helpers for tests that run on every token implementation (the ``any_token`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest

from hsm.capabilities import keygen_skip_reason
from hsm.keys import KeySpec


def require_keygen(token: Any, spec: KeySpec) -> None:
    """Skip, with the token's own reason, when ``token`` cannot generate ``spec`` keys."""
    reason = keygen_skip_reason(token, spec)
    if reason is not None:
        pytest.skip(f"token {token.label!r} cannot generate {spec.value}: {reason}")
