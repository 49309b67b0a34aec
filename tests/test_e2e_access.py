"""Locked by default, also behind a reverse proxy (issue 21, contract section 3, Access).

A real nginx (Debian's package) started by the test on free loopback ports, with a config
of its own in a temporary folder, in front of real servers started as the Procfile does
(`WHATSAPP_AUTO_INIT=0`: no browser). Two proxies: nginx's defaults (`proxy_pass` and
nothing else: every internet client arrives as a loopback peer with `Host: 127.0.0.1:<port>`)
and what most guides add (`X-Forwarded-For`, `X-Real-IP`, the client's Host, HTTP/1.1).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness import ServerProcess, free_port, start_server, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STATUS = "/api/whatsapp/status"
# Everything a stranger must not get: the state, the QR (to link their own phone), the
# commands that end the login, the event stream, the metrics.
GUARDED = [("GET", STATUS), ("GET", "/api/whatsapp/qr"), ("GET", "/api/whatsapp/qr?format=json"),
           ("GET", "/api/whatsapp/qr.png"), ("GET", "/api/whatsapp/events"), ("GET", "/metrics"),
           ("POST", "/api/whatsapp/clear-session"), ("POST", "/api/whatsapp/disconnect"),
           ("POST", "/api/whatsapp/initialize")]

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        # nginx's defaults: HTTP/1.0 to the upstream, Host $proxy_host, no forwarding header.
        listen 127.0.0.1:{plain};
        location / {{ proxy_pass http://127.0.0.1:{upstream}; }}
    }}
    server {{
        listen 127.0.0.1:{forwarding};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@contextmanager
def nginx(upstream: int, tmp: Path) -> Iterator[dict[str, int]]:
    """nginx in front of 127.0.0.1:`upstream`: {"plain": port, "forwarding": port}; stopped
    (SIGTERM, then SIGKILL of its group) and its folder removed at the end."""
    if not os.access(NGINX, os.X_OK):
        pytest.fail("nginx is not installed (make test installs it: apt-get install -y nginx)")
    ports = {"plain": free_port(), "forwarding": free_port()}
    tmp.mkdir(parents=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, **ports))
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for port in ports.values():
            wait_for(lambda p=port: proc.poll() is None and _connects(p), timeout=15,
                     message=f"nginx on {port}: {_tail(tmp / 'error.log')}")
        yield ports
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its workers, if the master did not take them along
        except ProcessLookupError:
            pass
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _connects(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-1500:]
    except OSError:
        return "(no error log)"


def via(port: int, method: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request to 127.0.0.1:`port` -> (status, lower-case headers, body; none for a stream)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        stream = resp.getheader("Content-Type", "").startswith("text/event-stream")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"" if stream else resp.read()
    finally:
        conn.close()


def assert_locked(port: int, key: str | None = None) -> None:
    """Nothing guarded answers through `port` without the key (nor with a wrong one)."""
    for method, path in GUARDED:
        for headers in ({}, {"X-Api-Key": (key or "x" * 43)[:-1] + "?"}):
            code, hdrs, body = via(port, method, path, headers)
            assert code == 401, (method, path, code, body[:300])
            assert (hdrs.get("www-authenticate") == 'Basic realm="whatsapp"') is (method == "GET"), hdrs
            payload = json.loads(body)
            assert payload["success"] is False and "WHATSAPP_API_KEY" in payload["message"], payload
            assert key is None or key not in body.decode()


def assert_open_with(port: int, key: str) -> None:
    assert via(port, "GET", STATUS, {"X-Api-Key": key})[0] == 200
    assert via(port, "GET", "/metrics", {"X-Api-Key": key})[0] == 200
    code, _, body = via(port, "GET", "/api/whatsapp/qr.png", {"X-Api-Key": key})
    assert code == 409 and json.loads(body)["error"], body  # served: there is just no QR yet
    code, headers, _ = via(port, "GET", "/api/whatsapp/events", {"X-Api-Key": key})
    assert code == 200 and headers["content-type"].startswith("text/event-stream")


def generated_key(server: ServerProcess) -> str:
    return (server.data_dir / "api-key").read_text().strip()


# -- what nginx's defaults send ------------------------------------------------------------

class Tap:
    """A listener that records the head of the first request it gets and answers 204."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(15)
        self.port = self.sock.getsockname()[1]
        self.head = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(10)
            while b"\r\n\r\n" not in self.head and (chunk := conn.recv(4096)):
                self.head += chunk
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.thread.join(15)
        self.sock.close()


