"""What the security perimeter costs: issuance over mTLS with authorization, next to plaintext.

    python bench/bench_mtls.py [--seconds S] [--runs R] [--workers N] [--concurrency C]
                               [--clients P]

Starts two instances of the real service on one SoftHSM state and one SQLite database: one
plaintext on loopback (``grpc.insecure``, every call the local admin: no policy, no rate
limit), one with mTLS, the policy and the shared rate limiter on. The bench principal's role
has a rate high enough never to refuse, so every call still pays for the bucket. Both issue
ECC_256 server certificates from the same sub CA (CreateServerCertificateWithCsr,
immediately = 1) with C calls in flight; the runs alternate between the two (plaintext,
mTLS, plaintext, ...) so that drift on a shared machine hits both alike. Prints the median
certs/s of each, the ratio and the load generator's CPU.

The load generator is bench/harness.py's Python client (P processes of grpc.aio
callers over a pool of connections, every status checked): h2load, the service's usual
generator, cannot present a client certificate. The Python client costs CPU on the same two
cores as the service, and more with TLS (it encrypts too); that cost is reported and is part
of the measured ratio, i.e. the ratio is pessimistic for the service.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import harness  # noqa: E402

#: The perimeter's budget: mTLS + authorization + rate limiting cost at most 15%.
TARGET_RATIO = 0.85
BENCH_PRINCIPAL = "bench"

POLICY = f"""
[roles.admin]
actions = ["*"]
rate_limit_exempt = true

[roles.bench]
actions = ["PrivateCa/CreateServerCertificateWithCsr", "PrivateCa/Describe*"]
cas = ["own"]
dns_names = ["*.bench.example"]
max_validity_days = 90
rate_per_second = 1000000
reads_per_second = 1000000

[[principals]]
id = "admin"
tenant = "default"
roles = ["admin"]

[[principals]]
id = "{BENCH_PRINCIPAL}"
tenant = "default"
roles = ["bench"]
"""


def _bootstrap(config: Any) -> None:
    """Bootstrap mTLS, write the bench policy and the bench principal's certificate."""
    from hsm.config import TokenRole
    from hsm.token import Token
    from service.auth.bootstrap import bootstrap, issue_principal

    config.auth.policy_file.write_text(POLICY)
    bootstrap(config)
    token = Token(config.token_config(TokenRole.HSM))
    try:
        issue_principal(config, token, BENCH_PRINCIPAL, config.tls.dir, name="bench", days=1)
    finally:
        token.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print it."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="seconds per run")
    p.add_argument("--runs", type=int, default=3, help="runs per mode (median)")
    p.add_argument("--workers", type=int, default=2, help="worker processes per instance")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    args = p.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-mtls-"))
    plain_port, mtls_port = harness.free_port(), harness.free_port()
    csrs = harness.make_csrs("ECC_256")
    rates: dict[str, list[float]] = {"plaintext": [], "mTLS": []}
    cpu: dict[str, list[float]] = {"plaintext": [], "mTLS": []}
    # The workers' CPU per certificate over the load window: a figure the machine's other
    # load distorts less than a rate (both instances' workers are counted; the idle one
    # costs ~nothing).
    per_cert: dict[str, list[float]] = {"plaintext": [], "mTLS": []}
    errors: dict[str, int] = {"plaintext": 0, "mTLS": 0}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(harness.serving(state, args.workers, plain_port))
            # Mutual TLS on a second port over the same token and database.
            mtls_config = stack.enter_context(harness.serving(
                state, args.workers, mtls_port, before_start=_bootstrap,
                overrides={"HSMCA_GRPC_INSECURE": "false",
                           "HSMCA_HTTP_LISTEN": f"127.0.0.1:{harness.free_port()}"}))
            tls_dir = mtls_config.tls.dir
            tls = harness.ClientTls(ca=(tls_dir / "ca.pem").read_bytes(),
                               key=(tls_dir / "bench.key").read_bytes(),
                               cert=(tls_dir / "bench.pem").read_bytes())
            sub_id = harness.create_hierarchy(f"127.0.0.1:{plain_port}", "ECC_256")
            print(f"issuing ECC_256 server certificates: {args.runs} x {args.seconds:.0f} s "
                  f"per mode, alternating, concurrency {args.concurrency}, "
                  f"{args.clients} client processes, {args.workers} workers each", flush=True)
            for run in range(args.runs):
                for mode, port, client_tls in (("plaintext", plain_port, None),
                                               ("mTLS", mtls_port, tls)):
                    rate, results = harness.issue_rate(
                        ctx, f"127.0.0.1:{port}", sub_id, csrs, args.concurrency,
                        args.clients, args.seconds, client_tls)
                    issued = sum(r.ok for r in results)
                    per_cert[mode].append(
                        sum(r.service_cpu_seconds for r in results) / max(1, issued) * 1000)
                    rates[mode].append(rate)
                    elapsed = max(r.seconds for r in results)
                    cpu[mode].append(sum(r.cpu_seconds for r in results) / elapsed)
                    errors[mode] += sum(r.errors for r in results)
                    first = next((r.first_error for r in results if r.first_error), "")
                    print(f"  run {run + 1} {mode:<9} {rate:7.0f} certs/s "
                          f"{per_cert[mode][-1]:6.3f} ms service CPU/cert"
                          f"{'  first error: ' + first if first else ''}", flush=True)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    plain, mtls = statistics.median(rates["plaintext"]), statistics.median(rates["mTLS"])
    ratio = mtls / plain if plain else 0.0
    print()
    print(f"{'mode':<10} {'certs/s':>8} {'service CPU/cert':>17} {'client CPU':>11} "
          f"{'errors':>7}")
    for mode, rate in (("plaintext", plain), ("mTLS", mtls)):
        print(f"{mode:<10} {rate:>8.0f} {statistics.median(per_cert[mode]):>14.3f} ms "
              f"{statistics.median(cpu[mode]):>10.2f}c {errors[mode]:>7}")
    cpu_ratio = statistics.median(per_cert["plaintext"]) / statistics.median(per_cert["mTLS"])
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"mTLS + authorization + rate limits / plaintext = {ratio:.2f}x "
          f"(cost {100 * (1 - ratio):.0f}%; target: cost <= 15%, {met})")
    print(f"service CPU per certificate, plaintext / mTLS = {cpu_ratio:.2f}x "
          f"(cost {100 * (1 - cpu_ratio):.0f}% of the service's own CPU)")
    print(f"(median of {args.runs} alternating runs; client = bench/harness.py's Python "
          f"grpc.aio client, its CPU in cores on the same machine; cpu_count={os.cpu_count()})")
    return 0 if errors["plaintext"] == errors["mTLS"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
