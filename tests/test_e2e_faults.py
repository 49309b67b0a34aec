"""The monitor end to end: real faults (signals to the browser tree, simulator outages,
flaky login checks, conflicts, a phone logout) against the server as the Procfile runs it.

Each test links a phone, waits until the login has reached the disk (Chromium writes
localStorage lazily, runtime.md: a kill within ~5 s of linking loses it), injects one
fault, and waits with deadlines for the recovery. A `StatusWatch` polls `/status` in the
background the whole time, so a test can tell which statuses were passed through, whether a
QR was ever offered, and how long each `/status` call took.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from harness import CLIENT_ID, ServerProcess, alive, browser_tree, linked_server, profile_of, wait_for

RECOVER_S = 90          # generous: two cores shared with other browser tests
STATUS_LATENCY_S = 2.0  # /status answers within ~1 s; loose for a noisy machine
# The faults that must never offer a QR or touch the login.
NOT_A_LOGIN_PROBLEM = (None, "browser_crashed", "page_unresponsive", "network", "conflict")


# -- helpers -------------------------------------------------------------------------------

class StatusWatch:
    """Polls `/status` from a thread; remembers every answer and how long it took."""

    def __init__(self, server: ServerProcess, interval: float = 0.2):
        self.server = server
        self.interval = interval
        self.seen: list[dict] = []            # status bodies, oldest first
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-watch", daemon=True)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        self.wait(lambda s: True, 30, "a first /status answer")
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                code, body = self.server.get("/api/whatsapp/status", timeout=10)
                error = None if code == 200 else f"HTTP {code}: {body!r}"
            except OSError as exc:
                body, error = None, repr(exc)
            took = time.monotonic() - started
            with self._changed:
                self.latencies.append(took)
                if error:
                    self.errors.append(error)
                else:
                    self.seen.append(body)
                self._changed.notify_all()
            self._stop.wait(self.interval)  # the polling interval; stop wakes it at once

    def mark(self) -> int:
        """An index into `seen`: `wait(..., after=mark)` ignores answers older than it."""
        with self._changed:
            return len(self.seen)

    def wait(self, predicate, timeout: float, message: str, after: int = 0) -> dict:
        """The first answer at index >= `after` satisfying `predicate`, waiting until `timeout`."""
        return self.seen[self.find(predicate, timeout, message, after)]

    def find(self, predicate, timeout: float, message: str, after: int = 0) -> int:
        """Like `wait`, but returns the answer's index in `seen`."""
        deadline = time.monotonic() + timeout
        checked = after
        with self._changed:
            while True:
                for index in range(checked, len(self.seen)):
                    if predicate(self.seen[index]):
                        return index
                checked = max(checked, len(self.seen))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.0f} s waiting for {message}; "
                        f"statuses: {self.transitions(after)}\n--- server log ---\n{self.server.log()}")
                self._changed.wait(remaining)

    def observe(self, seconds: float) -> list[dict]:
        """Every answer of the next `seconds` (a bounded observation, for "it stays so")."""
        end = time.monotonic() + seconds
        with self._changed:
            start = len(self.seen)
            while (remaining := end - time.monotonic()) > 0:
                self._changed.wait(remaining)
            return self.seen[start:]

    def until_ready_again(self, timeout: float = RECOVER_S, after: int = 0) -> dict:
        """The session left `ready` (after `after`) and came back to it."""
        left = self.find(lambda s: s["status"] != "ready", timeout, "the session to leave ready", after)
        return self.wait(lambda s: s["status"] == "ready", timeout, "ready again", left)

    def transitions(self, after: int = 0) -> list[tuple[str, str | None]]:
        """(status, reason) pairs as they changed."""
        out: list[tuple[str, str | None]] = []
        for body in list(self.seen[after:]):
            pair = (body["status"], body["reason"])
            if not out or out[-1] != pair:
                out.append(pair)
        return out

    def statuses(self, after: int = 0) -> list[str]:
        return [s["status"] for s in self.seen[after:]]


def profile_dir(server: ServerProcess) -> Path:
    return profile_of(server.data_dir)


