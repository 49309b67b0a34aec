"""One browser per profile, no orphans, clean stops: kill -9, stale locks, two servers,
WEB_CONCURRENCY, SIGTERM/SIGINT (gunicorn and the dev server; also while the worker boots),
owner-only files.

Real processes throughout: gunicorn as the Procfile runs it (or `python server.py`), real
Chromium, the simulator. Timings are printed for the record (`-s` shows them); the
assertions only use generous limits, the targets live in the benchmarks.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import psutil
import pytest
from harness import (
    CLIENT_ID,
    ServerProcess,
    browsers_on,
    descendants,
    free_port,
    is_gone,
    kill_all,
    link_phone,
    main_browsers,
    procfile_command,
    profile_of,
    ready_without_qr,
    umask_command,
    wait_for,
    worker_of,
)

PROFILE = profile_of(".").name
RECORD = f"session-{CLIENT_ID}.json"
LOCK = f"session-{CLIENT_ID}.lock"


def sim_env(sim, **extra) -> dict:
    return {"WHATSAPP_WEB_URL": sim.url, **extra}


def the_worker(server: ServerProcess) -> psutil.Process:
    """gunicorn's one worker (WEB_CONCURRENCY notwithstanding): the master has no other child."""
    workers = psutil.Process(server.proc.pid).children()
    assert len(workers) == 1, [(p.pid, p.name()) for p in workers]
    worker = worker_of(server)
    assert worker is not None and worker.pid == workers[0].pid
    return worker


def worker_of_or_none(server: ServerProcess, old: psutil.Process):
    """The master's worker when it is a new one (not `old`), else None."""
    workers = [p for p in psutil.Process(server.proc.pid).children() if p != old and not is_gone(p)]
    return workers[0] if len(workers) == 1 else None


def chromium_in(server: ServerProcess) -> list[psutil.Process]:
    """chromedriver and browser processes started by this server (descendants of its master).

    A browser holds a --user-data-dir; `chromium --version`, which the server runs once to
    learn the version for its user agent, is not a browser.
    """
    found = []
    for proc in descendants(server.proc.pid):
        try:
            if proc.name() == "chromedriver" or any(a.startswith("--user-data-dir=") for a in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def signal_and_time(server: ServerProcess, signum: int, group: bool = False, timeout: float = 30) -> float:
    """Send `signum` to the server (`group`: to its process group, as a terminal's Ctrl+C does;
    the browser runs in a group of its own) and return the seconds until it exited."""
    started = time.monotonic()
    if group:
        os.killpg(server.proc.pid, signum)
    else:
        server.signal(signum)
    try:
        server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"server did not exit within {timeout} s of {signum!r}:\n{server.log()}") from None
    return time.monotonic() - started


def assert_closed_properly(data_dir, before: list[psutil.Process]) -> None:
    """Nothing of the browser tree is left, and Chromium exited cleanly (a clean exit removes
    its SingletonLock; a SIGKILL leaves it)."""
    left = [p.pid for p in before if not is_gone(p)] + [p.pid for p in browsers_on(data_dir) if not is_gone(p)]
    assert not left, f"browser processes left after the server exited: {left}"
    assert not os.path.lexists(data_dir / PROFILE / "SingletonLock"), "Chromium was killed, not closed"


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_owner_only(data_dir) -> None:
    """The data folder and what this server creates in it are 0o700 (dirs) / 0o600 (files).
    Inside the profile only its folder is checked: the rest is Chromium's own."""
    for name in (PROFILE, RECORD, LOCK, "backups"):
        assert (data_dir / name).exists(), f"{name} missing from {sorted(os.listdir(data_dir))}"
    wrong = []
    paths = [data_dir, *data_dir.iterdir(), *(data_dir / "backups").rglob("*")]
    for path in paths:
        if path.is_symlink():
            wrong.append(f"symlink {path}")
            continue
        want = 0o700 if path.is_dir() else 0o600
        if mode(path) != want:
            wrong.append(f"{oct(mode(path))} (want {oct(want)}) {path.relative_to(data_dir.parent)}")
    assert not wrong, "not owner-only:\n" + "\n".join(wrong)


# -- 1. kill -9 of gunicorn leaves an orphaned browser; the next server sweeps it ----------------

