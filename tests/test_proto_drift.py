"""The committed generated code in service/gen/ equals a fresh run of proto/generate.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GEN = REPO / "service" / "gen"


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([str(REPO / "proto" / "generate.sh"), str(out)], check=True, env=env)
    fresh, committed = _files(out), _files(GEN)
    assert sorted(fresh) == sorted(committed), "run `make proto`: generated file set differs"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run `make proto`: service/gen is stale for {stale}"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    for name in ("a", "b"):
        subprocess.run([str(REPO / "proto" / "generate.sh"), str(tmp_path / name)],
                       check=True, env=env)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_rpc_reference_and_client_api_match_proto(tmp_path: Path) -> None:
    """docs/api.md and service/client/generated.py are what proto/generate_reference.py makes."""
    docs, client = tmp_path / "api.md", tmp_path / "generated.py"
    subprocess.run([sys.executable, str(REPO / "proto" / "generate_reference.py"),
                    "--docs", str(docs), "--client", str(client)],
                   check=True, stdout=subprocess.DEVNULL)
    assert docs.read_text() == (REPO / "docs" / "api.md").read_text(), (
        "run `make proto`: docs/api.md is stale")
    assert client.read_text() == (REPO / "service" / "client" / "generated.py").read_text(), (
        "run `make proto`: service/client/generated.py is stale")
