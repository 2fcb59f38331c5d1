"""A private PostgreSQL cluster for the test session: initdb into a temp dir, a free port.

Nothing here touches a system cluster: the data directory, the unix socket and the log
live in a directory of our own; the server listens on 127.0.0.1 on a port nobody uses and
takes password logins only. PostgreSQL refuses to run as root, so when the tests run as
root (as CI does) the cluster belongs to an unprivileged user (``postgres`` if Debian's
package created it, else ``nobody``) and its commands run through ``runuser``.
Several test sessions on one machine each get their own cluster.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Backends the database fixtures are parametrized over (storage, Private CA, lifecycle,
#: jobs, KMS). CI runs both; HSMCA_TEST_BACKENDS=sqlite runs without a PostgreSQL server.
BACKENDS = tuple(b for b in os.environ.get("HSMCA_TEST_BACKENDS",
                                           "sqlite,postgresql").split(",") if b)

#: Where Debian's postgresql packages put the server binaries, newest version last.
BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None."""
    found = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name)
                   if Path(p).parent.name.isdigit() else 0)
    found = [p for p in found if (Path(p) / "initdb").is_file()]
    return Path(found[-1]) if found else None


class PostgresCluster:
    """A throwaway cluster: :meth:`start`, :meth:`create_database`, :meth:`stop`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="hsmca-test-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user = "hsmca"
        self.password = secrets.token_hex(16)
        self._runas: list[str] = []
        if os.geteuid() == 0:
            owner = "postgres" if _user_exists("postgres") else "nobody"
            self._runas = ["runuser", "-u", owner, "--"]
            shutil.chown(self.root, owner)
        self._databases = 0

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._runas, *argv], check=check, capture_output=True,
                              text=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        """initdb (first time only) and start the server; returns once it accepts logins."""
        if not self.data.exists():
            pwfile = self.root / "pw"
            pwfile.write_text(self.password)
            if self._runas:
                shutil.chown(pwfile, self._runas[2])
            self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user,
                      f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                      "--locale=C", "--no-sync")
            pwfile.unlink()
        # fsync off: a test cluster is thrown away, durability is not what is under test.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=300 -c shared_buffers=32MB")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: as a crash)."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "stop", check=False)

    def restart(self, down_seconds: float = 1.0) -> None:
        """Stop, stay down for ``down_seconds``, start again: an outage of the database."""
        self.stop("fast")
        time.sleep(down_seconds)
        self.start()

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of a database of this cluster (psycopg 3 driver)."""
        return (f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/"
                f"{database}")

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             password=self.password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server and remove every file of the cluster."""
        with contextlib.suppress(Exception):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