def test_kill9_master_and_worker_next_server_sweeps_orphans(servers, sim, tmp_path):
    data = tmp_path / "data"
    first = servers(env=sim_env(sim), data_dir=data)
    link_phone(first, sim)
    worker = the_worker(first)
    old_tree = descendants(worker.pid)  # chromedriver and every Chromium process under it
    try:
        assert any("chromedriver" in p.name() for p in old_tree)
        assert len(main_browsers(data)) == 1

        os.killpg(first.proc.pid, signal.SIGKILL)  # master and worker share one group: at once
        first.proc.wait(10)
        wait_for(lambda: is_gone(worker), 10, message="the killed worker to go")
        driver = next(p for p in old_tree if "chromedriver" in p.name())
        assert not is_gone(driver), "the browser tree should survive its owner (runtime.md)"
        wait_for(lambda: driver.ppid() != worker.pid, 10, message="the orphaned chromedriver to be reparented")
        assert len(main_browsers(data)) == 1

        second = servers(env=sim_env(sim), data_dir=data)
        ready_without_qr(second)
        assert "left on" in second.log(), "the sweep should say what it found"
        still = [p.pid for p in old_tree if not is_gone(p)]
        assert not still, f"the old tree survived the restart: {still}"
        mains = main_browsers(data)
        assert len(mains) == 1, [p.pid for p in mains]
        assert mains[0] in descendants(second.proc.pid)
    finally:
        kill_all(old_tree)


def test_kill9_worker_only_gunicorn_replaces_it_and_sweeps(servers, sim, tmp_path):
    """The master boots a new worker at once; it must take over the profile, not add a browser."""
    server = servers(env=sim_env(sim))
    link_phone(server, sim)
    worker = the_worker(server)
    old_tree = descendants(worker.pid)
    try:
        worker.kill()
        wait_for(lambda: is_gone(worker) and worker_of_or_none(server, worker), 30,
                 message="gunicorn to boot a new worker")
        statuses = []

        def back_ready():
            status = server.status()
            statuses.append(status["status"])
            return status["status"] == "ready" and all(is_gone(p) for p in old_tree)
        wait_for(back_ready, 90, message="the new worker to be ready and the old tree gone")
        assert "qr" not in statuses, statuses
        assert "-> qr" not in server.log().split("Booting worker")[-1], server.log()
        mains = main_browsers(server.data_dir)
        assert len(mains) == 1 and mains[0] in descendants(server.proc.pid)
    finally:
        kill_all(old_tree)


# -- 2. a profile lock naming another host (container restart, restored profile) ---------------

def test_foreign_singleton_lock_is_cleared(servers, sim, tmp_path):
    data = tmp_path / "data"
    first = servers(env=sim_env(sim), data_dir=data)
    link_phone(first, sim)
    first.stop()
    assert first.proc.returncode == 0, first.log()

    profile = data / PROFILE
    assert not os.path.lexists(profile / "SingletonLock")  # a clean exit removes it
    os.symlink("otherhost-12345", profile / "SingletonLock")
    os.symlink("/tmp/.org.chromium.Chromium.otherhost/SingletonSocket", profile / "SingletonSocket")
    os.symlink("8155984211456410127", profile / "SingletonCookie")

    second = servers(env=sim_env(sim), data_dir=data)
    ready_without_qr(second)
    assert "stale Chromium profile lock" in second.log()
    mains = main_browsers(data)
    assert len(mains) == 1
    assert os.readlink(profile / "SingletonLock") == f"{socket.gethostname()}-{mains[0].pid}"


# -- 3. two servers on one data folder; 8. no gunicorn control socket ---------------------------

