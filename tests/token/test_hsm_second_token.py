"""What loading a second PKCS#11 implementation (opencryptoki) into a process must not break."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

_SCRIPT = """
import sys
from hsm.token import load_library
load_library(sys.argv[1])  # opencryptoki: brings the system libcrypto into global scope
from tongsuopy.crypto import serialization
from tongsuopy.crypto.asymciphers import ec
key = ec.generate_private_key(ec.SM2())
spki = key.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
assert isinstance(serialization.load_der_public_key(spki), ec.EllipticCurvePublicKey)
print("sm2 ok")
"""


def test_sm2_in_software_works_in_a_process_that_loaded_opencryptoki(ock: Any) -> None:
    # A fresh process, so nothing else loaded tongsuopy first; without the token layer
    # loading it before the module, tongsuopy fails with "Unsupported key type".
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, ock.module],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sm2 ok"
