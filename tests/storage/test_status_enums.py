"""Statuses and kinds are compared as the enums of service/storage/schema.py, never as text.

The enums are ``str``-valued, so ``row.status == "ISSUED"`` works today, and silently stops
matching the day a value is renamed; ``CertificateStatus.ISSUED`` fails at import instead.
The migrations (frozen history) and the schema itself are not scanned.
"""

from __future__ import annotations

import ast
import enum
from pathlib import Path

from service.storage import schema
from tests.source_tree import python_files, relative

SKIPPED = ("service/migrations", "service/gen", "service/storage/schema.py")


def _enum_values() -> set[str]:
    return {member.value for obj in vars(schema).values()
            if isinstance(obj, type) and issubclass(obj, enum.Enum)
            and obj.__module__ == schema.__name__
            for member in obj if isinstance(member.value, str)}


def _literal_comparisons(path: Path, values: set[str]) -> list[str]:
    """``line: value`` for each comparison in ``path`` with one of ``values`` as a literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        for side in (node.left, *node.comparators):
            elements = (side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set)
                        else [side])
            found += [f"{node.lineno}: {e.value}" for e in elements
                      if isinstance(e, ast.Constant) and e.value in values]
    return found


def test_statuses_and_kinds_are_compared_as_enums() -> None:
    values = _enum_values()
    assert {"ISSUED", "RESERVED", "PENDING", "SERVER", "ISSUE"} <= values
    offences = {relative(p): found for p in python_files("service", skip=SKIPPED)
                if (found := _literal_comparisons(p, values))}
    assert offences == {}


def test_the_scan_sees_each_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text('a = s == "ISSUED"\nb = s in ("PENDING", "x")\nc = "SERVER" != k\n'
                      'd = s == "OTHER"\ne = f("ISSUED")\n')
    assert _literal_comparisons(source, _enum_values()) == [
        "1: ISSUED", "2: PENDING", "3: SERVER"]
