"""A/B of two checkouts' issuance, side by side in one sitting, with alternating h2load runs.

    python bench/bench_ab.py OLD_CHECKOUT NEW_CHECKOUT [--algorithm ECC_256|RSA_2048]
                             [--runs R] [--seconds S] [--workers N] [--concurrency C]
                             [--python-old PY] [--python-new PY]

Starts the real service from each checkout (a directory with this repository's layout,
e.g. ``git worktree add --detach /tmp/old main``; both run with this interpreter and its packages,
or with the interpreter --python-old / --python-new names, e.g. another ``.venv``'s),
each on its own SoftHSM state and SQLite database, both up at once. Then R pairs of h2load
runs, A then B, then B then A, ... (so a shared machine's drifting load hits both alike),
each run S seconds of CreateServerCertificateWithCsr with C calls in flight, checked as
bench/harness.py checks its runs. Per run it prints certs/s, the workers' CPU time per
certificate (from /proc; much less disturbed by other load than a rate) and their voluntary
context switches per certificate; then the medians and the B/A ratios.

An A/A run (the same checkout twice) shows this machine's noise: on the project's shared
2-core machine at load average ~10, the medians of 4 pairs differed by 0.1% in CPU per
certificate and 3% in rate, while single runs swung by +-10% and +-40%.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Served:
    """One running service, as its serving process reports it."""

    target: str
    sub_id: str
    state: Path
    pids: list[int]


def checkout_problem(checkout: Path) -> str | None:
    """Why ``checkout`` cannot be served, or None.

    A directory without the service would not fail by itself: the serving process would
    import whatever ``service`` its interpreter finds first (this script's own), and the
    A/B would quietly compare a checkout with itself.
    """
    for part in ("service/__init__.py", "bench/bench_issuance.py"):
        if not (checkout / part).is_file():
            return f"{checkout} is not a checkout of this repository (no {part})"
    return None


def harness_for(checkout: Path) -> ModuleType:
    """Put ``checkout`` first on this process's path; the bench harness that serves it.

    The checkout's own bench/harness.py, or for a checkout older than that file this one's,
    which only appends its repository to the path: ``service`` still comes from the checkout.
    """
    sys.path[:0] = [str(checkout), str(checkout / "bench")]
    import harness

    return harness


def _serve(checkout: Path, algorithm: str, workers: int, info: Path, stop: Path) -> None:
    """Serving process: the service from ``checkout`` until ``stop`` exists."""
    import multiprocessing as mp

    harness = harness_for(checkout)
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-ab-"))
    port = harness.free_port()
    try:
        with harness.serving(state, workers, port):
            sub_id = harness.create_hierarchy(f"127.0.0.1:{port}", algorithm)
            info.write_text(json.dumps({"target": f"127.0.0.1:{port}", "sub_id": sub_id,
                                        "state": str(state),
                                        "pids": [c.pid for c in mp.active_children()]}))
            while not stop.exists():
                time.sleep(0.2)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _voluntary_switches(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        for status in glob.glob(f"/proc/{pid}/task/*/status"):
            try:
                with open(status) as f:
                    total += sum(int(line.split()[1]) for line in f
                                 if line.startswith("voluntary_ctxt_switches"))
            except OSError:
                pass  # a thread that ended meanwhile
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Serve both checkouts, alternate the runs, print the medians and ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path, nargs="?", help="checkout A")
    p.add_argument("new", type=Path, nargs="?", help="checkout B")
    p.add_argument("--algorithm", choices=("ECC_256", "RSA_2048"), default="ECC_256")
    p.add_argument("--runs", type=int, default=6, help="pairs of runs")
    p.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    p.add_argument("--python-old", type=Path, default=Path(sys.executable),
                   help="interpreter that serves checkout A (default: this one)")
    p.add_argument("--python-new", type=Path, default=Path(sys.executable),
                   help="interpreter that serves checkout B (default: this one)")
    p.add_argument("--serve", nargs=3, metavar=("CHECKOUT", "INFO", "STOP"),
                   help=argparse.SUPPRESS)  # internal: the serving process
    args = p.parse_args(argv)
    if args.serve:
        checkout, info, stop = args.serve
        _serve(Path(checkout), args.algorithm, args.workers, Path(info), Path(stop))
        return 0
    if args.old is None or args.new is None:
        p.error("name two checkouts")
    for checkout in (args.old, args.new):
        if (problem := checkout_problem(checkout)) is not None:
            p.error(problem)
    if shutil.which("h2load") is None:
        p.error("h2load is missing (make bench-deps)")

    harness = harness_for(BENCH.parent)  # this checkout's: CSRs, load, CPU time

    work = Path(tempfile.mkdtemp(prefix="hsmca-bench-ab-run-"))
    servers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, checkout, python in (("A", args.old, args.python_old),
                                       ("B", args.new, args.python_new)):
            servers[name] = subprocess.Popen(  # noqa: S603 - this script, fixed arguments
                [str(python), __file__, "--serve", str(checkout.resolve()),
                 str(work / f"{name}.json"), str(work / "stop"),
                 "--algorithm", args.algorithm, "--workers", str(args.workers)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        served: dict[str, Served] = {}
        for name, proc in servers.items():
            info = work / f"{name}.json"
            while not info.exists():
                if proc.poll() is not None:
                    raise SystemExit(f"service {name} exited during start-up")
                time.sleep(0.5)
            d = json.loads(info.read_text())
            served[name] = Served(d["target"], d["sub_id"], Path(d["state"]), d["pids"])
        print(f"{args.algorithm}: A = {args.old}, B = {args.new}; {args.runs} pairs of "
              f"{args.seconds:g} s runs, {args.concurrency} in flight, {args.workers} workers "
              "each", flush=True)
        csrs = harness.make_csrs(args.algorithm)[:4]
        for s in served.values():  # warm up
            harness.h2load_rate(s.state, s.target, s.sub_id, csrs[0], args.concurrency, 2.0)
        results: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
        for i in range(args.runs):
            for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
                s = served[name]
                cpu0 = sum(map(harness.process_cpu_seconds, s.pids))
                cs0 = _voluntary_switches(s.pids)
                rate, runs = harness.h2load_rate(s.state, s.target, s.sub_id, csrs[i % len(csrs)],
                                                 args.concurrency, args.seconds)
                ok = max(1, runs[0].ok)
                cpu = (sum(map(harness.process_cpu_seconds, s.pids)) - cpu0) / ok * 1e3
                switches = (_voluntary_switches(s.pids) - cs0) / ok
                results[name].append((rate, cpu, switches))
                error = (f"  errors {runs[0].errors}: {runs[0].first_error}"
                         if runs[0].errors else "")
                print(f"{name} run {i}: {rate:.0f} certs/s, {cpu:.3f} ms CPU and "
                      f"{switches:.1f} switches per certificate{error}", flush=True)
    finally:
        (work / "stop").touch()
        for proc in servers.values():
            proc.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: [statistics.median(r[k] for r in rs) for k in range(3)]
               for name, rs in results.items()}
    for name, (rate, cpu, switches) in medians.items():
        print(f"{name}: median {rate:.0f} certs/s, {cpu:.3f} ms CPU per certificate, "
              f"{switches:.1f} switches per certificate")
    (ra, ca, sa), (rb, cb, sb) = medians["A"], medians["B"]
    print(f"B/A: rate {rb / ra:.3f}x, CPU per certificate {cb / ca:.3f}x, "
          f"switches per certificate {sb - sa:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
