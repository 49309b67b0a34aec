"""Shared fixtures: a simulator per test, servers started as the Procfile does, cleanup checks."""
from __future__ import annotations

import io
import re

import pytest
from harness import CLIENT_ID, ServerProcess, browsers_on, login_on_disk, wait_for

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


def decode_qr_png(png: bytes) -> str:
    """Read a QR code from PNG bytes with zbar, as a phone's camera would."""
    from PIL import Image
    from pyzbar.pyzbar import decode

    found = decode(Image.open(io.BytesIO(png)))
    assert found, "no QR code found in the image"
    return found[0].data.decode()


def link_phone(server: ServerProcess, sim) -> dict:
    """Wait for a QR, read it from qr.png like a phone would, scan it; returns the ready status."""
    server.wait_status(lambda s: s["status"] == "qr" and s["qrAvailable"], timeout=60, message="a QR")
    status, _, png = server.request("GET", "/api/whatsapp/qr.png")
    assert status == 200
    sim.scan(decode_qr_png(png))
    return server.wait_status(lambda s: s["status"] == "ready", timeout=60, message="ready")


def linked_server(servers, sim, env: dict | None = None, data_dir=None) -> tuple[ServerProcess, str]:
    """A server whose session is ready with a fresh link that has reached the disk (so that
    a fault injected now meets a saved login); returns it and the link's wid."""
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, **(env or {})}, data_dir=data_dir)
    link_phone(server, sim)
    # The record is written just after the status turns ready: wait for both.
    ready = server.wait_status(lambda s: s["status"] == "ready" and s["record"]["wid"], 30,
                               "the link in the session record")
    wid = ready["record"]["wid"]
    client_id = server.env.get("WHATSAPP_CLIENT_ID", CLIENT_ID)
    wait_for(lambda: login_on_disk(server.data_dir, wid, client_id), 30, message="the new login written to the profile")
    return server, wid


def status_changes(server: ServerProcess) -> list[str]:
    """The statuses the server moved to, from its log lines "status a -> b"."""
    return re.findall(r"status \w+ -> (\w+)", server.log())


def ready_without_qr(server: ServerProcess, timeout: float = 90) -> dict:
    """Wait for `ready`; no `qr` may be seen on /status nor logged as a status on the way."""
    seen = []

    def check(status):
        if not seen or seen[-1] != status["status"]:
            seen.append(status["status"])
        return status["status"] == "ready"
    ready = server.wait_status(check, timeout=timeout, message="ready (restored, no QR)")
    assert "qr" not in seen, seen
    assert "qr" not in status_changes(server), server.log()
    return ready
