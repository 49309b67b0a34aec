"""Where the seconds of a start go, read from what both sides already write.

Every mark is seconds since the `Popen` of the run's process, on one clock:

- the server's log stamps each status change in milliseconds (`status a -> b`);
- chromedriver's log (the server's `<data dir>/chromedriver.log`, the floor's own) stamps
  the commands it receives and answers in epoch seconds;
- process start times (gunicorn's worker, chromedriver) come from the process table,
  relative to the run's first process (same clock, 10 ms resolution);
- the floor script prints the wall time of each of its steps (bench/floor_script.py).

So a server start and a floor start split into the same phases.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from .common import median

STATUS_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ whatsapp\.session[\w.]*: status (\w+) -> (\w+)")
_DRIVER_LINE = re.compile(r"^\[(\d+\.\d+)\]\[\w+\]: (?:\[\w+\] )?(COMMAND|RESPONSE) (\w+)")
_DRIVER_UP = re.compile(r"^\[(\d+\.\d+)\]\[\w+\]: ChromeDriver was started successfully")
_MARKS = {("COMMAND", "InitSession"): "session_sent", ("RESPONSE", "InitSession"): "session_done",
          ("COMMAND", "Navigate"): "get_sent", ("RESPONSE", "Navigate"): "get_done"}


def read_from(path: Path, offset: int) -> str:
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_time(stamp: str) -> float:
    """A log line's `2026-12-01 11:52:43,918` (the server's local time) as epoch seconds."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def server_statuses(log_text: str, wall_t0: float) -> dict[str, float]:
    """Seconds from `wall_t0` (time.time()) to the first time each status was entered."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        match = STATUS_LINE.match(line)
        if match:
            found.setdefault(match[3], round(log_time(match[1]) - wall_t0, 3))
    return found


def driver_marks(log_text: str, wall_t0: float) -> dict[str, float]:
    """Seconds from `wall_t0` to chromedriver up, session asked/created, get() sent/answered."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        up = _DRIVER_UP.match(line)
        if up:
            found.setdefault("driver_up", round(float(up[1]) - wall_t0, 3))
            continue
        match = _DRIVER_LINE.match(line)
        if match and (match[2], match[3]) in _MARKS:
            found.setdefault(_MARKS[match[2], match[3]], round(float(match[1]) - wall_t0, 3))
    return found


# (phase, start mark, end mark, counted in the sum). Marks both sides have, except where
# one side has none (None there, printed "-").
_LAUNCH = (
    ("chromedriver spawned -> listening", "driver_spawned", "driver_up", True),
    ("listening -> new session asked", "driver_up", "session_sent", True),
    ("Chromium start (InitSession)", "session_sent", "session_done", True),
    ("session -> get() sent", "session_done", "get_sent", True),
    ("page load (get)", "get_sent", "get_done", True),
)


def start_phases(server: list[dict], floor: list[dict], end: str, end_label: str) -> dict:
    """{phase: (server median, floor median, counted)} for whole-process starts. `end` is the
    server's status mark that ends the run ("ready" or "qr"); the floor's is "seen"."""
    def phases(m: dict, side: str) -> dict:
        done = end if side == "server" else "seen"
        found = {
            "Popen -> chromedriver spawned (interpreter, imports, boot)": (_span(m, "popen", "driver_spawned"), True),
            "  of which Popen -> gunicorn worker forked (master: interpreter, config)":
                (_span(m, "popen", "worker_forked"), False),
            "  of which Popen -> the script's first line (interpreter)": (_span(m, "popen", "started"), False),
            "  of which first line -> selenium imported": (_span(m, "started", "imported"), False),
            **{name: (_span(m, a, b), counted) for name, a, b, counted in _LAUNCH},
            f"get() returned -> {end_label} read": (_span(m, "get_done", done), True),
        }
        if side == "server":
            found["  then status line -> /status answered it"] = (_span(m, end, "status_seen"), False)
        return found
    return _side_by_side([phases({**m, "popen": 0.0}, "server") for m in server],
                         [phases({**m, "popen": 0.0}, "floor") for m in floor])


def _span(marks: dict, start: str, end: str) -> float | None:
    if marks.get(start) is None or marks.get(end) is None:
        return None
    return marks[end] - marks[start]


def _side_by_side(server: list[dict], floor: list[dict]) -> dict:
    keys = list(dict.fromkeys(k for p in server + floor for k in p))

    def med(runs: list[dict], key: str) -> float | None:
        return median([p[key][0] for p in runs if key in p])
    counted = {k: next(p[k][1] for p in server + floor if k in p) for k in keys}
    return {k: (med(server, k), med(floor, k), counted[k]) for k in keys}
