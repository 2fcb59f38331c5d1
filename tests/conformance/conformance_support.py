"""Control keys that the conformance check must flag, and a runner for the command."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.rsa import decode_rsa_private_key

from hsm.keys import KeySpec, generate_in_session, key_pair_templates

REPO = Path(__file__).resolve().parents[2]
HSMCA = str(Path(sys.executable).with_name("hsmca"))  # the console script of this venv


@dataclasses.dataclass(frozen=True)
class Target:
    """A token to run the command against: how to name it, and the Token to inspect it."""

    kind: str
    module: str
    label: str
    pin: str = dataclasses.field(repr=False)
    token: Any
    manufacturer: str


def run_hsmca(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``hsmca ARGS`` as a user runs it; never raises on a non-zero exit."""
    return subprocess.run(
        [HSMCA, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m hsm.conformance ARGS``."""
    return subprocess.run(
        [sys.executable, "-m", "hsm.conformance", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_conformance(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    """``hsmca conformance`` against ``target``, PIN from the environment."""
    return run_hsmca(
        "conformance",
        "--module",
        target.module,
        "--token-label",
        target.label,
        "--pin-source",
        "env:HSMCA_TEST_PIN",
        *args,
        env={"HSMCA_TEST_PIN": target.pin},
    )


def verdicts(stdout: str) -> dict[str, tuple[str, str]]:
    """route -> (return code, verdict) from a ``--json`` run over one key."""
    return {r["route"]: (r["return_code"], r["verdict"]) for r in json.loads(stdout)["results"]}


def generate_exportable_control(token: Any) -> bytes:
    """Control 1: an RSA-2048 key pair generated with CKA_EXTRACTABLE=true, CKA_SENSITIVE=false."""
    key_id = os.urandom(16)
    public, private = key_pair_templates(
        key_id=key_id, label=f"control-exportable-{key_id.hex()[:8]}", exportable=True
    )
    private[Attribute.SENSITIVE] = False
    token.run(lambda s: generate_in_session(s, KeySpec.RSA_2048, public, private))
    return key_id


def import_control(token: Any) -> bytes:
    """Control 2: an RSA-2048 private key made outside and imported with C_CreateObject.

    It is imported as protected as a key can be (sensitive, not extractable): every export
    route is refused, and only the attribute semantics show it was not generated in the token.
    """
    key_id = os.urandom(16)
    der = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    template = decode_rsa_private_key(der)
    template.update(
        {
            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
            Attribute.KEY_TYPE: KeyType.RSA,
            Attribute.ID: key_id,
            Attribute.LABEL: f"control-imported-{key_id.hex()[:8]}",
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
        }
    )
    token.run(lambda s: s.create_object(template))
    return key_id