def test_two_servers_one_profile_one_browser_then_takeover(servers, sim, tmp_path):
    data = tmp_path / "data"
    xdg = tmp_path / "xdg"  # gunicorn would put gunicorn.ctl here (before ~/.gunicorn/)
    xdg.mkdir()
    env = sim_env(sim, XDG_RUNTIME_DIR=str(xdg), WHATSAPP_RECONNECT_MAX_ATTEMPTS="1000")
    first = servers(env=env, data_dir=data)
    link_phone(first, sim)
    holder = the_worker(first)

    second = servers(env=env, data_dir=data)  # same Procfile command, another port
    launched = set()

    def locked_twice():
        launched.update(p.pid for p in chromium_in(second))
        status = second.status()
        return status if status["reason"] == "profile_locked" and status["reconnectAttempts"] >= 2 else None
    status = wait_for(locked_twice, 60, message="the second server to report profile_locked twice")
    assert status["status"] in ("reconnecting", "failed"), status
    assert not launched, f"the second server launched a browser: {sorted(launched)}"
    assert f"pid {holder.pid}" in second.log(), second.log()
    mains = main_browsers(data)
    assert len(mains) == 1 and mains[0] in descendants(first.proc.pid)
    assert not (xdg / "gunicorn.ctl").exists(), "gunicorn opened its control socket"
    assert first.status()["status"] == "ready"

    elapsed = first.stop()
    assert first.proc.returncode == 0, first.log()
    print(f"\nfirst server: SIGTERM to exit {elapsed:.2f} s; the second takes over")
    ready_without_qr(second, timeout=90)
    mains = main_browsers(data)
    assert len(mains) == 1 and mains[0] in descendants(second.proc.pid)


# -- 4. WEB_CONCURRENCY does not add workers ------------------------------------------------------