def record(server: ServerProcess) -> dict:
    return json.loads((server.data_dir / f"session-{CLIENT_ID}.json").read_text())


def assert_login_kept(server: ServerProcess, sim, wid: str, qr_issued: int) -> None:
    """The login files are in place, the record and the phone still know the link, no QR."""
    default = profile_dir(server) / "Default"
    assert (default / "Local Storage").is_dir(), "Default/Local Storage is gone"
    assert (default / "IndexedDB").is_dir() and any((default / "IndexedDB").iterdir()), "IndexedDB is gone"
    assert record(server)["wid"] == wid
    status = server.status()
    assert status["session"]["hasSession"] is True, status
    assert status["record"]["expectsLogin"] is True, status
    phone = sim.phone_state()
    assert [d["wid"] for d in phone["devices"]] == [wid], phone
    assert phone["qr_issued"] == qr_issued, "the simulator issued a QR code: a page lost the login"


def assert_no_qr(watch: StatusWatch, after: int = 0) -> None:
    seen = watch.seen[after:]
    assert not any(s["status"] == "qr" or s["qrAvailable"] for s in seen), watch.transitions(after)
    assert all(s["reason"] in NOT_A_LOGIN_PROBLEM for s in seen), watch.transitions(after)


def assert_status_fast(watch: StatusWatch) -> None:
    assert not watch.errors, watch.errors[:5]
    slow = [round(t, 2) for t in watch.latencies if t >= STATUS_LATENCY_S]
    assert not slow, f"/status calls took {slow} s (of {len(watch.latencies)} calls)"


def page_renderers(tree: dict) -> list[int]:
    """The renderers that may hold the page: all but Chromium's own UI (`--top-chrome-webui`)."""
    found = []
    for pid in tree["renderers"]:
        try:
            if "--top-chrome-webui" not in psutil.Process(pid).cmdline():
                found.append(pid)
        except psutil.Error:
            continue
    return found


