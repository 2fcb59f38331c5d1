"""Raw token signing rate per key type, with 1 process and with N processes.

    python bench/bench_token.py [--seconds S] [--processes N] [--json out.json]

The baseline issuance benchmarks are compared against. Standalone: it makes its own SoftHSM
state in a temp dir (softhsm/init-tokens.sh) and never touches var/softhsm. Every PKCS#11
call happens in 'spawn' worker processes, each with its own Token (one session, one thread,
docs/architecture.md), so the calling process may already use another SoftHSM configuration:
SOFTHSM2_CONF is read once per process, when the module is initialised.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_MODULE = os.environ.get("HSMCA_BENCH_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "hsmca-hsm"  # noqa: S105 - a token label, not a secret
SPEC_NAMES = ("RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P384", "EC_P521")
RUNS = 3
MESSAGE = bytes(range(256)) + b"a TBSCertificate is a few hundred bytes long"

# The signature scheme each key type is measured with (what a CA of that type issues with).
MECHANISMS = {
    "RSA_1024": "RSA_PKCS1_SHA256",
    "RSA_2048": "RSA_PKCS1_SHA256",
    "RSA_3072": "RSA_PKCS1_SHA256",
    "RSA_4096": "RSA_PKCS1_SHA256",
    "EC_P256": "ECDSA_SHA256",
    "EC_P384": "ECDSA_SHA384",
    "EC_P521": "ECDSA_SHA512",
}


@dataclass(frozen=True)
class TokenSite:
    """Where the workers find the token: SoftHSM config, module, label and PIN."""

    softhsm_conf: str
    module: str
    token_label: str
    pin: str


def _open_token(site: TokenSite) -> Any:
    # Must run before the module is loaded in this process (SoftHSM reads it once).
    os.environ["SOFTHSM2_CONF"] = site.softhsm_conf
    from hsm.config import TokenConfig, TokenRole
    from hsm.token import Token

    return Token(TokenConfig(TokenRole.HSM, site.module, site.token_label, site.pin))


def _create_keys(site: TokenSite, spec_names: Sequence[str]) -> dict[str, bytes]:
    """Worker: generate one non-exportable key per spec; returns their CKA_IDs."""
    from hsm.keys import KeySpec, generate_key_pair

    token = _open_token(site)
    ids: dict[str, bytes] = {}
    for name in spec_names:
        key_id = os.urandom(16)
        generate_key_pair(
            token,
            KeySpec(name),
            key_id=key_id,
            label=f"bench-{name}-{key_id.hex()[:8]}",
            exportable=False,
        )
        ids[name] = key_id
    return ids


def _destroy_keys(site: TokenSite, key_ids: Sequence[bytes]) -> None:
    """Worker: destroy the benchmark keys."""
    from hsm.keys import destroy_key

    token = _open_token(site)
    for key_id in key_ids:
        destroy_key(token, key_id)


_worker_token: Any = None
_worker_barrier: Any = None


def _init_worker(site: TokenSite, barrier: Any) -> None:
    global _worker_token, _worker_barrier
    _worker_token = _open_token(site)
    _worker_barrier = barrier


def _sign_window(key_id: bytes, mechanism_name: str, seconds: float) -> int:
    """Worker: after every worker is ready, sign for ``seconds``; returns the count."""
    from hsm.signing import SignMechanism, sign

    mechanism = SignMechanism(mechanism_name)
    sign(_worker_token, key_id, mechanism, MESSAGE)  # warm the key-handle cache
    _worker_barrier.wait()  # each worker takes exactly one window: all start together
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sign(_worker_token, key_id, mechanism, MESSAGE)
        count += 1
    return count


def _rate(
    pool: ProcessPoolExecutor, processes: int, key_id: bytes, spec: str, seconds: float
) -> float:
    futures = [
        pool.submit(_sign_window, key_id, MECHANISMS[spec], seconds) for _ in range(processes)
    ]
    return sum(f.result() for f in futures) / seconds


@contextlib.contextmanager
def token_site() -> Iterator[TokenSite]:
    """A SoftHSM state of its own holding the benchmark's token; removed on exit."""
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-softhsm-"))
    try:
        subprocess.run(  # noqa: S603 - our own script, fixed arguments
            [str(REPO / "softhsm" / "init-tokens.sh"), str(state)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        pin = (state / "user.pin").read_text().strip()
        yield TokenSite(str(state / "softhsm2.conf"), DEFAULT_MODULE, TOKEN_LABEL, pin)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def measure_raw_rates(
    spec_names: Sequence[str],
    processes: int,
    seconds: float,
    *,
    site: TokenSite | None = None,
) -> dict[str, Any]:
    """Signatures/s per key type with 1 and ``processes`` workers (median of 3 runs).

    On ``site``'s token (the keys are made for the call and destroyed after it), else on a
    token state made for this call alone.
    """
    if site is None:
        with token_site() as own:
            return measure_raw_rates(spec_names, processes, seconds, site=own)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as setup:
        key_ids = setup.submit(_create_keys, site, list(spec_names)).result()
    try:
        results: dict[str, dict[str, Any]] = {}
        counts = sorted({1, processes})
        rates: dict[int, dict[str, float]] = {}
        for n in counts:
            barrier = ctx.Barrier(n)
            with ProcessPoolExecutor(
                max_workers=n,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(site, barrier),
            ) as pool:
                rates[n] = {
                    spec: statistics.median(
                        _rate(pool, n, key_ids[spec], spec, seconds) for _ in range(RUNS)
                    )
                    for spec in spec_names
                }
        for spec in spec_names:
            single, multi = rates[1][spec], rates[processes][spec]
            results[spec] = {
                "mechanism": MECHANISMS[spec],
                "single": round(single, 1),
                "multi": round(multi, 1),
                "ratio": round(multi / single, 2) if single else 0.0,
            }
    finally:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as cleanup:
            cleanup.submit(_destroy_keys, site, list(key_ids.values())).result()
    return {
        "unit": "signatures/s",
        "seconds_per_run": seconds,
        "runs": RUNS,
        "processes": processes,
        "cpu_count": os.cpu_count(),
        "module": site.module,
        "results": results,
    }


def format_rates(report: dict[str, Any]) -> str:
    """The report as a text table."""
    n = report["processes"]
    header = (
        f"{'key type':<9} {'mechanism':<17} {'1 process':>10} {f'{n} processes':>13} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    for spec, r in report["results"].items():
        lines.append(
            f"{spec:<9} {r['mechanism']:<17} {r['single']:>10.0f} {r['multi']:>13.0f} "
            f"{r['ratio']:>5.2f}x"
        )
    lines.append(
        f"(signatures/s, median of {report['runs']} runs of {report['seconds_per_run']} s; "
        f"cpu_count={report['cpu_count']})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print (and optionally save) the rates."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=1.0, help="length of each run (default 1)")
    p.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes for the N-process figure (default: cpu count)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON here")
    p.add_argument(
        "--specs", default=",".join(SPEC_NAMES), help="comma-separated key types to measure"
    )
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.processes < 1:
        p.error("--seconds must be > 0 and --processes >= 1")
    specs = [s.strip() for s in args.specs.split(",") if s.strip()]
    unknown = [s for s in specs if s not in MECHANISMS]
    if unknown:
        p.error(f"unknown key types {unknown}; choose from {sorted(MECHANISMS)}")
    report = measure_raw_rates(specs, args.processes, args.seconds)
    print(format_rates(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
