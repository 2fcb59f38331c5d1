"""Which services can serve now: each one needs its tokens and the database to answer.

A :class:`HealthMonitor` thread in every worker process probes each dependency once a
second (a token with ``C_GetTokenInfo``, which also brings a faulted token back; the
database with ``SELECT 1``) and reports a service NOT_SERVING while one of the dependencies
it needs does not answer, and SERVING again once they all do. Load balancers and clients
that watch the gRPC health service then stop sending work to a worker that cannot do it.
The transport is not imported here: the monitor calls ``report(service, serving)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Engine, text

__all__ = ["HealthMonitor", "database_probe"]

_log = logging.getLogger("hsmca.health")

#: A dependency check: True while the dependency answers. Never raises.
Probe = Callable[[], bool]


def database_probe(engine: Engine) -> Probe:
    """A probe that runs ``SELECT 1`` on a pooled connection (pre-pinged, so a dead one is
    replaced)."""

    def probe() -> bool:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:  # any failure to answer is "down"; the reason goes to the log
            _log.debug("database probe failed: %r", e)
            return False
        return True

    return probe


class HealthMonitor:
    """Probes dependencies every ``interval`` seconds and reports each service's state."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        needs: Mapping[str, Sequence[str]],
        report: Callable[[str, bool], None],
        *,
        interval: float = 1.0,
    ) -> None:
        unknown = {d for deps in needs.values() for d in deps} - set(probes)
        if unknown:
            raise ValueError(f"services need dependencies without a probe: {sorted(unknown)}")
        self._probes = dict(probes)
        self._needs = {service: tuple(deps) for service, deps in needs.items()}
        self._report = report
        self._interval = interval
        self._serving: dict[str, bool] = {service: True for service in self._needs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hsmca-health", daemon=True)

    def check(self) -> dict[str, bool]:
        """Probe every dependency once, report the services whose state changed; the states."""
        up = {name: probe() for name, probe in self._probes.items()}
        for name, ok in up.items():
            if not ok:
                _log.warning("dependency %s does not answer", name)
        for service, deps in self._needs.items():
            serving = all(up[d] for d in deps)
            if serving != self._serving[service]:
                _log.warning("health of %r: %s", service or "(server)",
                             "SERVING" if serving else "NOT_SERVING")
                self._serving[service] = serving
                self._report(service, serving)
        return dict(self._serving)

    def start(self) -> None:
        """Start the probing thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop probing (before the server reports its own shutdown)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval + 30)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:
                _log.exception("health check round failed")
