"""OCSP responder: responses/s from the cache, and what a cache miss costs.

    python bench/bench_ocsp.py [--requests R] [--workers W] [--certificates N]
                               [--concurrency C]

Runs the real service (bench/harness.py's set-up: W worker processes sharing the
HTTP port) with an ECC_256 root -> sub CA with CRLs (so OCSP) on, issues N server
certificates, then:

- cache misses: POSTs one request per certificate, one at a time: the first answer for a
  serial is signed by the token (and audited and stored, one commit); the second is a hit.
  Prints the median latency of each and the difference (the cost of a miss);
- throughput: h2load (HTTP/1.1, GET /ocsp/<base64>, a new connection per request as the
  server closes them) over the N serials with C clients for R requests, next to the same
  server answering GET of the sub CA's CRL (static DER from the database) in the same run:
  the ratio says how close the responder comes to the HTTP server's own rate.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def _hierarchy(target: str) -> tuple[str, bytes]:
    import grpc

    from service.gen.hsmca.v1 import private_ca_pb2 as pb
    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = private_ca_pb2_grpc.PrivateCaStub(channel)
        root = stub.CreateRootCACertificate(pb.CreateRootCACertificateRequest(
            common_name="bench ocsp root", organization="hsmca bench", country_code="CN",
            algorithm="ECC_256", years=10, enable_crl=1, crl_day=7), timeout=60)
        sub = stub.CreateSubCACertificate(pb.CreateSubCACertificateRequest(
            parent_identifier=root.identifier, common_name="bench ocsp sub",
            organization="hsmca bench", country_code="CN", algorithm="ECC_256", years=5,
            enable_crl=1, crl_day=7), timeout=60)
        return sub.identifier, sub.certificate.encode()


def _issue(target: str, sub_id: str, csrs: list[str]) -> list[bytes]:
    import grpc

    from service.gen.hsmca.v1 import private_ca_pb2 as pb
    from service.gen.hsmca.v1 import private_ca_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = private_ca_pb2_grpc.PrivateCaStub(channel)
        return [stub.CreateServerCertificateWithCsr(pb.CreateServerCertificateWithCsrRequest(
            parent_identifier=sub_id, csr=csr, days=30, immediately=1),
            timeout=60).x509_certificate.encode() for csr in csrs]


def _requests(leaves: list[bytes], issuer_pem: bytes) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    issuer = x509.load_pem_x509_certificate(issuer_pem)
    return [ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_pem_x509_certificate(leaf), issuer, hashes.SHA1()).build()  # noqa: S303
        .public_bytes(serialization.Encoding.DER) for leaf in leaves]


def _post(url: str, body: bytes) -> float:
    started = time.perf_counter()
    req = urllib.request.Request(url, data=body,  # noqa: S310 - local URL
                                 headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - local URL
        data = resp.read()
    if data[:3] == b"\x30\x03\x0a":
        raise RuntimeError(f"OCSP error response {data.hex()}")
    return time.perf_counter() - started


def _h2load(urls: list[str], clients: int, requests: int) -> float:
    from harness import parse_h2load

    # A request count, not --duration: h2load's timed mode did not always stop here.
    out = subprocess.run(  # noqa: S603 - fixed arguments
        ["h2load", "--h1", "--clients", str(clients), "--requests", str(requests),  # noqa: S607
         *urls], capture_output=True, text=True, check=True, timeout=600)
    counts = parse_h2load(out.stdout)
    if counts["failed"] or counts["errored"]:
        raise RuntimeError(f"h2load reported errors:\n{out.stdout}")
    return counts["succeeded"] / counts["seconds"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    from harness import free_port, make_csrs, serving

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=10000, help="requests per h2load run")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--certificates", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    if not shutil.which("h2load"):
        print("bench_ocsp: h2load is missing (Debian nghttp2-client; make bench installs it)")
        return 2
    csrs = make_csrs("ECC_256")[:args.certificates]
    state = Path(tempfile.mkdtemp(prefix="hsmca-bench-ocsp-"))
    port = free_port()
    try:
        with serving(state, args.workers, port) as config:
            target = f"127.0.0.1:{port}"
            http = f"http://{config.http.listen}"
            sub_id, sub_pem = _hierarchy(target)
            requests = _requests(_issue(target, sub_id, csrs), sub_pem)
            misses = [_post(f"{http}/ocsp", r) for r in requests]
            hits = [_post(f"{http}/ocsp", r) for r in requests for _ in range(3)]
            urls = [f"{http}/ocsp/" + urllib.parse.quote(base64.b64encode(r).decode(), safe="")
                    for r in requests]
            for url in urls:  # every worker has seen every serial (stored or signed)
                for _ in range(2 * args.workers):
                    urllib.request.urlopen(url, timeout=30).read()  # noqa: S310
            crl_url = f"{http}/crl/{sub_id}.crl"
            deadline = time.monotonic() + 30
            while True:  # the background thread publishes the new CA's first CRL
                try:
                    urllib.request.urlopen(crl_url, timeout=10).read()  # noqa: S310
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            ocsp_rate = _h2load(urls, args.concurrency, args.requests)
            crl_rate = _h2load([crl_url], args.concurrency, args.requests)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    miss, hit = statistics.median(misses), statistics.median(hits)
    print()
    print(f"OCSP, ECC_256 CA, {args.workers} workers, {args.certificates} serials, "
          f"cpu_count={os.cpu_count()}")
    print(f"  cache miss (token signs, audit + store commit): median {miss * 1000:.2f} ms")
    print(f"  cache hit:                                      median {hit * 1000:.2f} ms")
    print(f"  cost of a miss: {(miss - hit) * 1000:.2f} ms")
    print(f"  responses/s from the cache (h2load, {args.concurrency} clients, "
          f"{args.requests} requests): {ocsp_rate:.0f}")
    print(f"  same server, GET of a CRL (static DER): {crl_rate:.0f}/s; "
          f"ratio {ocsp_rate / crl_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
