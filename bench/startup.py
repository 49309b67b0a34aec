"""Start-up as whole processes: restart to `ready` with a saved login, a first start to a QR,
`POST /initialize` to a QR in a running server, and SIGTERM to every process gone.

The floor is bench/floor_script.py as its own process (interpreter, `import selenium`,
Chromium with the product's flags, the page), timed from its `Popen` to the moment it prints
that it saw `#pane-side` (or `div[data-ref]` with a value). The server is started as the
Procfile does, timed from its `Popen` to the log line of the status change (stamped in ms by
the server itself: no polling tick in the figure); a `/status` asked as soon as the line is
seen confirms it and gives the lag a client would see. Runs alternate server and floor, and
which goes first, so that others' load falls on both alike.
"""
from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import psutil

from .common import POLL_S, Context, Row, ServerProcess, copy_profile, paired, profile_of, try_status
from .floors import FloorProcess
from .procs import server_tree
from .timeline import STATUS_LINE, driver_marks, log_time, read_from, server_statuses, size_of, start_phases

BACKUP_LINE = re.compile(r"backup (\S+): (\d+) bytes in ([\d.]+) s")
STOP_AFTER_S = 1.5


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def sigterm_to_gone(server: ServerProcess, timeout: float = 30.0) -> dict:
    """SIGTERM to the gunicorn master as the platform sends it; seconds until the master has
    exited and until every process of the tree (browser included) is gone."""
    assert server.proc is not None
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


class TimedServer:
    """A server whose log is read from `offset` on, timed against the wall clock."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.offset = size_of(server.log_path)
        self.t0 = 0.0

    def popen(self) -> None:
        self.t0 = time.time()
        self.server.start(wait=False)

    def wait_line(self, status: str, t0: float, timeout: float = 60.0) -> float:
        """Seconds from `t0` (wall) to the server's own stamp of `status x -> <status>`; then
        `/status` is asked at once and `status_seen` notes when it answered so."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in read_from(self.server.log_path, self.offset).splitlines():
                match = STATUS_LINE.match(line)
                if match and match[3] == status:
                    at = log_time(match[1]) - t0
                    answered = try_status(self.server)
                    self.status_seen = time.time() - t0 if answered and answered["status"] == status else None
                    return at
            if self.server.proc is not None and self.server.proc.poll() is not None:
                break
            time.sleep(POLL_S)  # reading a growing log file, bounded by `timeout`
        raise RuntimeError(f"server {self.server.url}: no 'status -> {status}' line within {timeout:.0f} s\n"
                           f"{self.server.log()[-3000:]}")

    def marks(self, t0: float) -> dict[str, float | None]:
        """Status lines, chromedriver's log and the process table, as seconds from `t0`
        (the process marks from the master's start, which is `Popen`). Call while the
        run's browser runs: chromedriver's log holds the latest launch only."""
        text = read_from(self.server.log_path, self.offset)
        found: dict[str, float | None] = {**server_statuses(text, t0),
                                          **driver_marks(read_from(self.server.data_dir / "chromedriver.log", 0), t0)}
        found["status_seen"] = getattr(self, "status_seen", None)
        try:
            assert self.server.proc is not None
            master = psutil.Process(self.server.proc.pid)
            base = master.create_time() - (self.t0 - t0)
            for worker in master.children():
                found["worker_forked"] = worker.create_time() - base
                for child in worker.children():
                    if "chromedriver" in child.name():
                        found["driver_spawned"] = child.create_time() - base
        except psutil.Error:
            pass
        return found


def floor_run(ctx: Context, profile: Path, wait: str, attribute: str | None = None) -> tuple[float, dict]:
    floor = FloorProcess(ctx, profile, wait=wait, attribute=attribute)
    try:
        t0 = floor.start()
        seen = floor.event("seen")["t"] - t0
        return seen, floor.marks()
    finally:
        floor.close()


