"""The peer: cfssl (Debian's golang-cfssl) signing the same CSRs under the same load.

    python bench/bench_cfssl.py [--seconds S] [--runs R] [--concurrency C]

cfssl is a Go CA with its key in software, serving HTTP/JSON (``cfssl serve``,
``POST /api/v1/cfssl/sign``). It is measured twice: without a database, and with its SQLite
certificate database (``-db-config``), where every signed certificate is INSERTed before it
is returned: the durability class of a CA that can revoke what it issued. The load comes
from the same generator as hsmca's (h2load, C connections with one request in flight each);
cfssl serves HTTP/1.1 (Go's net/http speaks HTTP/2 only over TLS), so h2load runs with
``--h1``. A run counts only 2xx answers; with the database, the rows cfssl recorded must
account for every one of them.

The certdb schema is cfssl's own (certdb/sqlite/migrations/001_CreateCertificates.sql,
which the Debian package does not ship): the ``certificates`` and ``ocsp_responses`` tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from harness import free_port, parse_h2load  # noqa: E402

CERTDB_SCHEMA = """
CREATE TABLE certificates (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  ca_label                 blob,
  status                   blob NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  body                     blob NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier)
    REFERENCES certificates(serial_number, authority_key_identifier)
);
"""

SIGNING_CONFIG = {
    "signing": {
        "default": {
            "expiry": "720h",
            "usages": ["digital signature", "key encipherment", "server auth"],
        }
    }
}


def available() -> bool:
    """True if cfssl and h2load are installed (``make bench-deps``)."""
    return shutil.which("cfssl") is not None and shutil.which("h2load") is not None


def _write_ca(directory: Path, algorithm: str) -> tuple[Path, Path]:
    """A self-signed CA certificate and its software key (PEM files) for ``algorithm``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key: Any = (rsa.generate_private_key(65537, 2048) if algorithm == "RSA_2048"
                else ec.generate_private_key(ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cfssl bench {algorithm}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # cfssl reads PKCS#1 (RSA) and SEC 1 (EC) private keys.
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def cfssl_server(algorithm: str, *, database: bool) -> Iterator[tuple[str, Path | None]]:
    """``cfssl serve`` with a fresh CA; yields (base URL, SQLite certdb path or None)."""
    directory = Path(tempfile.mkdtemp(prefix="hsmca-bench-cfssl-"))
    try:
        cert, key = _write_ca(directory, algorithm)
        config = directory / "config.json"
        config.write_text(json.dumps(SIGNING_CONFIG))
        port = free_port()
        args = ["cfssl", "serve", "-address", "127.0.0.1", "-port", str(port), "-ca", str(cert),
                "-ca-key", str(key), "-config", str(config), "-loglevel", "5"]
        db_path = None
        if database:
            db_path = directory / "certdb.sqlite3"
            with contextlib.closing(sqlite3.connect(db_path)) as db:
                db.executescript(CERTDB_SCHEMA)
            db_config = directory / "db-config.json"
            db_config.write_text(json.dumps({"driver": "sqlite3",
                                             "data_source": str(db_path)}))
            args += ["-db-config", str(db_config)]
        log = open(directory / "cfssl.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=0.2):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("cfssl serve did not start:\n"
                                       + (directory / "cfssl.log").read_text())
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}", db_path
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _rows(db_path: Path | None) -> int:
    if db_path is None:
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM certificates").fetchone()[0])


def h2load_sign_rate(base_url: str, db_path: Path | None, csr: str, concurrency: int,
                     seconds: float, state: Path) -> tuple[float, int]:
    """One h2load run against cfssl's sign endpoint: (signed per second, errors)."""
    body = state / "cfssl-request.json"
    body.write_text(json.dumps({"certificate_request": csr}))
    before = _rows(db_path)
    out = subprocess.run(  # noqa: S603 - fixed arguments
        ["h2load", "--h1", "--clients", str(concurrency), "--max-concurrent-streams", "1",  # noqa: S607
         "--duration", f"{seconds:g}", "--data", str(body),
         "--header", "content-type: application/json",
         f"{base_url}/api/v1/cfssl/sign"], capture_output=True, text=True, check=True)
    counts = parse_h2load(out.stdout)
    ok = int(counts["succeeded"])
    errors = int(counts["done"] - counts["succeeded"] + counts["failed"] + counts["errored"]
                 + counts["timeout"])
    if db_path is not None:
        time.sleep(0.5)
        recorded = _rows(db_path) - before
        errors += max(0, ok - recorded)
        ok = min(ok, recorded)
    return ok / counts["seconds"], errors


@contextlib.contextmanager
def peers(algorithm: str) -> Iterator[dict[bool, tuple[str, Path | None]]]:
    """Both cfssl servers for ``algorithm`` (without and with its certdb), running at once.

    They sit idle between their runs, so their runs can alternate with hsmca's and every
    ratio is taken from runs minutes apart at most.
    """
    with cfssl_server(algorithm, database=False) as plain, \
            cfssl_server(algorithm, database=True) as with_db:
        yield {False: plain, True: with_db}


def measure(algorithms: Sequence[str], csrs: dict[str, list[str]], *, concurrency: int,
            seconds: float, runs: int) -> dict[tuple[str, bool], tuple[float, list[float], int]]:
    """cfssl's median signing rate per (algorithm, with database): (median, runs, errors)."""
    out = {}
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-cfssl-load-"))
    try:
        for alg in algorithms:
            with peers(alg) as servers:
                for database, (url, db_path) in servers.items():
                    each, errors = [], 0
                    for i in range(runs):
                        rate, e = h2load_sign_rate(url, db_path, csrs[alg][i % len(csrs[alg])],
                                                   concurrency, seconds, state)
                        each.append(rate)
                        errors += e
                    out[(alg, database)] = (statistics.median(each), each, errors)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Measure cfssl alone and print its rates."""
    from harness import ALGORITHMS, make_csrs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    if not available():
        print("cfssl or h2load is not installed (make bench-deps)", file=sys.stderr)
        return 1
    csrs = {alg: make_csrs(alg)[:4] for alg in ALGORITHMS}
    for (alg, database), (median, each, errors) in measure(
            list(ALGORITHMS), csrs, concurrency=args.concurrency, seconds=args.seconds,
            runs=args.runs).items():
        print(f"cfssl {alg:<9} {'certdb' if database else 'no db':<7} {median:8.0f}/s  runs "
              f"{', '.join(f'{x:.0f}' for x in each)}  errors {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
