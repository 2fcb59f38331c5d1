"""Where a worker process's log lines go: stderr, written in blocks rather than per line.

Why: a worker logs one line per gRPC call (service/rpc/interceptor.py). Written and flushed
one at a time, each line is a ``write`` system call, and Python releases the GIL around it:
in a worker with many request threads that hands the GIL to another thread and back. On
certificate issuance (2 workers, 16 calls in flight) leaving the line out altogether saved
~7% of the workers' CPU per certificate and about one context switch per call; buffering
keeps the line and saves most of that (docs/benchmarks.md).

So INFO and DEBUG lines are buffered and written at least every ``interval`` seconds by a
flusher thread; a WARNING or worse is written at once, with whatever is buffered before it,
so errors and their context appear without delay and in order. What a process that dies
without unwinding (SIGKILL, ``os._exit``) loses is at most its last ``interval`` seconds of
INFO lines; the audit log (service/audit), not this log, is the durable record of what the
service did.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from typing import TextIO

__all__ = ["FLUSH_INTERVAL_SECONDS", "BufferedStreamHandler", "log_to_stderr"]

#: Longest an INFO line waits in the buffer.
FLUSH_INTERVAL_SECONDS = 0.2
#: The buffer; a full buffer is written at once, whatever the interval.
_BUFFER_BYTES = 64 * 1024


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes WARNING+ at once and the rest every ``interval`` s."""

    def __init__(self, stream: TextIO, *, interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        super().__init__(stream)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, args=(interval,),
                                         daemon=True, name="log-flush")
        self._flusher.start()

    def flush(self) -> None:
        """Deferred: StreamHandler.emit calls this after every record (see flush_now)."""

    def flush_now(self) -> None:
        """Write out what is buffered."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if not self.stream.closed:
                self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        """Buffer the line; a WARNING or worse is written at once."""
        super().emit(record)
        if record.levelno >= logging.WARNING:
            self.flush_now()

    def close(self) -> None:
        """Stop the flusher and write out what is buffered."""
        self._stop.set()
        self.flush_now()
        super().close()

    def _flush_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush_now()
            except (OSError, ValueError):
                pass  # stderr gone (closed pipe): logging reports emit errors itself


def log_to_stderr(fmt: str, level: int = logging.INFO, *,
                  interval: float = FLUSH_INTERVAL_SECONDS) -> BufferedStreamHandler:
    """Send the root logger's records to stderr through a :class:`BufferedStreamHandler`."""
    # File descriptor 2 through a buffer of our own: sys.stderr is line-buffered, which
    # would write every line at once. closefd=False: stderr stays open for everyone else.
    stream = io.TextIOWrapper(os.fdopen(2, "wb", buffering=_BUFFER_BYTES, closefd=False),
                              encoding=sys.stderr.encoding or "utf-8",
                              errors="backslashreplace", line_buffering=False)
    handler = BufferedStreamHandler(stream, interval=interval)
    handler.setFormatter(logging.Formatter(fmt))
    _skip_unused_record_fields(fmt)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# What logging gathers for every record unless told not to: the module attribute that turns
# each off (and its "off" value), and the format fields that need it.
_RECORD_FLAGS: dict[str, tuple[object, tuple[str, ...]]] = {
    # The caller's file, line and function: a walk up the calling thread's stack.
    "_srcfile": (None, ("%(pathname)", "%(filename)", "%(module)", "%(lineno)",
                        "%(funcName)")),
    "logThreads": (False, ("%(thread)", "%(threadName)")),
    "logProcesses": (False, ("%(process)",)),
    "logMultiprocessing": (False, ("%(processName)",)),
}


def _skip_unused_record_fields(fmt: str) -> None:
    """Stop logging from gathering, for every record, what ``fmt`` does not print.

    These are the switches of the logging HOWTO's "Optimization" section. A worker logs a
    line per call, from deep in gRPC's stack; finding the caller's source line and the
    thread's and process's names took ~6 of the ~35 us the interceptor spends on a call
    (docs/benchmarks.md). They are process-wide: this is for a process whose log lines all
    go through ``fmt`` (a worker's).
    """
    for flag, (off, fields) in _RECORD_FLAGS.items():
        if not any(field in fmt for field in fields):
            setattr(logging, flag, off)
