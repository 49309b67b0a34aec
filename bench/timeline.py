"""Where the seconds of a start go, read from the logs both sides already write.

The server's log stamps each status change (milliseconds), and chromedriver's log (the
server's `<data dir>/chromedriver.log`, the floor's own) stamps every WebDriver command it
receives and answers, in epoch seconds. Both are turned into seconds since the start of a
run, so a server start and a raw-Selenium start split into the same phases.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from .common import median

_STATUS_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ whatsapp\.session: status (\w+) -> (\w+)")
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


def server_statuses(log_text: str, wall_t0: float) -> dict:
    """Seconds from `wall_t0` (time.time()) to the first time each status was entered."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        match = _STATUS_LINE.match(line)
        if match:
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.setdefault(match[3], round(at - wall_t0, 3))
    return found


def driver_marks(log_text: str, wall_t0: float) -> dict:
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


_DRIVER_PHASES = (
    ("chromedriver up -> new session asked", "driver_up", "session_sent"),
    ("Chromium start (InitSession)", "session_sent", "session_done"),
    ("session -> get() sent", "session_done", "get_sent"),
    ("page load (get)", "get_sent", "get_done"),
)


def restart_phases(server: list[dict], floor: list[dict]) -> dict:
    """{phase: (server median, floor median)} for restarts; each dict holds one run's marks."""
    def common(t, screen_key, end_key):
        phases = {name: _span(t, a, b) for name, a, b in _DRIVER_PHASES}
        phases[f"get() returned -> {screen_key} screen read"] = _span(t, "get_done", screen_key)
        phases[f"{screen_key} screen -> chat list read"] = _span(t, screen_key, end_key)
        return phases

    def server_phase(t):
        return {"process boot and imports (to status starting)": t.get("starting"),
                "pre-launch (starting -> chromedriver up)": _span(t, "starting", "driver_up"),
                **common(t, "syncing", "ready"),
                "ready -> seen by the client": _span(t, "ready", "observed_ready")}

    def floor_phase(f):
        return {"process boot and imports (to status starting)": 0.0,
                "pre-launch (starting -> chromedriver up)": f.get("driver_up"),
                **common({**f, "syncing": f.get("first screen"), "ready": f.get("chats")}, "syncing", "ready"),
                "ready -> seen by the client": 0.0}
    return _side_by_side([server_phase(t) for t in server], [floor_phase(f) for f in floor])


def initialize_phases(server: list[dict], floor: list[dict]) -> dict:
    def phases(t, start, qr, seen):
        return {"POST -> status starting": start,
                "pre-launch (starting -> chromedriver up)": _span(t, "starting", "driver_up"),
                **{name: _span(t, a, b) for name, a, b in _DRIVER_PHASES},
                "get() returned -> QR read": None if qr is None else _span({**t, "qr": qr}, "get_done", "qr"),
                "qr -> seen by the client": seen}

    return _side_by_side(
        [phases(t, t.get("starting"), t.get("qr"), _span(t, "qr", "observed_qr")) for t in server],
        [phases({**f, "starting": 0.0}, 0.0, f.get("qr"), 0.0) for f in floor])


def _span(marks: dict, start: str, end: str):
    if marks.get(start) is None or marks.get(end) is None:
        return None
    return marks[end] - marks[start]


def _side_by_side(server: list[dict], floor: list[dict]) -> dict:
    keys = list(dict.fromkeys(k for p in server + floor for k in p))
    return {k: (median([p.get(k) for p in server]), median([p.get(k) for p in floor])) for k in keys}