def test_web_concurrency_still_one_worker_one_browser(servers, sim, tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    server = servers(env=sim_env(sim, WEB_CONCURRENCY="4", XDG_RUNTIME_DIR=str(xdg)))
    server.wait_status(lambda s: s["status"] == "qr", timeout=60, message="a QR")
    the_worker(server)  # exactly one child of the master
    assert server.log().count("Booting worker") == 1, server.log()
    assert len(main_browsers(server.data_dir)) == 1
    assert not (xdg / "gunicorn.ctl").exists(), "gunicorn opened its control socket"


# -- 5. SIGTERM with a ready session; 9. owner-only files ----------------------------------------

class StatusWatcher(threading.Thread):
    """Polls /status on one kept-alive connection until stopped, keeping every answer.

    Best effort: after SIGTERM gunicorn accepts no new connection, but still answers a
    request on a kept-alive one for a moment, which is where `isShuttingDown` can show.
    """

    def __init__(self, server: ServerProcess):
        super().__init__(daemon=True)
        self.server, self.seen, self.done = server, [], threading.Event()

    def run(self):
        conn = None
        while not self.done.is_set():
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=2)
                conn.request("GET", "/api/whatsapp/status", headers={"X-Api-Key": self.server.api_key() or ""})
                answer = conn.getresponse()
                body = json.loads(answer.read())
                if answer.status == 200:
                    self.seen.append((body["status"], body["isShuttingDown"]))
                if answer.will_close:
                    conn.close()
                    conn = None
            except (OSError, ValueError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            self.done.wait(0.02)  # polling interval
        if conn is not None:
            conn.close()


def test_sigterm_ready_session_exits_cleanly_and_files_are_private(servers, sim, tmp_path):
    data = tmp_path / "data"
    port = free_port()
    # umask 022 as on most hosts: owner-only modes must come from the server, not the umask.
    server = ServerProcess(data, sim_env(sim), port=port, command=umask_command(procfile_command(port)))
    with server:
        link_phone(server, sim)
        wait_for(lambda: server.status()["backups"].get("count"), 30, message="a backup")
        tree = descendants(server.proc.pid)
        watcher = StatusWatcher(server)
        watcher.start()
        wait_for(lambda: watcher.seen, 10, message="the watcher's first answer")
        try:
            elapsed = signal_and_time(server, signal.SIGTERM)
        finally:
            watcher.done.set()
            watcher.join(5)
        shutting = [s for s in watcher.seen if s[1]]
        print(f"\nSIGTERM to exit, gunicorn, ready session: {elapsed:.2f} s; "
              f"isShuttingDown observed: {bool(shutting)} {shutting[:3]}")
        assert server.proc.returncode == 0, server.log()
        assert elapsed < 20, elapsed
        assert_closed_properly(data, tree)
    record = json.loads((data / RECORD).read_text())
    assert record["lastCleanShutdownAt"], record
    assert "the previous run did not shut down cleanly" not in server.log()
    assert_owner_only(data)

    again = servers(env=sim_env(sim), data_dir=data)
    ready_without_qr(again)
    assert "did not shut down cleanly" not in again.log()
    assert_owner_only(data)


def test_sigterm_while_the_worker_boots_stops_everything_at_once(servers, sim, tmp_path):
    # The worst moment: the worker is in gunicorn's post_fork, its launch under way and the
    # app not imported yet. Until gunicorn installs the worker's own handlers the worker has
    # the master's, copied by the fork, which lose the signal: the worker would run on until
    # the master's SIGKILL, graceful_timeout (20 s) later, and the browser be killed with it.
    data = tmp_path / "data"
    port = free_port()
    server = ServerProcess(data, sim_env(sim), port=port, command=procfile_command(port))
    server.start(wait=False)
    tree: list[psutil.Process] = []
    try:
        wait_for(lambda: any(p.name() == "chromedriver" for p in chromium_in(server)), 30, interval=0.005,
                 message="chromedriver spawned by the booting worker")
        tree = chromium_in(server)
        elapsed = signal_and_time(server, signal.SIGTERM, group=True)  # every process, as Heroku does
        print(f"\nSIGTERM while the worker boots, to exit: {elapsed:.2f} s")
        assert server.proc.returncode == 0, server.log()
        assert elapsed < 10, f"{elapsed:.1f} s: the worker waited for the master's SIGKILL\n{server.log()}"
        assert "using the API key" not in server.log(), "the app was imported: the signal came after the boot"
        assert_closed_properly(data, tree)
    finally:
        server.stop()
        kill_all(tree)  # a failure can leave chromedriver orphaned: it names no profile
    record = json.loads((data / RECORD).read_text())
    assert record["lastCleanShutdownAt"], record


# -- 6. SIGTERM with the QR page's event stream open ------------------------------------------------

def test_sigterm_with_event_stream_open_exits_promptly(servers, sim):
    server = servers(env=sim_env(sim))
    server.wait_status(lambda s: s["status"] == "qr", timeout=60, message="a QR")
    tree = descendants(server.proc.pid)
    received, ended, stream_end = bytearray(), threading.Event(), []
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)

    def read():
        try:
            while chunk := conn.recv(4096):
                received.extend(chunk)
                if not stream_end and received.endswith(b"\r\n0\r\n\r\n"):  # last chunk
                    stream_end.append(time.monotonic())
        except OSError:
            pass
        ended.set()
    try:
        conn.sendall(f"GET /api/whatsapp/events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                     f"X-Api-Key: {server.api_key()}\r\nAccept: text/event-stream\r\n\r\n".encode())
        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: b"\r\n\r\n" in received and b"\ndata:" in received, 15,
                 message="the event stream's first event")
        assert received.startswith(b"HTTP/1.1 200"), bytes(received[:200])

        signalled = time.monotonic()
        elapsed = signal_and_time(server, signal.SIGTERM)
        ended_after = f"{stream_end[0] - signalled:.2f} s" if stream_end else "not seen"
        print(f"\nSIGTERM to exit, gunicorn, QR with an open event stream: {elapsed:.2f} s "
              f"(the stream's last chunk after {ended_after})")
        assert server.proc.returncode == 0, server.log()
        assert elapsed < 10, elapsed
        assert ended.wait(10), "the event stream was not closed"
        assert_closed_properly(server.data_dir, tree)
    finally:
        conn.close()


# -- 7. the development server: Ctrl+C and SIGTERM -------------------------------------------------

@pytest.mark.parametrize("signum, background", [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "ctrl-c-started-in-the-background", "sigterm"])
def test_dev_server_stops_browser_on_signal(sim, tmp_path, signum, background):
    """`background`: started as a shell starts `cmd &` (or nohup does), with SIGINT ignored,
    which Python keeps: Ctrl+C must stop it all the same."""
    port = free_port()
    command = [sys.executable, "server.py"]
    if background:
        command = ["sh", "-c", 'trap "" INT; exec "$0" "$@"', *command]
    server = ServerProcess(tmp_path / "data", sim_env(sim), port=port, command=command)
    with server:
        server.wait_status(lambda s: s["status"] == "qr", timeout=60, message="a QR")
        tree = descendants(server.proc.pid)
        assert len(main_browsers(server.data_dir)) == 1
        elapsed = signal_and_time(server, signum, group=signum == signal.SIGINT)
        print(f"\n{signal.Signals(signum).name} to exit, python server.py: {elapsed:.2f} s")
        assert server.proc.returncode == 0, server.log()
        assert elapsed < 20, elapsed
        assert_closed_properly(server.data_dir, tree)
    assert not browsers_on(server.data_dir)
