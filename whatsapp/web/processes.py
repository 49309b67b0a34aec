"""The browser's processes: one group to kill, orphans of a killed predecessor, stale locks.

Chromium and chromedriver run in a process group of their own (chromedriver leads it and
every browser process joins it; runtime.md), so `kill_group` removes the whole tree. A
server killed with SIGKILL leaves its tree running under PID 1: `sweep_orphans` finds it by
the profile's `--user-data-dir` and ends it, and `clear_stale_singleton` removes the
`SingletonLock` such a tree (or another host) left behind.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

# psutil (~15 ms to import) is imported where it is used: a clean start needs none of it
# (no orphan, no stale lock), and the import would sit on the path to Chromium's launch.

log = logging.getLogger(__name__)


def signal_pid(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid: int) -> list[psutil.Process]:
    import psutil

    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return members


def wait_gone(members, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while members():
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)  # polling a process table, bounded by `timeout`
    return True


def profile_arg(profile_dir: Path) -> str:
    return f"--user-data-dir={Path(profile_dir).resolve()}"


def is_browser_main(cmdline: list[str], profile_dir: Path) -> bool:
    return profile_arg(profile_dir) in cmdline and not any(a.startswith("--type=") for a in cmdline)


def processes_on_profile(profile_dir: Path) -> list[psutil.Process]:
    """Every Chromium process whose command line holds this profile's --user-data-dir."""
    arg = profile_arg(profile_dir)
    found = []
    for pid in _pids_with_argument(arg):
        proc = _process(pid)
        if proc is not None:
            found.append(proc)
    return found


def _pids_with_argument(arg: str) -> list[int]:
    """Pids whose command line has `arg` as one of its arguments.

    Runs before every launch, so it reads /proc/<pid>/cmdline directly: a process_iter over
    psutil objects took ~80 ms of the start on a machine with 64 processes (it reads more
    files per process and builds objects for all of them). Elsewhere, psutil.
    """
    try:
        entries = os.scandir("/proc")
    except OSError:
        import psutil

        return [proc.pid for proc in psutil.process_iter(["cmdline"]) if arg in (proc.info["cmdline"] or [])]
    wanted = os.fsencode(arg)
    pids = []
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    data = f.read()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if wanted in _split_cmdline(data):
                pids.append(int(entry.name))
    return pids


def _split_cmdline(data: bytes) -> list[bytes]:
    """argv from /proc/<pid>/cmdline, as psutil splits it: Chromium's zygote children rewrite
    theirs into one space-separated string."""
    sep = b"\0" if data.endswith(b"\0") else b" "
    argv = data.removesuffix(sep).split(sep)
    if sep == b"\0" and len(argv) == 1 and b" " in data:
        argv = data.removesuffix(sep).split(b" ")
    return argv


def sweep_orphans(profile_dir: Path, gentle_s: float = 3.0) -> int:
    """Remove a browser tree left on this profile by a killed predecessor.

    Call only while holding the profile lock (so the tree cannot be a live owner's).
    SIGTERM to the main browser first, so it writes its storage (runtime.md: a SIGKILL
    soon after a write loses localStorage), then SIGKILL to what is left, including the
    orphaned chromedriver that led its process group. Returns the number of processes found.
    """
    procs = processes_on_profile(profile_dir)
    if not procs:
        return 0
    import psutil
    groups = set()
    for proc in procs:
        try:
            groups.add(os.getpgid(proc.pid))
            if is_browser_main(proc.cmdline(), profile_dir):
                proc.terminate()
        except (psutil.Error, ProcessLookupError):
            continue
    log.warning("found %d Chromium processes left on %s by an earlier run; stopping them",
                len(procs), profile_dir)
    # Not psutil.wait_procs: the main browser exits at once but stays a zombie (its orphaned
    # chromedriver never reaps it), and it would wait out the whole timeout for that.
    wait_gone(lambda: _running(procs), gentle_s)
    for pgid in groups:
        leader = _process(pgid)
        if leader is not None and "chromedriver" in (leader.name() or ""):
            kill_group(pgid)
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    wait_gone(lambda: _running(procs), 2.0)
    return len(procs)


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `procs` that still run (a zombie has exited)."""
    import psutil

    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.Error:
            continue
    return left


def _process(pid: int) -> psutil.Process | None:
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


SINGLETON_FILES = ("SingletonLock", "SingletonSocket", "SingletonCookie")


def clear_stale_singleton(profile_dir: Path, hostname: str) -> str | None:
    """Remove Chromium's profile lock when it is stale; returns why, or None if untouched.

    Stale (runtime.md): it names another host (a container restarted under a new name, a
    restored profile), or a dead pid, or a live pid that is not a browser on this profile.
    A live browser's lock is never touched. Call only while holding the profile lock.
    """
    lock = Path(profile_dir) / "SingletonLock"
    try:
        target = os.readlink(lock)
    except FileNotFoundError:
        return None
    except OSError:
        target = ""
    import psutil
    host, _, pid_text = target.rpartition("-")
    why = None
    if host != hostname:
        why = f"it names another host ({host or target!r})"
    elif not pid_text.isdigit() or not psutil.pid_exists(int(pid_text)):
        why = f"its process {pid_text} is gone"
    else:
        proc = _process(int(pid_text))
        try:
            if proc is None or profile_arg(profile_dir) not in proc.cmdline():
                why = f"process {pid_text} is not a browser on this profile"
        except psutil.Error:
            why = f"process {pid_text} is gone"
    if why is None:
        return None
    for name in SINGLETON_FILES:
        try:
            (Path(profile_dir) / name).unlink()
        except FileNotFoundError:
            pass
    log.warning("removed a stale Chromium profile lock (%s -> %s): %s", lock, target, why)
    return why
