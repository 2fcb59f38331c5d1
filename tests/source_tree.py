"""The repository's Python sources, for the tests that read them rather than run them.

The import graph, the one randomness source, the store conventions and the status enums are
checked by scanning syntax trees; this is the one list of files they scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def relative(path: Path) -> str:
    """``path`` relative to the repository, with forward slashes (``service/ocsp.py``)."""
    return path.relative_to(ROOT).as_posix()


def python_files(*directories: str, skip: Iterable[str] = ()) -> list[Path]:
    """Every ``.py`` file under ``directories``, sorted, except those under a ``skip`` entry.

    A ``skip`` entry is a file (``service/entropy.py``) or a directory (``service/gen``).
    """
    skipped = tuple(skip)
    return [path for directory in directories for path in sorted((ROOT / directory).rglob("*.py"))
            if not any(relative(path) == s or relative(path).startswith(f"{s}/") for s in skipped)]
