"""No PIN in any process's argv while the tokens are initialised; the database file is 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import text

from service.storage.db import create_engine_for

REPO = Path(__file__).resolve().parents[2]


def _sample_cmdlines(stop: threading.Event, seen: list[bytes]) -> None:
    while not stop.is_set():
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        seen.append(f.read())
                except OSError:
                    pass


def test_init_tokens_puts_no_pin_in_argv(tmp_path: Path) -> None:
    state = tmp_path / "softhsm"
    state.mkdir()
    user_pin, so_pin = "a1b2c3d4e5f6a7b8c9d0e1f2", "f0e1d2c3b4a5f6e7d8c9b0a1"
    (state / "user.pin").write_text(user_pin)
    (state / "so.pin").write_text(so_pin)
    seen: list[bytes] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_cmdlines, args=(stop, seen))
    sampler.start()
    try:
        result = subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(state)],
                                capture_output=True, check=False, timeout=120)
    finally:
        stop.set()
        sampler.join()
    assert result.returncode == 0, result.stderr
    assert any(b"softhsm2-util" in c for c in seen)  # the sampler did see the tool run
    leaked = [c for c in seen if user_pin.encode() in c or so_pin.encode() in c]
    assert leaked == []
    assert user_pin.encode() not in result.stdout + result.stderr
    # The user PIN set is the one in user.pin: a login with it works.
    env = dict(os.environ, SOFTHSM2_CONF=str(state / "softhsm2.conf"))
    login = subprocess.run(
        [sys.executable, "-c",
         "import pkcs11,sys; t=pkcs11.lib('/usr/lib/softhsm/libsofthsm2.so')"
         ".get_token(token_label='hsmca-hsm'); t.open(user_pin=sys.stdin.read()).close()"],
        input=user_pin, text=True, env=env, capture_output=True, check=False, timeout=60)
    assert login.returncode == 0, login.stderr


def test_sqlite_database_and_wal_are_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "hsmca.db"
        engine = create_engine_for(f"sqlite:///{db}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        wal = tmp_path / "hsmca.db-wal"
        assert wal.exists()
        for path in (db, wal):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        engine.dispose()
    finally:
        os.umask(old)
