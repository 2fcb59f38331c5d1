"""A/B: issuance with the audit log on and off, in one process (no gRPC, no network).

    python bench/bench_audit.py [--seconds S] [--threads T] [--pairs N]

One PrivateCaService over a temporary SoftHSM state and SQLite file (synchronous=FULL, the
durable default), an ECC_256 root -> sub CA, and T threads issuing server certificates from
pre-made CSRs for S seconds; alternately with an installed audit log (each certificate's
"certificate.sign" record appended in the commit that records the certificate) and without.
Prints certs/s, group commits per certificate, and the ratio on/off: the record shares the
certificate's commit, so it should cost a few percent of CPU, not a commit per certificate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

ALGORITHM = "ECC_256"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the A/B and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--pairs", type=int, default=4)
    args = p.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-audit-"))
    subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(state)], check=True,  # noqa: S603
                   stdout=subprocess.DEVNULL)
    os.environ["SOFTHSM2_CONF"] = str(state / "softhsm2.conf")
    pin = (state / "user.pin").read_text().strip()

    from harness import make_csrs

    from hsm.config import TokenConfig, TokenRole
    from hsm.token import Token
    from service import audit
    from service.audit.key import AuditKey
    from service.private_ca.requests import (
        CreateRootCa,
        CreateServerCertificate,
        CreateSubCa,
        IssueCommon,
        SubjectFields,
        ValidityPeriod,
    )
    from service.private_ca.service import PrivateCaService
    from service.storage.db import create_engine_for, migrate

    module = "/usr/lib/softhsm/libsofthsm2.so"
    hsm = Token(TokenConfig(TokenRole.HSM, module, "hsmca-hsm", pin))
    software = Token(TokenConfig(TokenRole.SOFTWARE, module, "hsmca-software", pin))
    url = f"sqlite:///{state}/hsmca.db"
    migrate(url)
    engine = create_engine_for(url)
    svc = PrivateCaService(engine, hsm, software, public_base_url="http://127.0.0.1:8080",
                           min_rsa_bits=2048)
    log = audit.AuditLog(engine, default_tenant="o", key=AuditKey.ensure(hsm),
                         checkpoint_seconds=3600)
    root = svc.create_root_ca("o", CreateRootCa(SubjectFields("root", country="CN"),
                                                ALGORITHM, 10))
    sub = svc.create_sub_ca("o", CreateSubCa(root.identifier,
                                             SubjectFields("sub", country="CN"), ALGORITHM, 5))
    csrs = make_csrs(ALGORITHM)

    def run(audit_on: bool) -> tuple[float, float, float]:
        audit.install(log if audit_on else None)
        done = [0] * args.threads
        stop = time.monotonic() + args.seconds
        commits = svc.store.commits

        def work(k: int) -> None:
            i = k
            while time.monotonic() < stop:
                svc.create_server_certificate("o", CreateServerCertificate(
                    IssueCommon(sub.identifier, immediately=1), SubjectFields(),
                    ValidityPeriod(days=30), csr=csrs[i % len(csrs)]))
                done[k] += 1
                i += args.threads

        started = time.monotonic()
        cpu = time.process_time()
        threads = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu
        audit.install(None)
        total = sum(done)
        return (total / elapsed, (svc.store.commits - commits) / max(1, total),
                cpu / max(1, total) * 1e6)

    run(False)  # warm-up
    on: list[float] = []
    off: list[float] = []
    per_cert: dict[bool, list[float]] = {True: [], False: []}
    cpu_us: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.pairs):
        for audit_on in ((False, True) if i % 2 == 0 else (True, False)):
            rate, commits, cpu = run(audit_on)
            (on if audit_on else off).append(rate)
            per_cert[audit_on].append(commits)
            cpu_us[audit_on].append(cpu)
            print(f"pair {i + 1}: audit {'on ' if audit_on else 'off'} {rate:6.0f} certs/s, "
                  f"{commits:.2f} commits and {cpu:.0f} us of process CPU per certificate",
                  flush=True)
    m_on, m_off = statistics.median(on), statistics.median(off)
    print()
    print(f"{ALGORITHM} issuance in one process, {args.threads} threads, no gRPC, "
          f"{args.pairs} runs of {args.seconds:.0f} s per mode")
    print(f"  audit off: median {m_off:.0f} certs/s, "
          f"{statistics.median(per_cert[False]):.2f} commits per certificate")
    print(f"  audit on : median {m_on:.0f} certs/s, "
          f"{statistics.median(per_cert[True]):.2f} commits per certificate")
    c_on, c_off = statistics.median(cpu_us[True]), statistics.median(cpu_us[False])
    print(f"  process CPU per certificate: off {c_off:.0f} us, on {c_on:.0f} us "
          f"(+{c_on - c_off:.0f} us, ratio {c_on / c_off:.3f})")
    print(f"  ratio on/off (certs/s): {m_on / m_off:.3f}  (noisy on a shared machine; the "
          "CPU per certificate is the steadier figure)")
    log.close()
    hsm.close()
    software.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
