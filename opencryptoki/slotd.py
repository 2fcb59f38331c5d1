"""An opencryptoki software token for tests and `make conformance`, shared safely between runs.

opencryptoki's slot daemon (pkcsslotd) and its configuration are system-wide: the daemon
reads the compiled-in /etc/opencryptoki/opencryptoki.conf, listens on the compiled-in
/var/run/pkcsslotd.socket, and keeps token data under /var/lib/opencryptoki. Version 3.8.1
(Debian 12) has no variable to point it elsewhere (PKCS_APP_STORE is honoured by the
library, but 3.8.1's software token then writes its files to "/"). So several test runs on
one machine share one daemon and one token, and this module makes that safe:

- Two lock files under /run/lock. Every user holds ``users`` shared for as long as it uses
  the token; set-up and tear-down run under ``mutex`` exclusively. A run that finds no
  daemon writes a configuration holding only the software token (slot 3, token directory
  ``hsmca-swtok``), keeps the original, starts pkcsslotd and initialises the token with
  fresh random PINs (kept, mode 0600, in a root-only directory under /run).
- The last user (the one that gets ``users`` exclusively on leaving) stops the daemon it
  (or an earlier run of this module) started, deletes the token directory, its lock
  directory and shared memory, and restores the original configuration. A daemon this
  module did not start is never used or stopped.

The token is initialised with PyKCS11 in a child process: python-pkcs11 has no
C_InitToken/C_InitPIN, and PyKCS11 must not initialise the module inside a process that
also uses it through python-pkcs11.

Command line (as root):
    python opencryptoki/slotd.py run -- COMMAND...   run COMMAND with the token held;
        it gets HSMCA_OCK_MODULE, HSMCA_OCK_LABEL and HSMCA_OCK_PIN in its environment
    python opencryptoki/slotd.py status
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CONF = Path("/etc/opencryptoki/opencryptoki.conf")
DATA_DIR = Path("/var/lib/opencryptoki")
LOCK_DIR = Path("/var/lock/opencryptoki")
PIDFILE = Path("/var/run/pkcsslotd.pid")
SOCKET = Path("/var/run/pkcsslotd.socket")
SLOTD = "/usr/sbin/pkcsslotd"
TOKNAME = "hsmca-swtok"
LABEL = "hsmca-ock"
SLOT = 3
STATE = Path("/run/hsmca-opencryptoki")
MUTEX = Path("/run/lock/hsmca-opencryptoki.lock")
USERS = Path("/run/lock/hsmca-opencryptoki.users")
# opencryptoki's software token: PINs of 4 to 8 bytes; the SO PIN a new token starts with.
DEFAULT_SO_PIN = "87654321"
CONFIG = f"""\
# Written by hsmca's opencryptoki/slotd.py for its tests; the original is restored when the
# last test run using it ends. Only the software token, in its own token directory.
version opencryptoki-3.1

slot {SLOT}
{{
stdll = libpkcs11_sw.so
tokname = {TOKNAME}
description = "hsmca test software token"
}}
"""


class Unavailable(Exception):
    """The opencryptoki token cannot be provided here; the message says why."""


@dataclasses.dataclass(frozen=True)
class OckToken:
    """The shared software token: module path, label and PINs."""

    module: str
    label: str
    user_pin: str = dataclasses.field(repr=False)
    so_pin: str = dataclasses.field(repr=False)


def module_path() -> str | None:
    """The opencryptoki PKCS#11 module, wherever the multiarch directory puts it."""
    found = sorted(glob.glob("/usr/lib/*/pkcs11/libopencryptoki.so"))
    found += [p for p in ("/usr/lib/pkcs11/libopencryptoki.so",) if os.path.exists(p)]
    return found[0] if found else None


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _daemon_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) and SOCKET.exists() else None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _new_pin() -> str:
    return secrets.token_hex(4)  # 8 characters, the token's maximum