def signal_all(pids, signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def old_tree_gone(tree: dict, timeout: float = 30) -> None:
    wait_for(lambda: not alive(tree["all"]), timeout,
             message=f"the old browser tree {tree} to be gone")


def new_tree(server: ServerProcess, old: dict) -> dict:
    """The browser tree now running; it must be a new one."""
    tree = wait_for(lambda: (t := browser_tree(server))["main"] and t["chromedriver"] and t, 30,
                    message="a running browser tree")
    assert tree["main"] != old["main"] and tree["chromedriver"] != old["chromedriver"], (old, tree)
    return tree


# -- the browser tree dies ---------------------------------------------------------------------

def test_main_browser_killed(servers, sim):
    server, wid = linked_server(servers, sim)
    qr_issued = sim.phone_state()["qr_issued"]
    tree = browser_tree(server)
    assert tree["main"] and tree["chromedriver"], tree
    with StatusWatch(server) as watch:
        os.kill(tree["main"], signal.SIGKILL)
        watch.until_ready_again()
        assert ("reconnecting", "browser_crashed") in watch.transitions(), watch.transitions()
        assert_no_qr(watch)
    old_tree_gone(tree)
    new_tree(server, tree)
    assert_login_kept(server, sim, wid, qr_issued)


def test_chromedriver_killed(servers, sim):
    server, wid = linked_server(servers, sim)
    qr_issued = sim.phone_state()["qr_issued"]
    tree = browser_tree(server)
    with StatusWatch(server) as watch:
        os.kill(tree["chromedriver"], signal.SIGKILL)
        watch.until_ready_again()
        assert any(status == "reconnecting" and reason == "browser_crashed"
                   for status, reason in watch.transitions()), watch.transitions()
        assert_no_qr(watch)
    # Chromium outlives a killed chromedriver (runtime.md): the server must have removed it.
    old_tree_gone(tree)
    new_tree(server, tree)
    assert_login_kept(server, sim, wid, qr_issued)


def test_chromedriver_frozen(servers, sim):
    """SIGSTOP, never SIGCONT: the driver call times out and the server kills the tree itself."""
    server, wid = linked_server(servers, sim, env={"WHATSAPP_DRIVER_TIMEOUT_S": "4"})
    qr_issued = sim.phone_state()["qr_issued"]
    tree = browser_tree(server)
    frozen = psutil.Process(tree["chromedriver"])
    try:
        with StatusWatch(server) as watch:
            os.kill(tree["chromedriver"], signal.SIGSTOP)
            watch.until_ready_again()
            assert any(status == "reconnecting" and reason == "page_unresponsive"
                       for status, reason in watch.transitions()), watch.transitions()
            assert_no_qr(watch)
        assert_status_fast(watch)
        old_tree_gone(tree)
        new_tree(server, tree)
        assert_login_kept(server, sim, wid, qr_issued)
    finally:
        # Only a safety net: a stopped chromedriver has no --user-data-dir for the fixture to find.
        try:
            frozen.kill()  # psutil checks it is still the same process (pid reuse)
        except psutil.Error:
            pass


@pytest.mark.parametrize("signum, reason", [(signal.SIGKILL, "browser_crashed"),
                                             (signal.SIGSTOP, "page_unresponsive")],
                         ids=["renderer_killed", "renderer_frozen"])
def test_renderer_fault(servers, sim, signum, reason):
    server, wid = linked_server(servers, sim)
    qr_issued = sim.phone_state()["qr_issued"]
    tree = browser_tree(server)
    renderers = page_renderers(tree)
    assert renderers, tree
    with StatusWatch(server) as watch:
        signal_all(renderers, signum)
        watch.until_ready_again()
        assert any(status == "reconnecting" and why == reason
                   for status, why in watch.transitions()), watch.transitions()
        assert_no_qr(watch)
    assert_status_fast(watch)
    old_tree_gone(tree)  # stopped processes included: SIGKILL ends them without a SIGCONT
    assert_login_kept(server, sim, wid, qr_issued)


# -- WhatsApp unreachable ----------------------------------------------------------------------

def test_outage_then_ready_without_qr(servers, sim):
    # Enough attempts that a slow machine cannot use them up within the 10 s outage.
    server, wid = linked_server(servers, sim, env={"WHATSAPP_RECONNECT_MAX_ATTEMPTS": "30"})
    qr_issued = sim.phone_state()["qr_issued"]
    with StatusWatch(server) as watch:
        sim.outage(10)
        watch.wait(lambda s: s["reason"] == "network" and s["status"] != "ready", RECOVER_S,
                   "reason network")
        wait_for(lambda: not sim.phone_state()["outage"], 30, message="the outage to end")
        ended = watch.mark()
        watch.wait(lambda s: s["status"] == "ready", RECOVER_S, "ready after the outage", ended)
        assert_no_qr(watch)
    assert_login_kept(server, sim, wid, qr_issued)


@pytest.mark.parametrize("by", ["initialize", "itself"])
def test_outage_longer_than_all_attempts(servers, sim, by):
    """Attempts used up: `failed`, nothing running, the login kept; back by POST /initialize,
    or by itself once WhatsApp answers again (WHATSAPP_FAILED_RETRY_S)."""
    retry = {"initialize": "0", "itself": "2"}[by]
    server, wid = linked_server(servers, sim, env={"WHATSAPP_RECONNECT_MAX_ATTEMPTS": "2",
                                                   "WHATSAPP_RECONNECT_STEP_S": "0.5",
                                                   "WHATSAPP_RECONNECT_MAX_DELAY_S": "1",
                                                   "WHATSAPP_FAILED_RETRY_S": retry})
    qr_issued = sim.phone_state()["qr_issued"]
    tree = browser_tree(server)
    with StatusWatch(server) as watch:
        sim.outage(600)
        failed = watch.wait(lambda s: s["status"] == "failed", RECOVER_S, "failed")
        assert failed["reason"] == "network", failed
        assert failed["monitorActive"] is False, failed
        assert failed["reconnectAttempts"] == 2, failed
        assert failed["session"]["hasSession"] is True, failed
        assert_no_qr(watch)
        # Given up: no browser left running, the login files untouched.
        old_tree_gone(tree)
        wait_for(lambda: not browser_tree(server)["all"], 30, message="no browser while failed")
        assert_login_kept(server, sim, wid, qr_issued)
        if by == "itself":  # still down at the next check: it stays failed, no browser
            seen = watch.observe(3)
            assert seen and all(s["status"] == "failed" for s in seen), [s["status"] for s in seen]
            assert not browser_tree(server)["all"]

        sim.outage(0)
        again = watch.mark()
        if by == "initialize":
            code, body = server.post("/api/whatsapp/initialize")
            assert code in (200, 202), (code, body)
        ready = watch.wait(lambda s: s["status"] == "ready", RECOVER_S, f"ready by {by}", again)
        assert ready["reconnectAttempts"] == 0 and ready["monitorActive"] is True, ready
        assert_no_qr(watch)
    assert_login_kept(server, sim, wid, qr_issued)


# -- login checks, conflicts, logout -----------------------------------------------------------

def test_flaky_login_checks(servers, sim):
    """Three temporary authentication errors when the page reloads: ready, login kept."""
    server, wid = linked_server(servers, sim)
    qr_issued = sim.phone_state()["qr_issued"]
    tree = browser_tree(server)
    with StatusWatch(server) as watch:
        sim.flaky(3)
        os.kill(tree["main"], signal.SIGKILL)  # the relaunched page checks its login again
        watch.until_ready_again()
        assert sim.phone_state()["flaky"] == 0, "the page never met the flaky login checks"
        assert_no_qr(watch)
    assert_login_kept(server, sim, wid, qr_issued)


def taken_back(server: ServerProcess) -> int:
    """How often the server logged taking the session over (the whole log, not its tail)."""
    return server.log_path.read_text(errors="replace").count("taking the session back")


def test_conflict_taken_back_once_per_occurrence(servers, sim):
    server, wid = linked_server(servers, sim)
    qr_issued = sim.phone_state()["qr_issued"]
    before = taken_back(server)
    with StatusWatch(server) as watch:
        for occurrence in (1, 2):
            mark = watch.mark()
            sim.conflict()
            wait_for(lambda: taken_back(server) >= before + occurrence, RECOVER_S,
                     message=f"conflict {occurrence} taken back")
            watch.wait(lambda s: s["status"] == "ready" and s["reason"] == "conflict", RECOVER_S,
                       "ready with reason conflict", mark)
            # Several probe intervals (1 s each) later it was still taken back only once.
            later = watch.observe(4)
            assert taken_back(server) == before + occurrence, server.log()
            assert {s["status"] for s in later} == {"ready"}, watch.transitions(mark)
            assert set(watch.statuses(mark)) == {"ready"}, watch.transitions(mark)
        assert_no_qr(watch)
    assert_login_kept(server, sim, wid, qr_issued)


def test_phone_logout_offers_qr_without_retrying(servers, sim):
    server, wid = linked_server(servers, sim)
    backups = server.data_dir / "backups" / CLIENT_ID
    server.wait_status(lambda s: s["backups"]["count"] >= 1, RECOVER_S, "a backup of the login")
    assert [p for p in backups.iterdir() if not p.name.startswith(".")]
    with StatusWatch(server) as watch:
        sim.logout()
        out = watch.wait(lambda s: s["status"] == "qr", RECOVER_S, "the QR after the logout")
        assert out["reason"] == "logged_out", out
        assert out["session"]["hasSession"] is False, out
        assert out["reconnectAttempts"] == 0, out
        # No retry loop: for 5 s (five probe intervals) it stays on the QR, no attempts made.
        observed = watch.observe(5)
        assert {s["status"] for s in observed} == {"qr"}, [(s["status"], s["reason"]) for s in observed]
        assert all(s["reconnectAttempts"] == 0 and s["reason"] == "logged_out" for s in observed), \
            [(s["status"], s["reason"], s["reconnectAttempts"]) for s in observed]
        assert "reconnecting" not in watch.statuses()
    assert server.status()["backups"]["count"] == 0
    assert not [p.name for p in backups.iterdir() if not p.name.startswith(".")]
    assert record(server)["wid"] is None
    assert record(server)["loggedOutAt"]
    assert sim.phone_state()["devices"] == []
