"""Shared fixtures: a real SoftHSM token pair, initialised once per test session.

SoftHSM reads SOFTHSM2_CONF when the module is initialised, which happens once per
process, so the variable is set here at import time, before any test loads the module.
Tests that touch keys use these tokens; nothing mocks PKCS#11.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Property tests (tests/hostile, the gRPC fuzz tests): a few seconds in `make test`, long runs
# with `make fuzz` (HSMCA_HYPOTHESIS_PROFILE=fuzz). No deadline: the machine is shared.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("HSMCA_FUZZ_EXAMPLES", "5000")),
                          deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HSMCA_HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
SOFTHSM_MODULE = os.environ.get("HSMCA_TEST_MODULE", "/usr/lib/softhsm/libsofthsm2.so")

_STATE = Path(tempfile.mkdtemp(prefix="hsmca-test-softhsm-"))
subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(_STATE)], check=True,
               stdout=subprocess.DEVNULL)
os.environ["SOFTHSM2_CONF"] = str(_STATE / "softhsm2.conf")


@pytest.fixture(scope="session")
def softhsm_state() -> Path:
    """Directory holding softhsm2.conf, tokens/ and the user/SO PIN files."""
    return _STATE


@pytest.fixture(scope="session")
def user_pin(softhsm_state: Path) -> str:
    """The user PIN of both test tokens."""
    return (softhsm_state / "user.pin").read_text().strip()


@pytest.fixture(scope="session")
def hsm_token(user_pin: str) -> Iterator[object]:
    """The 'hsm' role token (CA keys, ProtectionLevel=HSM)."""
    from hsm.config import TokenConfig, TokenRole
    from hsm.token import Token

    token = Token(TokenConfig(TokenRole.HSM, SOFTHSM_MODULE, "hsmca-hsm", user_pin))
    yield token


@pytest.fixture(scope="session")
def software_token(user_pin: str) -> Iterator[object]:
    """The 'software' role token (ProtectionLevel=SOFTWARE)."""
    from hsm.config import TokenConfig, TokenRole
    from hsm.token import Token

    token = Token(TokenConfig(TokenRole.SOFTWARE, SOFTHSM_MODULE, "hsmca-software", user_pin))
    yield token


# --- the second token implementation: opencryptoki's software token -----------------------

sys.path.insert(0, str(REPO / "opencryptoki"))
import slotd  # noqa: E402  (opencryptoki/slotd.py: shared pkcsslotd + token set-up)


@pytest.fixture(scope="session")
def ock() -> Iterator[slotd.OckToken]:
    """opencryptoki's software token, held for the session (see opencryptoki/slotd.py).

    Skipped with the reason when the daemon cannot be run here (not root, not installed);
    as root (CI) a failure to provide it is an error, never a skip.
    """
    holder = slotd.Holder()
    try:
        token = holder.acquire()
    except slotd.Unavailable as e:
        if os.geteuid() == 0:
            raise
        pytest.skip(f"opencryptoki software token unavailable: {e}")
    try:
        yield token
    finally:
        holder.release()


@pytest.fixture(scope="session")
def ock_token(ock: slotd.OckToken) -> Iterator[object]:
    """A Token (hsm/token.py) on opencryptoki's software token, 'hsm' role."""
    from hsm.config import TokenConfig, TokenRole
    from hsm.token import Token

    token = Token(TokenConfig(TokenRole.HSM, ock.module, ock.label, ock.user_pin))
    yield token
    token.close()


#: The token implementations the token-layer tests run on.
TOKEN_KINDS = ("softhsm", "opencryptoki")


@pytest.fixture(scope="session", params=TOKEN_KINDS)
def any_token(request: pytest.FixtureRequest) -> object:
    """The 'hsm' role token on each implementation in turn: SoftHSM, then opencryptoki."""
    if request.param == "softhsm":
        return request.getfixturevalue("hsm_token")
    return request.getfixturevalue("ock_token")

# --- databases: every storage-backed suite runs on SQLite and on PostgreSQL ---------------

@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A private PostgreSQL cluster for this session (started on first use, then stopped)."""
    from pg_support import PostgresCluster, server_bin_dir

    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.fail("no PostgreSQL server under /usr/lib/postgresql (`make test` installs "
                    "Debian's postgresql); HSMCA_TEST_BACKENDS=sqlite runs without it")
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def new_database_url(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], str]:
    """``new_database_url(backend, label)``: the URL of a new, empty database."""

    def make(backend: str, label: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp(label) / 'hsmca.db'}"
        if backend == "postgresql":
            cluster: Any = request.getfixturevalue("postgres")
            return str(cluster.create_database(label.replace("-", "_")))
        raise ValueError(f"unknown test database backend {backend!r}")

    return make


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): the test checks SQLite itself; not run on PostgreSQL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The PostgreSQL run of a test marked sqlite_only is skipped, with the marker's reason.
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None:
            continue
        if "postgresql" in callspec.params.values():
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


@pytest.fixture
def private_postgres() -> Iterator[Any]:
    """A PostgreSQL cluster of one test only: stopping or restarting it disturbs no other."""
    from pg_support import PostgresCluster, server_bin_dir

    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.fail("no PostgreSQL server under /usr/lib/postgresql (`make test` installs "
                    "Debian's postgresql)")
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
