"""A/B: certificate issuance with metrics recorded (HSMCA_METRICS=1) and without (=0).

    python bench/bench_metrics.py [--seconds S] [--pairs N] [--workers W] [--concurrency C]

Runs the real service (bench/harness.py's set-up: W worker processes, SQLite, a
temporary SoftHSM state) N times in each mode, alternating off/on so that drift of a busy
machine hits both alike, and issues ECC_256 server certificates with h2load for S seconds
per run. Prints certs/s per run, the medians and the ratio on/off: the budget is a slowdown
of at most 5% (ratio >= 0.95). The audit log is on in both modes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

ALGORITHM = "ECC_256"


def _run(metrics_on: bool, workers: int, concurrency: int, seconds: float,
         csrs: list[str]) -> tuple[float, float]:
    from harness import (
        create_hierarchy,
        free_port,
        h2load_rate,
        serving,
        workers_cpu_seconds,
    )

    os.environ["HSMCA_METRICS"] = "1" if metrics_on else "0"
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-metrics-"))
    port = free_port()
    try:
        with serving(state, workers, port):
            target = f"127.0.0.1:{port}"
            sub_id = create_hierarchy(target, ALGORITHM)
            h2load_rate(state, target, sub_id, csrs[0], concurrency, 1.0)  # warm-up
            cpu = workers_cpu_seconds()
            rate, results = h2load_rate(state, target, sub_id, csrs[1], concurrency, seconds)
            cpu = workers_cpu_seconds() - cpu
            if any(r.errors for r in results):
                raise RuntimeError(f"errors during the run: {results}")
            issued = sum(r.ok for r in results)
            return rate, cpu / max(1, issued) * 1e6
    finally:
        shutil.rmtree(state, ignore_errors=True)
        os.environ.pop("HSMCA_METRICS", None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the A/B and print the table."""
    from harness import make_csrs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--pairs", type=int, default=4, help="off/on pairs")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    if not shutil.which("h2load"):
        print("bench_metrics: h2load is missing (Debian nghttp2-client; make bench installs it)")
        return 2
    csrs = make_csrs(ALGORITHM)
    off: list[float] = []
    on: list[float] = []
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.pairs):
        for metrics_on, bucket in ((False, off), (True, on)) if i % 2 == 0 else \
                ((True, on), (False, off)):
            rate, us = _run(metrics_on, args.workers, args.concurrency, args.seconds, csrs)
            bucket.append(rate)
            cpu[metrics_on].append(us)
            print(f"pair {i + 1}: metrics {'on ' if metrics_on else 'off'} {rate:7.0f} certs/s, "
                  f"{us:5.0f} us of worker CPU per certificate", flush=True)
    m_off, m_on = statistics.median(off), statistics.median(on)
    print()
    print(f"{ALGORITHM} issuance, {args.workers} workers, concurrency {args.concurrency}, "
          f"{args.pairs} runs of {args.seconds:.0f} s per mode")
    print(f"  metrics off: median {m_off:.0f} certs/s  ({', '.join(f'{x:.0f}' for x in off)})")
    print(f"  metrics on : median {m_on:.0f} certs/s  ({', '.join(f'{x:.0f}' for x in on)})")
    print(f"  ratio on/off: {m_on / m_off:.3f}  (budget: >= 0.95)")
    c_off, c_on = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"  worker CPU per certificate: off {c_off:.0f} us, on {c_on:.0f} us "
          f"(ratio {c_on / c_off:.3f}; steadier than certs/s on a shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