def _init_token(module: str, so_pin: str, user_pin: str) -> None:
    """C_InitToken, SO PIN change, C_InitPIN, in a child process (see the module docstring)."""
    code = f"""
import os
import PyKCS11
so_pin, user_pin = os.environ["OCK_SO_PIN"], os.environ["OCK_USER_PIN"]
lib = PyKCS11.PyKCS11Lib()
lib.load({module!r})
slot = {SLOT}
lib.initToken(slot, {DEFAULT_SO_PIN!r}, {LABEL!r}.ljust(32))  # C_InitToken reads 32 bytes
session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
session.login({DEFAULT_SO_PIN!r}, PyKCS11.CKU_SO)
session.setPin({DEFAULT_SO_PIN!r}, so_pin)
session.initPin(user_pin)
session.logout()
session.login(user_pin)
session.logout()
session.closeSession()
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "OCK_SO_PIN": so_pin, "OCK_USER_PIN": user_pin},  # not in argv
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise Unavailable(f"initialising the opencryptoki token failed:\n{done.stderr}")


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _remove_token_files() -> None:
    shutil.rmtree(DATA_DIR / TOKNAME, ignore_errors=True)
    shutil.rmtree(LOCK_DIR / TOKNAME, ignore_errors=True)
    # The software token's shared memory, named after its directory.
    shm = Path("/dev/shm") / str(DATA_DIR / TOKNAME).strip("/").replace("/", ".")
    shm.unlink(missing_ok=True)


def _lock_files() -> set[str]:
    return {str(p) for p in LOCK_DIR.rglob("LCK..*")} if LOCK_DIR.exists() else set()


def _set_up(module: str) -> OckToken:
    """Start the daemon and initialise the token unless a run of ours already did."""
    STATE.mkdir(mode=0o700, exist_ok=True)
    started = STATE / "started"
    pid = _daemon_pid()
    if pid is not None and not started.exists():
        raise Unavailable(
            f"pkcsslotd (pid {pid}) is running with a configuration hsmca did not write; "
            "stop it to let the tests run their own"
        )
    if pid is not None and (STATE / "user.pin").exists():
        return OckToken(
            module,
            LABEL,
            (STATE / "user.pin").read_text(),
            (STATE / "so.pin").read_text(),
        )
    if pid is not None:  # ours, but the token was never finished: start over
        _stop(pid)
    backup = STATE / "opencryptoki.conf.orig"
    if not backup.exists() and not (STATE / "conf.absent").exists():
        if CONF.exists():
            shutil.copy2(CONF, backup)
        else:
            (STATE / "conf.absent").touch()
    if not (STATE / "locks.before").exists():
        _write_private(STATE / "locks.before", "\n".join(sorted(_lock_files())))
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(CONFIG)
    _remove_token_files()
    for name in ("user.pin", "so.pin"):
        (STATE / name).unlink(missing_ok=True)
    started.write_text("starting\n")
    done = subprocess.run([SLOTD], capture_output=True, text=True, timeout=60, check=False)
    for _ in range(100):
        pid = _daemon_pid()
        if pid is not None:
            break
        time.sleep(0.05)
    if done.returncode != 0 or pid is None:
        raise Unavailable(f"pkcsslotd did not start (exit {done.returncode}): {done.stderr}")
    started.write_text(f"{pid}\n")
    so_pin, user_pin = _new_pin(), _new_pin()
    _init_token(module, so_pin, user_pin)
    _write_private(STATE / "so.pin", so_pin)
    _write_private(STATE / "user.pin", user_pin)
    return OckToken(module, LABEL, user_pin, so_pin)


def _tear_down() -> None:
    """Undo everything _set_up did; only called by the last user, under the mutex."""
    if not (STATE / "started").exists():
        return
    pid = _daemon_pid()
    if pid is not None:
        _stop(pid)
    PIDFILE.unlink(missing_ok=True)  # pkcsslotd leaves it behind
    _remove_token_files()
    before = set((STATE / "locks.before").read_text().split()) if (
        STATE / "locks.before"
    ).exists() else set()
    for lock in _lock_files() - before:
        Path(lock).unlink(missing_ok=True)
    backup = STATE / "opencryptoki.conf.orig"
    if backup.exists():
        shutil.copy2(backup, CONF)
    elif (STATE / "conf.absent").exists():
        CONF.unlink(missing_ok=True)
    shutil.rmtree(STATE, ignore_errors=True)


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


class Holder:
    """Holds the shared token from :meth:`acquire` until :meth:`release`."""

    def __init__(self) -> None:
        self._users: int | None = None
        self.token: OckToken | None = None

    def acquire(self) -> OckToken:
        """Join the token's users, setting the daemon and token up if nobody has."""
        if os.geteuid() != 0:
            raise Unavailable(
                "opencryptoki needs root here: pkcsslotd, its configuration and token "
                "directory are system-wide (CI runs the suite as root)"
            )
        module = module_path()
        if module is None or not os.path.exists(SLOTD):
            raise Unavailable("opencryptoki is not installed (`make test` installs it)")
        mutex = _open_lock(MUTEX)
        try:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            self._users = _open_lock(USERS)
            fcntl.flock(self._users, fcntl.LOCK_SH)
            try:
                self.token = _set_up(module)
            except BaseException:
                self._leave()
                raise
        finally:
            os.close(mutex)  # closing releases the flock
        return self.token

    def _leave(self) -> None:
        """Under the mutex: stop being a user; the last one out tears down."""
        assert self._users is not None
        fcntl.flock(self._users, fcntl.LOCK_UN)
        try:
            fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        else:
            _tear_down()
        os.close(self._users)
        self._users = None

    def release(self) -> None:
        """Leave; the last user stops the daemon and restores the configuration."""
        if self._users is None:
            return
        mutex = _open_lock(MUTEX)
        try:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            self._leave()
        finally:
            os.close(mutex)


@contextmanager
def held() -> Iterator[OckToken]:
    """The shared token for the duration of the block."""
    holder = Holder()
    token = holder.acquire()
    try:
        yield token
    finally:
        holder.release()


def main(argv: Sequence[str]) -> int:
    """``run -- COMMAND...`` or ``status``."""
    if argv[:1] == ["status"]:
        pid = _daemon_pid()
        print(f"module: {module_path()}; pkcsslotd: {pid or 'not running'}; "
              f"started by hsmca: {(STATE / 'started').exists()}")
        return 0
    if argv[:1] != ["run"] or len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with held() as token:
            env = {
                **os.environ,
                "HSMCA_OCK_MODULE": token.module,
                "HSMCA_OCK_LABEL": token.label,
                "HSMCA_OCK_PIN": token.user_pin,
            }
            return subprocess.run(argv[2:], env=env, check=False).returncode
    except Unavailable as e:
        print(f"opencryptoki: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
