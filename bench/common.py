"""What every benchmark shares: the run context, servers, polling, stats.

Every server and browser started here is registered with the `Context`, whose `close()`
(called from a `finally` in `__main__`) stops servers through `ServerProcess.stop` and
SIGKILLs browser groups (raw floors) and whatever `browsers_on` still finds under the work folder.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))   # the harness the end-to-end tests use
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import TEST_ENV, ServerProcess, browsers_on, free_port  # noqa: E402,F401 (re-exported)

SYNC_SECONDS = 0.3      # the simulator's "Loading your chats": the same for floors and servers
POLL_S = 0.02           # how often servers and floors are polled: the same resolution for both
CLIENT_ID = "energenie-whatsapp"
# Every benchmarked server is locked, as in production: one known key, sent by every client here.
API_KEY = "bench-api-key-not-a-secret"
KEY_HEADER = {"X-Api-Key": API_KEY}


# -- statistics ---------------------------------------------------------------------------
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def maximum(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def percentile(sorted_values, q: float):
    """Linear-interpolated percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def paired(samples: list, floor: list) -> str:
    """The ratio of each run to its own floor run (taken next to it), and their median: on a
    machine whose load swings between runs, steadier than the ratio of the two medians."""
    ratios = [s / f for s, f in zip(samples, floor, strict=False) if s is not None and f]
    if not ratios:
        return ""
    return f"run by run {'/'.join(f'{r:.2f}' for r in ratios)}x, median {median(ratios):.2f}x"


@dataclasses.dataclass
class Row:
    """One line of the table. `target` is a maximum ratio (or, with `absolute`, a maximum value)."""
    name: str
    unit: str
    samples: list
    floor_name: str = "-"
    floor_samples: list = dataclasses.field(default_factory=list)
    target: float | None = None
    absolute: bool = False          # the target bounds the value itself, not the ratio
    note: str = ""
    judged: str = ""                # a verdict of the figure's own (a slope: flat / levels off / grows)
    compare: bool = True            # False: the floor is shown beside, but a ratio would mean nothing (slopes)

    @property
    def median(self):
        return median(self.samples)

    @property
    def max(self):
        return maximum(self.samples)

    @property
    def floor(self):
        return median(self.floor_samples)

    @property
    def ratio(self):
        if self.median is None or not self.floor or not self.compare:
            return None
        return self.median / self.floor

    @property
    def verdict(self) -> str:
        if self.median is None:
            return "FAILED"
        if self.judged:
            return self.judged
        if self.target is None:
            return "info"
        value = self.median if self.absolute else self.ratio
        if value is None:
            return "n/a"
        return "ok" if value <= self.target else "MISSED"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"< {self.target:g} {self.unit}" if self.absolute else f"<= {self.target:g}x"

    def to_json(self) -> dict:
        return {"name": self.name, "unit": self.unit, "median": self.median, "max": self.max,
                "floor_name": self.floor_name, "floor": self.floor, "ratio": self.ratio,
                "target": self.target_text, "verdict": self.verdict, "samples": self.samples,
                "floor_samples": self.floor_samples, "note": self.note}


# -- the run's context --------------------------------------------------------------------
class Context:
    """The simulator, the work folder, and everything started, so that all of it is stopped."""

    def __init__(self, runs: int, quick: bool, log=print):
        from simulator.testing import start

        self.runs, self.quick, self.log = runs, quick, log
        self.workdir = Path(tempfile.mkdtemp(prefix="whatsapp-bench-"))
        self.sim = start(sync_seconds=SYNC_SECONDS, qr_ttl=20, qr_first_ttl=60,
                         phone="15550001111", pushname="Bench Phone", platform="android")
        self.details: dict = {}
        self._servers: list[ServerProcess] = []
        self._groups: list[int] = []
        self._counter = 0

    def path(self, name: str) -> Path:
        self._counter += 1
        return self.workdir / f"{self._counter:03d}-{name}"

    def server(self, data_dir: Path, env: dict | None = None, **kwargs) -> ServerProcess:
        """A server as the Procfile starts it, against the simulator; not started yet."""
        # "info": the timelines read every WebDriver command from chromedriver's log.
        env = {"WHATSAPP_WEB_URL": self.sim.url, "WHATSAPP_DRIVER_LOG": "info", "WHATSAPP_API_KEY": API_KEY,
               **(env or {})}
        server = ServerProcess(data_dir, env, **kwargs)
        self._servers.append(server)
        return server

    def track_group(self, pgid: int) -> None:
        self._groups.append(pgid)

    def close(self) -> None:
        for server in reversed(self._servers):
            try:
                if server.proc is not None:
                    server.stop(timeout=20)
            except Exception as exc:  # keep cleaning up the others
                self.log(f"stopping server {server.url}: {exc!r}")
        for pgid in self._groups:
            kill_group(pgid)
        for proc in browsers_on(self.workdir):
            try:
                proc.kill()
            except psutil.Error:
                pass
        self.sim.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- talking to a server -------------------------------------------------------------------
