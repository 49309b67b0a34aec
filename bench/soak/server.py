"""The server under soak: started as the Procfile does (tests/harness.ServerProcess), stopped
by a signal the way a platform or a crash stops it, and the processes it owns.

`Server.halt(signum)` ends the running server: SIGTERM to the gunicorn master (a platform's
stop; the session closes the browser and exits on its own, bounded by `TERM_LIMIT_S`, the
30 s after which Heroku would SIGKILL), or SIGKILL to gunicorn's process group (master and
worker: a crash; the browser tree, in its own group, is left for the next start to sweep).
`on_data_dir(data_dir)` lists every live process whose command line names the data folder:
Chromium (`--user-data-dir`) and chromedriver (`--log-path`), the server's browser tree.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from ..common import ServerProcess  # tests/harness.py, put on sys.path by bench.common

TERM_LIMIT_S = 30.0


class Server(ServerProcess):
    """A `ServerProcess` on a fixed port (a restart answers where the last one did)."""

    proc: subprocess.Popen[bytes] | None

    def halt(self, signum: int) -> float:
        """Stop it with `signum`; returns the seconds until the master exited. Raises
        TimeoutError when SIGTERM did not end it within TERM_LIMIT_S (it is then SIGKILLed)."""
        assert self.proc is not None
        started = time.monotonic()
        try:
            if signum == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(signum)
            self.proc.wait(TERM_LIMIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise TimeoutError(f"the server did not exit within {TERM_LIMIT_S:.0f} s of SIGTERM") from None
        except ProcessLookupError:
            pass
        finally:
            self._log.close()
        seconds = time.monotonic() - started
        self.proc = None
        return seconds

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def worker(self) -> psutil.Process | None:
        """The gunicorn worker (the master's child that is not chromedriver)."""
        if not self.up():
            return None
        assert self.proc is not None
        try:
            for child in psutil.Process(self.proc.pid).children():
                if "chromedriver" not in child.name():
                    return child
        except psutil.Error:
            return None
        return None


def on_data_dir(data_dir: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line names `data_dir`."""
    marker = str(Path(data_dir).resolve())
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "create_time"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def tree_of(data_dir: Path, client_id: str) -> dict:
    """{"chromedriver", "main": pid or None, "renderers": [pids], "mains": [pids], "started":
    {pid: start time} of all} of the processes on `data_dir` (one pass over the process table).

    A main process is one with the profile's `--user-data-dir` and no `--type=` whose parent
    is not one too: Chromium forks its children from the main process, and between the fork
    and the exec a child still shows the main process's command line."""
    profile_arg = f"--user-data-dir={(Path(data_dir) / f'session-{client_id}').resolve()}"
    tree: dict = {"chromedriver": None, "main": None, "renderers": [], "mains": [], "started": {}}
    candidates: list[psutil.Process] = []
    for proc in on_data_dir(data_dir):
        try:
            cmdline = proc.cmdline()
            name = proc.name()
        except psutil.Error:
            continue
        tree["started"][proc.pid] = proc.info["create_time"]
        if "chromedriver" in name:
            tree["chromedriver"] = proc.pid
        elif profile_arg in cmdline:
            types = [arg for arg in cmdline if arg.startswith("--type=")]
            if not types:
                candidates.append(proc)
            elif "--type=renderer" in types:
                tree["renderers"].append(proc.pid)
    pids = {proc.pid for proc in candidates}
    for proc in candidates:
        try:
            if proc.ppid() not in pids:
                tree["mains"].append(proc.pid)
                tree["main"] = proc.pid
        except psutil.Error:
            continue
    return tree


def alive(seen: dict[int, float]) -> list[psutil.Process]:
    """Those of `seen` (pid -> start time) still running: the same process, not a reused pid."""
    found = []
    for pid, started in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_gone(data_dir: Path, timeout: float) -> list[psutil.Process]:
    """Processes still on the data folder after `timeout` (a browser tree takes a moment)."""
    deadline = time.monotonic() + timeout
    while (left := on_data_dir(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling interval of a bounded wait
    return left


def command_of(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:120]
    except psutil.Error:
        return "?"
