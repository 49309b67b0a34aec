"""Start-up: restart to `ready` with a saved login, `initialize` to a QR, SIGTERM to gone.

Server runs and raw-Selenium floor runs alternate, so that load from other work on the
machine falls on both alike. Every run also keeps its timeline (bench/timeline.py), so
that a missed target can be explained phase by phase.
"""
from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import psutil

from .common import (
    Context,
    Row,
    copy_profile,
    is_qr,
    is_ready,
    metric,
    new_backup,
    product_config,
    profile_of,
    watch_status,
)
from .procs import server_tree
from .raw import LOADING_SHOWN, PANE_SHOWN, QR_SHOWN, RawBrowser
from .timeline import driver_marks, initialize_phases, read_from, restart_phases, server_statuses, size_of

BACKUP_LINE = re.compile(r"backup (\S+): (\d+) bytes in ([\d.]+) s")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def sigterm_to_gone(server, timeout: float = 30.0) -> dict:
    """SIGTERM to the gunicorn master as the platform sends it; seconds until the master has
    exited and until every process of the tree (browser included) is gone."""
    tree = [p for p in server_tree(server) if p.pid != server.proc.pid]
    t0 = time.monotonic()
    server.signal(signal.SIGTERM)
    master = None
    end = t0 + timeout
    while time.monotonic() < end:
        if master is None and server.proc.poll() is not None:
            master = time.monotonic() - t0
        if master is not None and not any(_alive(p) for p in tree):
            return {"master": master, "all": time.monotonic() - t0, "code": server.proc.returncode}
        time.sleep(0.01)  # polling a process table, bounded by `timeout`
    return {"master": master, "all": None, "code": server.proc.poll()}


class _Logs:
    """The parts of a server's log and chromedriver log written during one run."""

    def __init__(self, server):
        self.server = server
        self.driver_log = server.data_dir / "chromedriver.log"
        self.offset = size_of(server.log_path)
        self.wall_t0 = time.time()

    def timeline(self, seen: dict) -> dict:
        """Call while the run's browser is the latest: chromedriver (given --log-path by
        Selenium) truncates its log at every launch, so the file holds this launch only."""
        text = self.text()
        marks = {**server_statuses(text, self.wall_t0),
                 **driver_marks(read_from(self.driver_log, 0), self.wall_t0),
                 **{"observed_" + k: round(v, 3) for k, v in seen.items()}}
        marks["launch_and_get"] = metric(self.server, "whatsapp_browser_start_seconds_sum")
        return marks

    def text(self) -> str:
        return read_from(self.server.log_path, self.offset)


def restart_to_ready(ctx: Context, linked: Path) -> dict:
    """Measurement 1 (and the samples of 4)."""
    config = product_config({"WHATSAPP_WEB_URL": ctx.sim.url})
    server_s, floor_s, stops, timelines, floor_marks, backups_logged = [], [], [], [], [], []
    for run in range(ctx.runs):
        # -- the server, as the Procfile starts it, on the linked folder
        server = ctx.server(linked)
        try:
            logs = _Logs(server)
            t0 = time.monotonic()
            server.start(wait=False)
            elapsed, status, seen = watch_status(server, is_ready, t0)
            server_s.append(elapsed)
            timelines.append(logs.timeline(seen))
            # Stop as in production: after the first backup of this run (1 s after ready).
            watch_status(server, new_backup(status["backups"].get("latest")), time.monotonic(), timeout=30)
            stops.append(sigterm_to_gone(server))
            backups_logged += [(int(m[2]), float(m[3])) for m in BACKUP_LINE.finditer(logs.text())]
        finally:
            server.stop()
        # -- the floor: raw Selenium, same flags, a copy of the same (now quiet) profile
        copy = copy_profile(profile_of(linked), ctx.path("floor-profile"))
        raw = RawBrowser(ctx, config, copy)
        try:
            t0 = time.monotonic()
            raw.launch(ctx.sim.url, t0)
            raw.wait_for(LOADING_SHOWN, t0, "first screen")
            floor_s.append(raw.wait_for(PANE_SHOWN, t0, "chats"))
        finally:
            raw.close()
        floor_marks.append(raw.marks())
        ctx.log(f"  restart run {run + 1}: server {server_s[-1]:.2f} s, floor {floor_s[-1]:.2f} s, "
                f"SIGTERM {stops[-1]['all'] or float('nan'):.2f} s")
    in_worker = [t["ready"] - t["starting"] for t in timelines if "ready" in t and "starting" in t]
    rows = [
        Row("restart to ready (saved login)", "s", server_s, "raw Selenium to #pane-side", floor_s, target=1.5),
        Row("  same, from worker up (log: starting -> ready)", "s", in_worker, "raw Selenium to #pane-side",
            floor_s, note="without the new process's boot and imports, which the in-process floor never pays"),
        Row("SIGTERM to gone (ready session)", "s", [s["all"] for s in stops], "", [], target=5.0,
            absolute=True, note="master exit and whole browser tree gone"),
    ]
    return {"rows": rows, "timelines": timelines, "floor_marks": floor_marks, "stops": stops,
            "backups_logged": backups_logged, "phases": restart_phases(timelines, floor_marks)}


def initialize_to_qr(ctx: Context) -> dict:
    """Measurement 2: POST /initialize (WHATSAPP_AUTO_INIT=0, empty profile) to a QR shown."""
    config = product_config({"WHATSAPP_WEB_URL": ctx.sim.url})
    server_s, floor_s, timelines, floor_marks = [], [], [], []
    for run in range(ctx.runs):
        server = ctx.server(ctx.path("empty"), {"WHATSAPP_AUTO_INIT": "0"})
        try:
            server.start()  # until /status answers (`stopped`): not timed
            logs = _Logs(server)
            t0 = time.monotonic()
            code, _ = server.post("/api/whatsapp/initialize")
            if code != 200:
                raise RuntimeError(f"POST /initialize answered {code}")
            elapsed, _, seen = watch_status(server, is_qr, t0)
            server_s.append(elapsed)
            timelines.append(logs.timeline(seen))
        finally:
            server.stop()
        profile = ctx.path("floor-fresh")
        profile.mkdir()
        raw = RawBrowser(ctx, config, profile)
        try:
            t0 = time.monotonic()
            raw.launch(ctx.sim.url, t0)
            floor_s.append(raw.wait_for(QR_SHOWN, t0, "qr"))
        finally:
            raw.close()
        floor_marks.append(raw.marks())
        ctx.log(f"  initialize run {run + 1}: server {server_s[-1]:.2f} s, floor {floor_s[-1]:.2f} s")
    row = Row("initialize to QR shown", "s", server_s, "raw Selenium to div[data-ref]", floor_s, target=1.5)
    return {"rows": [row], "timelines": timelines, "floor_marks": floor_marks,
            "phases": initialize_phases(timelines, floor_marks)}
