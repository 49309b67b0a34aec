"""A real, throw-away PostgreSQL server for tests.

    with pg.running_server() as server:      # skips (or fails in CI) when PostgreSQL is missing
        psycopg.connect(server.url)
        server.stop_server()                 # an outage: same data dir and port...
        server.start_server()                # ...back again, data kept

The server runs as an unprivileged user (postgres refuses root): the `postgres` system user
when it exists, else `nobody`; as ourselves when we are not root. Everything lives in one
temporary folder that user owns (data dir, unix socket dir, log), it listens on 127.0.0.1 on a
free port, and `stop()` always ends it (`pg_ctl stop -m immediate`, then SIGKILL to its process
group) and removes the folder; an atexit hook does the same if a test run is interrupted.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

USER = "postgres"
PASSWORD = "s3cret-pw"  # tests check that it never reaches a log line
START_TIMEOUT_S = 30.0


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None.

    `$PG_BINDIR` if set (and then only it); else `pg_config --bindir` (on Debian it names the
    server's own directory), then the newest /usr/lib/postgresql/<version>/bin (Debian keeps
    the server off PATH), then initdb's directory on PATH.
    """
    candidates = []
    if env := os.environ.get("PG_BINDIR"):  # an explicit choice: only that one
        candidates.append(Path(env))
        pg_config = None
    else:
        pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            candidates.append(Path(out))
    if not env:
        versions = glob.glob("/usr/lib/postgresql/*/bin")
        candidates += [Path(p) for p in sorted(versions, key=_version_key, reverse=True)]
        if shutil.which("initdb"):
            candidates.append(Path(shutil.which("initdb")).parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _version_key(path: str) -> tuple:
    version = Path(path).parent.name
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def require_bindir() -> Path:
    """The bin dir, or skip the test with the reason; in CI (`CI` set) a missing server fails."""
    import pytest

    bindir = find_bindir()
    if bindir is None:
        where = (f"in PG_BINDIR={os.environ['PG_BINDIR']}" if os.environ.get("PG_BINDIR")
                 else "via pg_config --bindir, /usr/lib/postgresql/*/bin or PATH")
        reason = (f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found {where}; "
                  "install the `postgresql` package")
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: the Makefile must install it)", pytrace=False)
        pytest.skip(reason)
    return bindir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One cluster in a temporary folder; `start()` once, `stop()` always (idempotent)."""

    def __init__(self, bindir: Path):
        self.bindir = Path(bindir)
        self.root: Path | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._run_as = self._pick_user()

    @staticmethod
    def _pick_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None  # not root: postgres runs as ourselves
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise RuntimeError("running as root and neither a `postgres` nor a `nobody` user exists")

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """postgres:// (the scheme Heroku hands out), with a password, over TCP."""
        return f"postgres://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def connect(self, **kwargs) -> psycopg.Connection:
        """An autocommit admin connection, for tests that look at or damage the table."""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5, **kwargs)

    def _run(self, argv: list, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(argv, **self._as_user(), capture_output=True, text=True,
                              check=True, **kwargs)

    def _as_user(self) -> dict:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
               "TZ": "UTC", "HOME": str(self.root)}
        kwargs = {"env": env, "cwd": str(self.root)}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        return kwargs

    def start(self) -> PostgresServer:
        """initdb a fresh cluster and start it; raises with the server log on failure."""
        # Directly under the system temp dir: pytest's tmp_path parents are 0700 root,
        # which the unprivileged server user could not traverse.
        self.root = Path(tempfile.mkdtemp(prefix="pg-test-"))
        atexit.register(self.stop)
        (self.root / "sock").mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._run_as is not None:
            for path in (self.root, self.root / "sock", pwfile):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", USER,
                   "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                   "-E", "UTF8", "--no-locale", "--no-sync"], timeout=120)
        last = None
        for _ in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            try:
                return self.start_server()
            except RuntimeError as exc:
                last = exc
                if "already in use" not in str(exc):
                    break
        self.stop()
        raise last

    def start_server(self) -> PostgresServer:
        """Start postgres on the existing data dir and port; return once it accepts connections."""
        if self.running:
            return self
        log = open(self.root / "server.log", "ab")
        try:
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                 "-k", str(self.root / "sock"), "-c", "listen_addresses=127.0.0.1",
                 # Speed, not durability: the cluster is thrown away.
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._as_user())
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                self.connect().close()
                return self
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    self.stop_server()
                    raise RuntimeError(f"postgres not ready within {START_TIMEOUT_S:.0f} s: "
                                       f"{exc}\n{self.log_tail()}") from None
            time.sleep(0.05)  # polling interval of a bounded wait, not synchronisation

    def stop_server(self) -> None:
        """Stop postgres at once (like a crash: `-m immediate`), keeping data dir and port."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir),
                           "-m", "immediate", "-w", "-t", "10"], timeout=15)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The postmaster leads its own process group (start_new_session): this also takes
        # any backend left behind by a postmaster that died first.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the server and delete its folder; safe to call more than once."""
        self.stop_server()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        atexit.unregister(self.stop)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "server.log").read_text(errors="replace")
        except (OSError, TypeError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_server():
    """Yield a started `PostgresServer`; always stopped and removed afterwards."""
    server = PostgresServer(require_bindir())
    try:
        yield server.start()
    finally:
        server.stop()
