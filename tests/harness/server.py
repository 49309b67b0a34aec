"""Start the server the way the Procfile does, and talk to it, for end-to-end tests.

    with ServerProcess(tmp_path, {"WHATSAPP_WEB_URL": sim.url}) as server:
        server.wait_status(lambda s: s["status"] == "qr", timeout=60)
        server.post("/api/whatsapp/disconnect")

Every wait has a deadline; `stop()` sends SIGTERM to gunicorn, then SIGKILLs whatever is
left of the process group (the browser tree included) so that no Chromium survives a test.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_command(port: int) -> list[str]:
    """The Procfile's `web:` line with $PORT expanded, as a platform would run it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            words = shlex.split(line[len("web:"):].replace("$PORT", str(port)))
            words[0] = str(VENV_BIN / words[0]) if (VENV_BIN / words[0]).exists() else words[0]
            return words
    raise AssertionError("Procfile has no web: line")


def wait_for(condition, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Poll `condition()` until it returns a truthy value; raise with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = condition()
        except (OSError, ValueError) as exc:  # server not up yet, connection reset...
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}; last: {last!r}")
        time.sleep(interval)  # polling interval of a bounded wait, not synchronisation


# Short intervals for tests: set through configuration, never by sleeping.
TEST_ENV = {
    "WHATSAPP_MONITOR_INTERVAL_S": "1",
    "WHATSAPP_RECONNECT_STEP_S": "0.5",
    "WHATSAPP_RECONNECT_MAX_DELAY_S": "2",
    "WHATSAPP_DRIVER_TIMEOUT_S": "10",
    "WHATSAPP_PAGE_TIMEOUT_S": "5",
    "WHATSAPP_STARTUP_TIMEOUT_S": "30",
    "WHATSAPP_BACKUP_DELAY_S": "1",
    # runtime.md: where the resolver hangs, Chromium's look-ups of Google's hosts stall page
    # loads; in tests nothing but 127.0.0.1 is ever wanted.
    "WHATSAPP_CHROME_ARGS": '--host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"',
}


class ServerProcess:
    def __init__(self, data_dir: Path, env: dict | None = None, port: int | None = None,
                 command: list[str] | None = None):
        self.data_dir = Path(data_dir)
        self.extra_env = dict(env or {})  # what the test set: a restart on the same folder reuses it
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **TEST_ENV, "PORT": str(self.port),
                    "WHATSAPP_SESSION_DIR": str(self.data_dir), **(env or {})}
        self.env.pop("WHATSAPP_API_KEY", None) if "WHATSAPP_API_KEY" not in (env or {}) else None
        self.command = command or procfile_command(self.port)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, wait: bool = True) -> ServerProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            try:
                wait_for(lambda: self.proc.poll() is not None or self.get("/api/whatsapp/status")[0] == 200,
                         timeout=30, message=f"server on {self.url}")
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            except BaseException:
                self.stop()  # never leave a half-started server behind
                raise
        return self

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM as the platform does; returns seconds to exit. Always leaves nothing running."""
        if self.proc is None:
            return 0.0
        started = time.monotonic()
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            return time.monotonic() - started
        finally:
            self.kill_leftovers()
            self._log.close()

    def kill_leftovers(self) -> None:
        """SIGKILL the server's session and any browser on its profile dir."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for proc in browsers_on(self.data_dir):
            try:
                proc.kill()
            except psutil.Error:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    # -- HTTP ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30):
        """Returns (status, headers, body bytes); never raises for HTTP error statuses."""
        headers = dict(headers or {})
        key = self.api_key()
        if key and not any(h.lower() in ("x-api-key", "authorization") for h in headers):
            headers["X-Api-Key"] = key
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def api_key(self) -> str | None:
        """The key this server wants: WHATSAPP_API_KEY, else the one it generated in its data
        folder (the server is locked by default), else None (WHATSAPP_LOCAL_ONLY)."""
        if self.env.get("WHATSAPP_API_KEY"):
            return self.env["WHATSAPP_API_KEY"]
        try:
            return (self.data_dir / "api-key").read_text().strip() or None
        except OSError:
            return None

    def get(self, path: str, headers: dict | None = None, timeout: float = 30):
        status, hdrs, body = self.request("GET", path, headers=headers, timeout=timeout)
        return status, _maybe_json(hdrs, body)

    def post(self, path: str, payload=None, headers: dict | None = None, timeout: float = 30):
        data = None if payload is None else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data else dict(headers or {})
        status, rhdrs, body = self.request("POST", path, body=data, headers=hdrs, timeout=timeout)
        return status, _maybe_json(rhdrs, body)

    def status(self) -> dict:
        code, body = self.get("/api/whatsapp/status", timeout=5)
        assert code == 200, (code, body)
        return body

    def wait_status(self, predicate, timeout: float = 60, message: str = "status") -> dict:
        seen = []

        def check():
            current = self.status()
            if not seen or seen[-1] != current["status"]:
                seen.append(current["status"])
            return current if predicate(current) else None
        try:
            return wait_for(check, timeout, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatuses seen: {seen}\n--- server log ---\n{self.log()}") from None


def start_server(data_dir: Path, api_key: str | None, local_only: bool = False) -> ServerProcess:
    """A running server with no session started (WHATSAPP_AUTO_INIT=0): with that key, or
    the one it generates (`ServerProcess.api_key()`), or none with `local_only`."""
    env = {"WHATSAPP_AUTO_INIT": "0", **({"WHATSAPP_API_KEY": api_key} if api_key else {}),
           **({"WHATSAPP_LOCAL_ONLY": "1"} if local_only else {})}
    return ServerProcess(data_dir, env).start()


def _maybe_json(headers: dict, body: bytes):
    if "json" in headers.get("Content-Type", ""):
        return json.loads(body)
    return body


def browsers_on(data_dir: Path) -> list[psutil.Process]:
    """Chromium/chromedriver processes whose command line names a profile under data_dir."""
    marker = str(Path(data_dir).resolve())
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "--user-data-dir=" in cmdline and marker in cmdline:
            found.append(proc)
    return found
