"""The processes of a running server, for fault-injection and cleanup checks.

Chromium's processes carry `--user-data-dir=<data dir>/session-<client id>`: the main one has
no `--type=`, renderers have `--type=renderer`; chromedriver is a child of the gunicorn worker.
Zombies count as gone everywhere (they already exited and wait for their parent).
"""
from __future__ import annotations

from pathlib import Path

import psutil

from .server import ServerProcess, browsers_on
from .session import CLIENT_ID


def worker_of(server: ServerProcess) -> psutil.Process | None:
    """The gunicorn worker: the master's child that is a Python process (not a browser)."""
    try:
        children = psutil.Process(server.proc.pid).children()
    except psutil.Error:
        return None
    for child in children:
        try:
            if "chromedriver" not in child.name():
                return child
        except psutil.Error:
            continue
    return None


def browser_tree(server: ServerProcess, client_id: str = CLIENT_ID) -> dict:
    """The running browser of `server`: {"chromedriver": pid or None, "main": pid or None,
    "renderers": [pids], "all": [pids of every process on the profile, chromedriver included]}.

    chromedriver is a child of the gunicorn worker; Chromium's processes carry
    `--user-data-dir=<data_dir>/session-<client id>`: the main one has no `--type=`,
    renderers have `--type=renderer`.
    """
    tree = {"chromedriver": None, "main": None, "renderers": [], "all": []}
    worker = worker_of(server)
    if worker is not None:
        try:
            for child in worker.children():
                if "chromedriver" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                    tree["chromedriver"] = child.pid
        except psutil.Error:
            pass
    profile_arg = f"--user-data-dir={(Path(server.data_dir) / f'session-{client_id}').resolve()}"
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if profile_arg not in cmdline or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        tree["all"].append(proc.pid)
        types = [arg for arg in cmdline if arg.startswith("--type=")]
        if not types:
            tree["main"] = proc.pid
        elif "--type=renderer" in types:
            tree["renderers"].append(proc.pid)
    if tree["chromedriver"] is not None:
        tree["all"].append(tree["chromedriver"])
    return tree


def alive(pids) -> list[int]:
    """The pids of `pids` that still run (zombies count as gone)."""
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.Error:
            continue
    return left


def is_gone(proc: psutil.Process) -> bool:
    """True when `proc` exited (a zombie counts as gone; psutil guards against pid reuse)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def main_browsers(data_dir: Path) -> list[psutil.Process]:
    """The main Chromium processes (no `--type=`) on profiles under data_dir: one per browser."""
    found = []
    for proc in browsers_on(data_dir):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if not is_gone(proc) and not any(arg.startswith("--type=") for arg in cmdline):
            found.append(proc)
    return found


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid` (empty when it is gone)."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if not is_gone(p)]
    except psutil.Error:
        return []


def kill_all(procs) -> None:
    """SIGKILL each process still running (for trees a test orphans on purpose)."""
    for proc in procs:
        if not is_gone(proc):
            try:
                proc.kill()
            except psutil.Error:
                pass
    psutil.wait_procs(list(procs), timeout=5)


def umask_command(command: list[str], umask: str = "022") -> list[str]:
    """`command` run with a given umask (exec keeps the pid, so signals reach it directly)."""
    return ["/bin/sh", "-c", f'umask {umask} && exec "$@"', "sh", *command]
