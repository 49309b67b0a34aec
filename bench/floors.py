"""The parent side of the whole-process floors: `FloorProcess` runs bench/floor_script.py.

The product's own `chrome_options` is computed here (its arguments, binary and experimental
options are handed over as JSON), so the floor launches Chromium exactly as the product
does without importing the product. The script runs in a session of its own with
chromedriver and Chromium in its process group: `close()` ends all of it with one killpg.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil

from .common import ROOT, Context, kill_group, product_config

SCRIPT = Path(__file__).resolve().parent / "floor_script.py"


def page_selectors() -> dict[str, str]:
    """The selectors the floor's page steps use: each locator's fallbacks as one union, so
    whichever variant the page renders matches (whatsapp.web.locators, the product's list)."""
    from whatsapp.web import locators as L

    def union(selectors: tuple[str, ...]) -> str:
        return ", ".join(selectors)
    return {"compose": union(L.COMPOSE_BOX), "send": union(L.SEND_BUTTON),
            "rows": "#main [data-id]", "out": union(L.BUBBLE_OUT),
            "tick": union(tuple(f'span[data-icon="{icon}"]' for icon, state in L.ACK_ICONS if state != "pending")),
            "badge": union(L.UNREAD_BADGE), "chatRows": union(L.CHAT_ROWS), "title": union(L.CHAT_TITLE)}


class FloorProcess:
    """One run of the floor script. `start()` returns the wall time of `Popen`; `event(name)`
    waits for the script's next event of that name; `command(op, ...)` sends one command and
    returns its answer."""

    def __init__(self, ctx: Context, profile: Path, *, wait: str, attribute: str | None = None,
                 serve: bool = False, log_level: str = "INFO"):
        from whatsapp.web.browser import chrome_options, find_chrome, find_chromedriver

        config = product_config(ctx.workdir / "floor-config", {"WHATSAPP_WEB_URL": ctx.sim.url})
        options = chrome_options(config, find_chrome(config), profile)  # no launch: not timed
        self.ctx = ctx
        self.driver_log = profile.parent / f"{profile.name}-chromedriver.log"
        self.stderr_path = profile.parent / f"{profile.name}-floor.log"
        self.settings = {
            "driver": find_chromedriver(config), "binary": options.binary_location,
            "arguments": list(options.arguments), "experimental": options.experimental_options,
            "driver_log": str(self.driver_log), "log_level": log_level, "url": ctx.sim.url,
            "wait": wait, "attribute": attribute, "serve": serve, "selectors": page_selectors()}
        self.proc: subprocess.Popen | None = None
        self.events: list[dict] = []
        self._lines: queue.Queue[dict | None] = queue.Queue()
        self._stderr: IO[bytes] | None = None

    def start(self) -> float:
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 (the script's whole life; closed in close())
        t0 = time.time()
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), json.dumps(self.settings)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=True, text=True, bufsize=1)
        self.ctx.track_group(self.proc.pid)
        threading.Thread(target=self._read, daemon=True, name="floor-stdout").start()
        self.popen_t = t0
        return t0

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._lines.put(json.loads(line))
            except ValueError:
                continue  # not ours (a library printing): the events are JSON lines
        self._lines.put(None)

    def event(self, name: str, timeout: float = 60.0) -> dict:
        """The next event called `name` (earlier events are kept in `events`)."""
        end = time.monotonic() + timeout
        while True:
            try:
                found = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                found = None
            if found is None:
                raise RuntimeError(f"floor script: no '{name}' within {timeout:.0f} s (exit code "
                                   f"{self.proc and self.proc.poll()}); stderr:\n{self.stderr()[-3000:]}")
            self.events.append(found)
            if found["event"] == name:
                return found

    def command(self, op: str, answer: str, timeout: float = 60.0, **fields: Any) -> dict:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self.event(answer, timeout)

    def marks(self) -> dict[str, float]:
        """Seconds from Popen to each event (the first of each name) and to the chromedriver
        process's start (its create time relative to this process's: same clock, 10 ms)."""
        from .timeline import driver_marks, read_from

        found: dict[str, float] = driver_marks(read_from(self.driver_log, 0), self.popen_t)
        for ev in self.events:
            found.setdefault(ev["event"], ev["t"] - self.popen_t)
        pid = next((ev["driver_pid"] for ev in self.events if "driver_pid" in ev), None)
        if pid is not None and self.proc is not None:
            try:
                started = psutil.Process(self.proc.pid).create_time()
                found["driver_spawned"] = psutil.Process(pid).create_time() - started
            except psutil.Error:
                pass
        return found

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self, timeout: float = 10.0) -> None:
        """Ask the script to quit (a clean `quit()`), then end its whole group."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        kill_group(self.proc.pid)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, 9)
        if self._stderr is not None:
            self._stderr.close()
