"""The shared opencryptoki set-up: a run that ends does not stop the daemon another run uses."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import slotd
from conformance_support import REPO


def _slotd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "opencryptoki" / "slotd.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_second_user_joins_and_leaves_without_stopping_the_daemon(ock: Any) -> None:
    # This session holds the token (the ock fixture); another run joins, uses it, leaves.
    pid = slotd._daemon_pid()
    assert pid is not None
    done = _slotd("run", "--", "sh", "-c", 'test -n "$HSMCA_OCK_PIN" && echo "$HSMCA_OCK_LABEL"')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ock.label
    # Still the same daemon, still our configuration and token: nobody tore them down.
    assert slotd._daemon_pid() == pid
    assert slotd.CONF.read_text() == slotd.CONFIG
    assert (slotd.DATA_DIR / slotd.TOKNAME / "NVTOK.DAT").exists()


def test_usage_errors() -> None:
    done = _slotd("run", "true")
    assert done.returncode == 2
    assert "run -- COMMAND" in done.stderr