def try_status(server: ServerProcess, timeout: float = 2.0) -> dict | None:
    request = urllib.request.Request(server.url + "/api/whatsapp/status", headers=KEY_HEADER)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def watch_status(server: ServerProcess, until, t0: float, timeout: float = 60.0) -> tuple[float, dict, dict]:
    """Poll /status every POLL_S until `until(status)`; returns (seconds since t0, status,
    first time each status name was seen). Raises RuntimeError with the server log's tail."""
    seen: dict[str, float] = {}
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        status = try_status(server)
        now = time.monotonic() - t0
        if status is not None:
            last = status
            seen.setdefault("http", now)
            seen.setdefault(status["status"], now)
            if until(status):
                return now, status, seen
        if server.proc is not None and server.proc.poll() is not None:
            break
        time.sleep(POLL_S)  # the polling interval of a bounded wait
    raise RuntimeError(f"server {server.url} never reached the expected status; last {last and last['status']}, "
                       f"seen {sorted(seen, key=lambda name: seen[name])}\n{server.log()[-3000:]}")


def is_ready(status: dict) -> bool:
    return status["status"] == "ready"


def new_backup(since: str | None):
    """A status predicate: a backup other than `since` is the latest (one was taken this run)."""
    return lambda status: status["status"] == "ready" and status["backups"].get("latest") not in (None, since)


def is_qr(status: dict) -> bool:
    return status["status"] == "qr" and bool(status.get("qrAvailable"))


def metric(server: ServerProcess, name: str) -> float | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + "/metrics", headers=KEY_HEADER),
                                    timeout=5) as resp:
            text = resp.read().decode()
    except (OSError, ValueError):
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def link(ctx: Context, data_dir: Path) -> None:
    """Start a server on an empty folder, link it like a phone would, stop it cleanly."""
    from harness import link_phone

    server = ctx.server(data_dir)
    try:
        server.start()
        link_phone(server, ctx.sim)
        # The first backup comes WHATSAPP_BACKUP_DELAY_S (1 s) after ready; then stop as usual.
        server.wait_status(lambda s: s["backups"].get("latest"), timeout=30, message="the first backup")
    finally:
        server.stop()


def copy_profile(src: Path, dst: Path) -> Path:
    """A copy of a Chromium profile without its lock files (the browser must be closed)."""
    shutil.copytree(src, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("SingletonLock", "SingletonSocket", "SingletonCookie"))
    return dst


def profile_of(data_dir: Path) -> Path:
    return data_dir / f"session-{CLIENT_ID}"


def product_config(session_dir: Path | None = None, env_overrides: dict | None = None):
    """The product's Config as a benchmarked server sees it (TEST_ENV plus overrides), with
    its data folder at `session_dir` (default: one in the temporary folder): the product keeps
    files there (Chromium's version beside the binary's identity), which must never land in
    ./.wwebjs_auth, the default."""
    from whatsapp.config import Config

    folder = session_dir or Path(tempfile.gettempdir()) / "whatsapp-bench-config"
    env = {**os.environ, **TEST_ENV, "WHATSAPP_SESSION_DIR": str(folder), **(env_overrides or {})}
    return Config.from_env(env)
