"""Process trees of a server (gunicorn, chromedriver, Chromium) and their memory."""
from __future__ import annotations

import psutil

from .common import ServerProcess, browsers_on


def server_tree(server: ServerProcess) -> list[psutil.Process]:
    """gunicorn master, worker, chromedriver and every Chromium process of this server."""
    found: dict[int, psutil.Process] = {}
    try:
        master = psutil.Process(server.proc.pid)
        found[master.pid] = master
        for child in master.children(recursive=True):
            found[child.pid] = child
    except psutil.Error:
        pass
    for proc in browsers_on(server.data_dir):
        found.setdefault(proc.pid, proc)
    return list(found.values())


def browser_tree(server: ServerProcess) -> list[psutil.Process]:
    """chromedriver and the Chromium processes of a server (not gunicorn's own)."""
    try:
        master = psutil.Process(server.proc.pid)
        gunicorns = {master.pid} | {c.pid for c in master.children()}
    except psutil.Error:
        gunicorns = set()
    return [p for p in server_tree(server) if p.pid not in gunicorns]


def kind_of(proc: psutil.Process, gunicorn_pids: set[int]) -> str:
    if proc.pid in gunicorn_pids:
        return "gunicorn"
    try:
        cmdline = proc.cmdline()
        name = proc.name()
    except psutil.Error:
        return "gone"
    if "chromedriver" in name:
        return "chromedriver"
    for arg in cmdline:
        if arg.startswith("--type="):
            kind = arg.split("=", 1)[1]
            if kind == "utility":
                sub = next((a.split("=", 1)[1] for a in cmdline if a.startswith("--utility-sub-type=")), "")
                return f"utility:{sub.split('.')[-2] if sub.count('.') else sub}"
            return kind
    return "browser"


def _shared_pages(pid: int) -> dict:
    """Shared resident bytes per mapping of one process, keyed so that the same pages in
    another process of the tree get the same key (file: device, inode, offset; anonymous
    memory shared after a fork: its address)."""
    found: dict = {}
    key = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):           # a mapping's header line
                fields = line.split()
                start = fields[0].split("-")[0]
                key = (fields[3], fields[4], fields[2]) if fields[4] != "0" else ("anon", start)
            elif first in ("Shared_Clean:", "Shared_Dirty:"):
                found[key] = found.get(key, 0) + int(line.split()[1]) * 1024
    return found


def _gunicorn_pids(server: ServerProcess) -> set[int]:
    """gunicorn's master and its worker(s); empty when the master is gone."""
    try:
        master = psutil.Process(server.proc.pid)
        return {master.pid} | {c.pid for c in master.children()}
    except psutil.Error:
        return set()


def pss_breakdown(server: ServerProcess) -> dict:
    """Memory in MiB of the server and its browser tree: PSS by process kind, USS, and the
    footprint the tree would have alone on a machine (private pages plus every shared page
    counted once): on a shared machine PSS is lower, other people's Chromium processes take
    part of the shared pages (the Chromium binary, fonts, libraries)."""
    procs, gunicorn_pids = server_tree(server), _gunicorn_pids(server)
    by_kind: dict[str, float] = {}
    uss = 0.0
    shared: dict = {}
    count = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
            pages = _shared_pages(proc.pid)
        except (psutil.Error, OSError):
            continue
        kind = kind_of(proc, gunicorn_pids)
        by_kind[kind] = by_kind.get(kind, 0.0) + info.pss / 2**20
        uss += info.uss / 2**20
        for key, size in pages.items():
            shared[key] = max(shared.get(key, 0), size)
        count += 1
    server_mib = by_kind.get("gunicorn", 0.0)
    total = sum(by_kind.values())
    return {"total": total, "server": server_mib, "browser": total - server_mib, "processes": count,
            "uss": uss, "alone": uss + sum(shared.values()) / 2**20,
            "by_kind": {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}}


def footprint(server: ServerProcess) -> dict:
    """One cheap sample for the growth figures: PSS in MiB of gunicorn (master + worker) and
    of the browser tree, the tree's USS (its private pages: unlike PSS, not lowered when other
    Chromium processes on the machine share the binary's pages), the number of browser
    processes by kind, and the worker's open files and threads (None when unreadable)."""
    procs, gunicorn_pids = server_tree(server), _gunicorn_pids(server)
    sums = {"server": 0.0, "browser": 0.0, "browser_uss": 0.0}
    count = 0
    kinds: dict[str, int] = {}
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        sums["server" if proc.pid in gunicorn_pids else "browser"] += info.pss / 2**20
        if proc.pid not in gunicorn_pids:
            sums["browser_uss"] += info.uss / 2**20
            count += 1
            kind = kind_of(proc, gunicorn_pids)
            kinds[kind] = kinds.get(kind, 0) + 1
    worker = next((p for p in procs if p.pid in gunicorn_pids and p.pid != server.proc.pid), None)
    try:
        fds, threads = (worker.num_fds(), worker.num_threads()) if worker else (None, None)
    except psutil.Error:
        fds, threads = None, None
    return {**sums, "browser_processes": count, "worker_fds": fds, "worker_threads": threads, "kinds": kinds}


def tree_pss(pid: int) -> dict:
    """PSS and USS in MiB of every descendant of `pid` (the floor script's chromedriver and
    Chromium), and how many there are."""
    total, uss, count = 0.0, 0.0, 0
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        children = []
    for proc in children:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        total, uss, count = total + info.pss / 2**20, uss + info.uss / 2**20, count + 1
    return {"browser": total, "browser_uss": uss, "browser_processes": count}