def restart_to_ready(ctx: Context, linked: Path) -> dict:
    """Popen -> ready with the saved login (the server on the linked folder, the floor on a
    copy of its profile), then the SIGTERM figure and the backup log lines."""
    server_s: list[float] = []
    floor_s: list[float] = []
    timelines: list[dict] = []
    floor_marks: list[dict] = []
    stops: list[dict] = []
    backups_logged: list[tuple[int, float]] = []

    def server_run() -> None:
        timed = TimedServer(ctx.server(linked))
        try:
            timed.popen()
            server_s.append(timed.wait_line("ready", timed.t0))
            timelines.append(timed.marks(timed.t0))
            # Stop as in production: ready for longer than WHATSAPP_BACKUP_DELAY_S (1 s here),
            # so the clean stop takes its backup of the quiet profile, as a platform's daily
            # restart does.
            time.sleep(STOP_AFTER_S)  # a dwell in `ready`, not a wait for anything
            stops.append(sigterm_to_gone(timed.server))
            text = read_from(timed.server.log_path, timed.offset)
            backups_logged.extend((int(m[2]), float(m[3])) for m in BACKUP_LINE.finditer(text))
        finally:
            timed.server.stop()

    def floor_one() -> None:
        seen, marks = floor_run(ctx, copy_profile(profile_of(linked), ctx.path("floor-profile")), "#pane-side")
        floor_s.append(seen)
        floor_marks.append(marks)

    for run in range(ctx.runs):
        for step in ((server_run, floor_one) if run % 2 == 0 else (floor_one, server_run)):
            step()
        ctx.log(f"  restart run {run + 1}: server {server_s[-1]:.2f} s, floor {floor_s[-1]:.2f} s, "
                f"SIGTERM {stops[-1]['all'] or float('nan'):.2f} s")
    launch_server = [_after_spawn(t, "ready") for t in timelines]
    launch_floor = [_after_spawn(f, "seen") for f in floor_marks]
    rows = [
        Row("restart -> ready, whole processes (Popen -> ready)", "s", server_s,
            "raw Selenium script as a process, Popen -> #pane-side", floor_s, target=1.1,
            note=f"server: its own log line's stamp; floor: the time it printed; {paired(server_s, floor_s)}"),
        Row("  restart -> /status answers ready (a client's view)", "s", [t.get("status_seen") for t in timelines],
            "the same floor", floor_s, note="the first /status asked once the log line is seen"),
        Row("  part after chromedriver's spawn (in-process)", "s", launch_server,
            "the floor script's part after chromedriver's spawn", launch_floor,
            note="without interpreter, imports and gunicorn's boot"),
        Row("SIGTERM to gone (ready session)", "s", [s["all"] for s in stops], "", [], target=5.0,
            absolute=True, note="master exit and whole browser tree gone"),
    ]
    return {"rows": rows, "timelines": timelines, "floor_marks": floor_marks, "stops": stops,
            "backups_logged": backups_logged, "phases": start_phases(timelines, floor_marks, "ready", "chat list")}


def _after_spawn(marks: dict, end: str) -> float | None:
    if marks.get(end) is None or marks.get("driver_spawned") is None:
        return None
    return marks[end] - marks["driver_spawned"]


def initialize_to_qr(ctx: Context) -> dict:
    """A first start (empty profile) to a QR shown, whole processes; and `POST /initialize`
    in a running server (`WHATSAPP_AUTO_INIT=0`) to a QR, beside the floor's part after
    chromedriver's spawn (what a running process pays)."""
    first_s: list[float] = []
    post_s: list[float] = []
    floor_s: list[float] = []
    timelines: list[dict] = []
    floor_marks: list[dict] = []

    def first_start() -> None:
        timed = TimedServer(ctx.server(ctx.path("empty")))
        try:
            timed.popen()
            first_s.append(timed.wait_line("qr", timed.t0))
            timelines.append(timed.marks(timed.t0))
        finally:
            timed.server.stop()

    def post_initialize() -> None:
        timed = TimedServer(ctx.server(ctx.path("empty"), {"WHATSAPP_AUTO_INIT": "0"}))
        try:
            timed.server.start()  # until /status answers (`stopped`): not timed
            t0 = time.time()
            code, _ = timed.server.post("/api/whatsapp/initialize")
            if code != 200:
                raise RuntimeError(f"POST /initialize answered {code}")
            post_s.append(timed.wait_line("qr", t0))
        finally:
            timed.server.stop()

    def floor_one() -> None:
        profile = ctx.path("floor-fresh")
        profile.mkdir()
        seen, marks = floor_run(ctx, profile, "div[data-ref]", "data-ref")
        floor_s.append(seen)
        floor_marks.append(marks)

    for run in range(ctx.runs):
        steps = (first_start, floor_one, post_initialize) if run % 2 == 0 else (floor_one, first_start, post_initialize)
        for step in steps:
            step()
        ctx.log(f"  initialize run {run + 1}: first start {first_s[-1]:.2f} s, floor {floor_s[-1]:.2f} s, "
                f"POST /initialize {post_s[-1]:.2f} s")
    rows = [
        Row("first start -> QR shown, whole processes (empty profile)", "s", first_s,
            "raw Selenium script as a process, Popen -> div[data-ref] with a value", floor_s, target=1.1,
            note=paired(first_s, floor_s)),
        Row("  first start -> /status answers qr (a client's view)", "s", [t.get("status_seen") for t in timelines],
            "the same floor", floor_s, note="the first /status asked once the log line is seen"),
        Row("  POST /initialize -> QR (running server)", "s", post_s,
            "the floor script's part after chromedriver's spawn",
            [_after_spawn(f, "seen") for f in floor_marks], note="the server already runs: no interpreter or imports"),
    ]
    return {"rows": rows, "timelines": timelines, "floor_marks": floor_marks,
            "phases": start_phases(timelines, floor_marks, "qr", "QR")}