def test_what_a_default_nginx_sends_looks_local_but_http_1_0(tmp_path):
    """Why WHATSAPP_LOCAL_ONLY also refuses HTTP/1.0: with nginx's defaults an internet client's
    request reaches the server from loopback, with a loopback Host and no forwarding header."""
    tap = Tap()
    try:
        with nginx(tap.port, tmp_path / "nginx") as ports:
            assert via(ports["plain"], "GET", STATUS, {"Host": "whatsapp.example.com",
                                                       "User-Agent": "someone on the internet"})[0] == 204
    finally:
        tap.close()
    lines = tap.head.decode("latin-1").split("\r\n")
    names = {line.split(":", 1)[0].lower() for line in lines[1:] if ":" in line}
    assert lines[0] == f"GET {STATUS} HTTP/1.0", lines
    assert f"Host: 127.0.0.1:{tap.port}" in lines, lines
    assert not names & {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via"}, lines


# -- locked by default ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """No WHATSAPP_API_KEY, no WHATSAPP_LOCAL_ONLY: the default."""
    server = start_server(tmp_path_factory.mktemp("locked") / "data", None)
    yield server
    server.stop()


def test_locked_by_default_even_direct_and_through_nginx(locked, tmp_path):
    key = generated_key(locked)
    assert_locked(locked.port, key)  # a direct local client too: it could be a proxy
    with nginx(locked.port, tmp_path / "nginx") as ports:
        for port in ports.values():
            assert_locked(port, key)
            assert_open_with(port, key)
    assert locked.status()["status"] == "stopped"  # the refused commands did nothing


def test_generated_key_file_is_owner_only_logged_by_path_and_kept(tmp_path):
    data = tmp_path / "data"
    path = data / "api-key"
    with ServerProcess(data, {"WHATSAPP_AUTO_INIT": "0"}) as first:
        key = generated_key(first)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(data.stat().st_mode) == 0o700
        assert str(path) in first.log() and key not in first.log()
    content = path.read_bytes()
    # A restart on the same folder keeps the key: the old one still works, nothing new is made.
    with ServerProcess(data, {"WHATSAPP_AUTO_INIT": "0"}) as again:
        assert path.read_bytes() == content
        assert via(again.port, "GET", STATUS, {"X-Api-Key": key})[0] == 200
        assert str(path) in again.log() and key not in again.log()


def test_two_servers_starting_at_once_share_one_key(tmp_path):
    data = tmp_path / "data"
    first = ServerProcess(data, {"WHATSAPP_AUTO_INIT": "0"})
    second = ServerProcess(data, {"WHATSAPP_AUTO_INIT": "0"})
    try:
        first.start(wait=False)
        second.start(wait=False)
        for server in (first, second):
            wait_for(lambda s=server: s.proc.poll() is not None or s.get(STATUS)[0] == 200, timeout=30,
                     message="a server answering with the generated key")
            assert server.proc.poll() is None, server.log()
        key = generated_key(first)
        for server in (first, second):
            assert via(server.port, "GET", STATUS, {"X-Api-Key": key})[0] == 200
        assert sorted(p.name for p in data.iterdir() if p.name.startswith((".api-key", "api-key"))) == ["api-key"]
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("content", [b"", b"not a key\n"])
def test_unusable_key_file_stops_the_start_with_one_line(tmp_path, content):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "api-key").write_bytes(content)
    server = ServerProcess(data, {"WHATSAPP_AUTO_INIT": "0"})
    try:
        server.start(wait=False)
        assert server.proc.wait(30) == 2, server.log()
    finally:
        server.stop()
    errors = [line for line in server.log().splitlines() if "configuration error" in line]
    assert len(errors) == 1 and str(data / "api-key") in errors[0] and "WHATSAPP_API_KEY" in errors[0], server.log()
    assert "Booting worker" not in server.log()
    assert (data / "api-key").read_bytes() == content  # never replaced by a new key


class _DigestServer(ServerProcess):
    """A server given `sha256:<hex>`: the harness must present the key itself."""

    plain_key = ""

    def api_key(self) -> str | None:
        return self.plain_key


def test_key_given_as_sha256_through_nginx(tmp_path):
    key = "a-long-secret-key-for-the-digest-test"
    digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    server = _DigestServer(tmp_path / "data", {"WHATSAPP_AUTO_INIT": "0", "WHATSAPP_API_KEY": digest})
    server.plain_key = key
    with server, nginx(server.port, tmp_path / "nginx") as ports:
        for port in (server.port, *ports.values()):
            assert_locked(port, key)
            assert_open_with(port, key)
            assert via(port, "GET", STATUS, {"X-Api-Key": server.env["WHATSAPP_API_KEY"]})[0] == 401
        assert not (server.data_dir / "api-key").exists()


# -- WHATSAPP_LOCAL_ONLY ---------------------------------------------------------------------

def test_local_only_serves_direct_local_clients_but_nothing_through_nginx(tmp_path):
    server = ServerProcess(tmp_path / "data", {"WHATSAPP_AUTO_INIT": "0", "WHATSAPP_LOCAL_ONLY": "1"})
    with server, nginx(server.port, tmp_path / "nginx") as ports:
        assert via(server.port, "GET", STATUS)[0] == 200  # the developer's own curl
        for port in ports.values():
            assert_locked(port)
        assert server.status()["status"] == "stopped"
        assert "WHATSAPP_LOCAL_ONLY=1" in server.log()
        assert not (server.data_dir / "api-key").exists()


def test_local_only_with_a_key_takes_the_key_from_anywhere(tmp_path):
    key = "key-and-local-only-1234"
    server = ServerProcess(tmp_path / "data", {"WHATSAPP_AUTO_INIT": "0", "WHATSAPP_LOCAL_ONLY": "1",
                                               "WHATSAPP_API_KEY": key})
    with server, nginx(server.port, tmp_path / "nginx") as ports:
        assert via(server.port, "GET", STATUS)[0] == 200
        for port in ports.values():
            assert_locked(port, key)
            assert_open_with(port, key)
