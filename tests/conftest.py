"""Shared fixtures: a simulator per test, servers started as the Procfile does, cleanup checks."""
from __future__ import annotations

import pytest

# Re-exported for test files of other branches that still import them from here; new code
# imports them from `harness`.
from harness import (  # noqa: F401
    ServerProcess,
    browsers_on,
    decode_qr_png,
    link_phone,
    linked_server,
    ready_without_qr,
    status_changes,
)

# Fixtures that start real processes (a browser, a server, PostgreSQL): tests using them are
# end to end, and so is every test in a module named here.
_PROCESS_FIXTURES = {"sim", "servers", "postgres", "db", "keyed_server", "local_server", "own_local_server"}
_E2E_MODULES = ("test_e2e_", "test_simulator")


def pytest_collection_modifyitems(items):
    """Mark end-to-end tests `e2e`, so that `make test-unit` (-m "not e2e") runs the rest."""
    for item in items:
        name = item.module.__name__ if item.module else ""
        if name.startswith(_E2E_MODULES) or _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) \
                or getattr(item.module, "E2E", False):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sim():
    from simulator.testing import start

    with start(qr_ttl=20, qr_first_ttl=60, sync_seconds=0.3, pushname="Energenie Phone",
               phone="15550001111", platform="android") as running:
        yield running


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the run (tests/pg.py); a test may stop and restart it."""
    import pg

    with pg.running_server() as server:
        yield server


@pytest.fixture
def servers(tmp_path):
    """`servers(env=..., data_dir=...)` starts a server; all are stopped after the test and
    no browser may be left on their data folders."""
    started: list[ServerProcess] = []

    def start(env: dict | None = None, data_dir=None, wait: bool = True) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", env)
        started.append(server)
        return server.start(wait=wait)

    yield start
    for server in reversed(started):
        server.stop()
    for server in started:
        left = browsers_on(server.data_dir)
        assert not left, f"browsers left running: {[p.pid for p in left]}"
