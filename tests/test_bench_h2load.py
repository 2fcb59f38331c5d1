"""The benchmark's h2load glue: the request framing, the report parsing, the failure scan,
and what the A/B accepts as a checkout.

h2load cannot see gRPC statuses, so these pieces decide whether a benchmark run counts; the
run itself (make bench) is not part of the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.gen.hsmca.v1 import private_ca_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_ab  # noqa: E402
import bench_issuance  # noqa: E402
import harness  # noqa: E402

# Copied from an h2load 1.52 run against `hsmca serve`.
REPORT = """\
starting benchmark...
finished in 5.00s, 1456.40 req/s, 1.41MB/s
requests: 7282 total, 7298 started, 7282 done, 7282 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 7282 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_grpc_frame_is_a_length_prefixed_uncompressed_message() -> None:
    message = pb.CreateServerCertificateWithCsrRequest(
        csr="x" * 300, parent_identifier="sub", days=30, immediately=1)
    framed = harness.grpc_frame(message.SerializeToString())
    assert framed[0] == 0  # not compressed
    length = int.from_bytes(framed[1:5], "big")
    assert length == len(framed) - 5
    assert pb.CreateServerCertificateWithCsrRequest.FromString(framed[5:]) == message


def test_parse_h2load_reads_counts_and_duration() -> None:
    counts = harness.parse_h2load(REPORT)
    assert counts["done"] == 7282 and counts["started"] == 7298
    assert counts["failed"] == counts["errored"] == counts["timeout"] == 0
    assert counts["seconds"] == 5.0


def test_parse_h2load_refuses_an_unexpected_report() -> None:
    with pytest.raises(RuntimeError, match="unexpected h2load output"):
        harness.parse_h2load("finished in 5.00s, 0 req/s\n")


def test_failed_calls_reports_only_failed_issuance_calls_after_the_offset(
        tmp_path: Path) -> None:
    method = harness.ISSUE_METHOD
    old = f"w INFO hsmca.rpc: rpc method={method} code=INTERNAL reason=x\n"
    log = tmp_path / "workers.log"
    log.write_text(old)
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write(f"w INFO hsmca.rpc: rpc method={method} code=OK reason=- duration_ms=1\n")
        f.write("w INFO hsmca.rpc: rpc method=/grpc.health.v1.Health/Check code=UNAVAILABLE\n")
        f.write(f"w INFO hsmca.rpc: rpc method={method} code=NOT_FOUND reason=NotFound.P\n")
    failed = harness.failed_calls(log, offset)
    assert len(failed) == 1 and "code=NOT_FOUND" in failed[0]


def test_machine_facts_are_measured_and_leave_the_directory_as_it_was(tmp_path: Path) -> None:
    facts = bench_issuance.measure_machine(tmp_path, syncs=5, calls=1000, loops=5)
    assert list(tmp_path.iterdir()) == []
    # Plausible magnitudes on any machine (a sync may cost next to nothing on tmpfs), and a
    # loop of 1000 stores takes longer than one system call.
    assert facts.sync_ms > 0
    assert 0 < facts.syscall_us < facts.python_us < 1e6
    line = facts.line()
    assert line.startswith("machine: ")
    assert f"{facts.sync_ms:.2f} ms" in line and f"{facts.python_us:.0f} us" in line


def test_ab_refuses_a_directory_that_is_not_a_checkout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Served anyway, it would import this repository's code and compare it with itself.
    repo = Path(__file__).resolve().parent.parent
    assert bench_ab.checkout_problem(repo) is None
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "__init__.py").write_text("")
    assert "bench/bench_issuance.py" in (bench_ab.checkout_problem(tmp_path) or "")
    with pytest.raises(SystemExit) as exit_:
        bench_ab.main([str(repo), str(tmp_path / "missing")])
    assert exit_.value.code == 2
    assert "no service/__init__.py" in capsys.readouterr().err


def test_ab_serves_an_older_checkout_with_its_own_service(tmp_path: Path) -> None:
    # A checkout from before bench/harness.py: this checkout's harness serves it, and the
    # service it imports must be the checkout's, or the A/B compares this code with itself.
    bench = Path(__file__).resolve().parent.parent / "bench"
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "__init__.py").write_text("")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench_issuance.py").write_text("")
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import bench_ab; h = bench_ab.harness_for(Path(sys.argv[2])); import service; "
            "print(h.__file__); print(service.__file__)")

    def harness_and_service() -> list[str]:
        """The files of the harness and the service a fresh process serves tmp_path with."""
        return subprocess.run([sys.executable, "-c", code, str(bench), str(tmp_path)],
                              capture_output=True, text=True, check=True).stdout.split()

    assert harness_and_service() == [str(bench / "harness.py"),
                                     str(tmp_path / "service" / "__init__.py")]
    # A checkout with its own harness is served by it.
    (tmp_path / "bench" / "harness.py").write_text("")
    assert harness_and_service() == [str(tmp_path / "bench" / "harness.py"),
                                     str(tmp_path / "service" / "__init__.py")]
