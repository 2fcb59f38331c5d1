"""Outside service/storage/, no code opens a transaction: writes go through the Store.

service/storage/store.py: reads in ``store.read()``, writes in ``store.write()`` (under the
write gate) or ``store.run_many()`` (group commit). A transaction opened on the engine
elsewhere would write around the gate, as KMS once did with ``engine.begin()``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.source_tree import python_files, relative

#: Calls that open, end or commit a transaction.
TRANSACTION_CALLS = {"begin", "begin_nested", "commit", "rollback"}
#: Connections taken from an engine outside the Store, each read-only, with its reason.
READ_ONLY_CONNECTIONS = {
    "service/health.py": "the readiness probe's SELECT 1",
    "service/metrics.py": "the scrape-time gauges' counts",
    "service/audit/cli.py": "hsmca audit verify and list, run from a shell",
}
#: Where transactions are the business (the Store itself, and the migrations).
OWNERS = ("service/storage", "service/migrations", "service/gen")


def _calls(path: Path) -> set[str]:
    """The transaction calls ``path`` makes, and "connect" if it connects to an engine."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr in TRANSACTION_CALLS:
            found.add(node.func.attr)
        elif node.func.attr == "connect" and "engine" in ast.unparse(node.func.value).lower():
            found.add("connect")  # a database connection (not, say, a gRPC client's)
    return found


def _modules() -> list[Path]:
    return python_files("service", skip=OWNERS)


def test_no_transaction_is_opened_outside_the_store() -> None:
    offences = {relative(p): sorted(_calls(p) & TRANSACTION_CALLS)
                for p in _modules()}
    assert {path: calls for path, calls in offences.items() if calls} == {}


def test_connections_outside_the_store_are_the_listed_read_only_ones() -> None:
    connecting = {relative(p) for p in _modules() if "connect" in _calls(p)}
    assert connecting == set(READ_ONLY_CONNECTIONS)


def test_the_scan_sees_a_transaction_opened_on_an_engine(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f(engine, client):\n    with engine.begin() as conn:\n"
                      "        conn.execute('x')\n    c = self._engine.connect()\n"
                      "    c.commit()\n    client.connect()\n")
    assert _calls(source) == {"begin", "connect", "commit"}
    source.write_text("def f(client):\n    client.connect()\n")
    assert _calls(source) == set()
