"""Worker log lines written in blocks (service/log_output.py): late by at most the interval,
at once for warnings, complete and in order at close."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.log_output import BufferedStreamHandler

REPO = Path(__file__).resolve().parent.parent


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"tests.log_output.{name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _file_stream(path: Path) -> io.TextIOWrapper:
    return io.TextIOWrapper(open(path, "wb", buffering=65536), encoding="utf-8",  # noqa: SIM115
                            line_buffering=False)


def _wait_for(path: Path, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.01)
    return text in path.read_text()


def test_info_is_buffered_then_written_by_the_flusher(tmp_path: Path) -> None:
    path = tmp_path / "log"
    # A long interval: the line must still be in the buffer right after the call.
    handler = BufferedStreamHandler(_file_stream(path), interval=30.0)
    try:
        _logger("info", handler).info("first line")
        assert path.read_text() == ""
    finally:
        handler.close()
    assert path.read_text() == "first line\n"  # close writes out the buffer

    path2 = tmp_path / "log2"
    handler = BufferedStreamHandler(_file_stream(path2), interval=0.05)
    try:
        _logger("flusher", handler).info("second line")
        assert _wait_for(path2, "second line\n", 10.0)  # the flusher thread wrote it
    finally:
        handler.close()


def test_a_warning_is_written_at_once_after_what_came_before(tmp_path: Path) -> None:
    path = tmp_path / "log"
    handler = BufferedStreamHandler(_file_stream(path), interval=30.0)
    try:
        logger = _logger("warning", handler)
        logger.info("context")
        logger.warning("trouble")
        assert path.read_text() == "context\ntrouble\n"
    finally:
        handler.close()


def test_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval"):
        BufferedStreamHandler(_file_stream(tmp_path / "log"), interval=0)


def test_a_process_that_exits_normally_writes_every_line(tmp_path: Path) -> None:
    """log_to_stderr's buffer reaches fd 2 when the interpreter exits (logging.shutdown)."""
    code = (
        "import logging\n"
        "from service.log_output import log_to_stderr\n"
        "log_to_stderr('%(levelname)s %(message)s', interval=30.0)\n"
        "for i in range(1000):\n"
        "    logging.getLogger('x').info('line %d', i)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: S603
                         check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         timeout=60)
    lines = out.stderr.splitlines()
    assert lines == [f"INFO line {i}" for i in range(1000)]
