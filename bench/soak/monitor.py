"""Watching the server from outside while the soak runs, every `interval` seconds.

Each sample asks `/status` (bounded, 2 s) and scans the process table for what runs on the
data folder. Kept: every status change with its time (`changes`), whether a QR, a phone
logout or a missing login was ever seen while the server answered, `/status`'s latency
(when it answered), the most main Chromium processes on the profile at once, and every
chromedriver and Chromium pid seen (for the orphan count after the stop). The thread only
reads; `stop()` ends it within one interval.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from .server import Server, tree_of

STATUS_TIMEOUT_S = 2.0


class Monitor(threading.Thread):
    def __init__(self, server: Callable[[], Server | None], data_dir: Path, client_id: str,
                 interval: float = 0.5):
        super().__init__(name="soak-monitor", daemon=True)
        self.server, self.data_dir, self.client_id, self.interval = server, data_dir, client_id, interval
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.changes: list[tuple[float, str, str | None]] = []   # (monotonic, status, reason)
        self.latencies: list[float] = []
        self.unanswered = 0           # /status asked of a running server without an answer in time
        self.max_mains = 0
        self.max_mains_at: float | None = None
        self.max_mains_detail: list[str] = []   # what they were, when more than one
        self.pids: dict[int, float] = {}   # every browser-tree process seen: pid -> start time
        self.qr_seen: list[float] = []
        self.logged_out_seen: list[float] = []
        self.no_login_seen: list[float] = []
        self.last: dict | None = None

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        tree = tree_of(self.data_dir, self.client_id)
        now = time.monotonic()
        with self.lock:
            self.pids.update(tree["started"])
            if len(tree["mains"]) > self.max_mains:
                self.max_mains, self.max_mains_at = len(tree["mains"]), now
                if len(tree["mains"]) > 1:
                    self.max_mains_detail = describe(tree["mains"])
        status, reason = self._status(now)
        with self.lock:
            if not self.changes or self.changes[-1][1:] != (status, reason):
                self.changes.append((now, status, reason))

    def _status(self, now: float) -> tuple[str, str | None]:
        server = self.server()
        if server is None or not server.up():
            return "down", None
        started = time.monotonic()
        try:
            code, body = server.get("/api/whatsapp/status", timeout=STATUS_TIMEOUT_S)
        except (OSError, ValueError):
            if not server.up():
                return "down", None
            # A server that was just started may not listen yet; one that listens must answer.
            self.unanswered += 1
            return "unanswered", None
        latency = time.monotonic() - started
        if code != 200 or not isinstance(body, dict):
            return f"http-{code}", None
        with self.lock:
            self.latencies.append(latency)
            self.last = body
            if body["status"] == "qr":
                self.qr_seen.append(now)
            if body.get("reason") == "logged_out":
                self.logged_out_seen.append(now)
            if not body["session"]["hasSession"] and body["status"] not in ("starting",):
                self.no_login_seen.append(now)
        return body["status"], body.get("reason")

    def changes_since(self, since: float) -> list[tuple[float, str, str | None]]:
        with self.lock:
            earlier = [c for c in self.changes if c[0] < since][-1:]
            return earlier + [c for c in self.changes if c[0] >= since]

    def noticed(self, since: float) -> float | None:
        """Seconds from `since` to the first status other than ready after it (None: never)."""
        for at, status, _ in self.changes_since(since):
            if at >= since and status != "ready":
                return at - since
        return None

    def left_ready(self, since: float) -> int:
        """How many times the session left `ready` after `since` (and came back or not)."""
        statuses = [status for _, status, _ in self.changes_since(since)]
        return sum(1 for a, b in itertools.pairwise(statuses) if a == "ready" and b != "ready")

    def stop(self) -> None:
        self.stop_event.set()
        self.join(self.interval + STATUS_TIMEOUT_S + 5)


def describe(pids: list[int]) -> list[str]:
    """pid, parent, state, start time and command of each (for a report)."""
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found.append(f"{pid} ppid {proc.ppid()} {proc.status()} started {proc.create_time():.1f}: "
                         f"{' '.join(proc.cmdline())[:160]}")
        except psutil.Error as exc:
            found.append(f"{pid}: {exc!r}")
    return found
