"""Which interpreter `make` makes `.venv` with (the Makefile's PYTHON)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def chosen(*assignments: str) -> str:
    """The Makefile's PYTHON with these variable assignments on make's command line."""
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), *assignments, "--eval", "show-python: ; @echo $(PYTHON)",
         "show-python"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    return out.stdout.strip()


def test_a_cpython_3_11_with_venv_support_is_chosen() -> None:
    # This interpreter runs the tests: CPython >= 3.11 with venv (ensurepip) support.
    assert chosen(f"SYSTEM_PYTHON={sys.executable}") == sys.executable


@pytest.mark.parametrize("script", [
    "import sys; sys.exit(1)",  # what the check answers for a Python older than 3.11
    "raise ImportError('No module named ensurepip')",  # Debian without python3-venv
])
def test_an_unsuitable_system_python_falls_back_to_python3_on_path(tmp_path: Path,
                                                                    script: str) -> None:
    fake = tmp_path / "python3"
    fake.write_text(f"#!{sys.executable}\n{script}\n")
    fake.chmod(0o755)
    assert chosen(f"SYSTEM_PYTHON={fake}") == "python3"
    assert chosen(f"SYSTEM_PYTHON={tmp_path / 'missing'}") == "python3"


def test_python_on_the_command_line_wins() -> None:
    assert chosen("PYTHON=/opt/python/bin/python3") == "/opt/python/bin/python3"
