"""Worker functions for the multi-process tests; importable so 'spawn' children find them."""

from __future__ import annotations

import os
import time


def sign_for(
    softhsm_conf: str,
    module: str,
    token_label: str,
    pin: str,
    key_id: bytes,
    mechanism_name: str,
    seconds: float,
    at_least: int = 0,
) -> list[tuple[bytes, bytes]]:
    """Open an own Token in this process and sign distinct messages for ``seconds``, and at
    least ``at_least`` of them however long that takes (a loaded machine is slow, not wrong)."""
    # SoftHSM reads SOFTHSM2_CONF once, when the module is initialised in this process.
    os.environ["SOFTHSM2_CONF"] = softhsm_conf
    from hsm.config import TokenConfig, TokenRole
    from hsm.signing import SignMechanism, sign
    from hsm.token import Token

    token = Token(TokenConfig(TokenRole.HSM, module, token_label, pin))
    mechanism = SignMechanism(mechanism_name)
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline or n < at_least:
        message = f"{os.getpid()}-{n}".encode()
        out.append((message, sign(token, key_id, mechanism, message)))
        n += 1
    return out
