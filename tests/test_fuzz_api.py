"""Property: whatever a client throws at the real server, it gets a JSON 4xx or a valid answer.

Random methods, paths (under /api/, /metrics and outside), credentials, Host, Origin,
content types and bodies go to the server started as the Procfile does (no browser:
`WHATSAPP_AUTO_INIT=0`), once with a key and once without. For each answer:

- never a 5xx; under /api/ and /metrics, an error is the contract's JSON shape, never HTML;
- a request without valid credentials (key mode) or from a non-local Host (key-less mode)
  gets 401; an unsafe method with a foreign Origin gets 403, credentials or not;
- anything that succeeds was authorised, and only GET/HEAD/OPTIONS succeed;
- the session is never disturbed: the status stays `stopped`. The fuzzer never sends a
  command (POST initialize/disconnect/clear-session) or opens the event stream with valid
  credentials; those combinations are sent with the credentials stripped instead.
"""
from __future__ import annotations

import base64
import http.client
import json

import pytest
from harness import start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEY = "fuzz-Key.123"
STATUS = "/api/whatsapp/status"
COMMANDS = {"/api/whatsapp/initialize", "/api/whatsapp/disconnect", "/api/whatsapp/clear-session"}
EVENTS = "/api/whatsapp/events"
SAFE = {"GET", "HEAD", "OPTIONS"}
EVIL_HOST = "evil.example"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started = {}
    try:
        started["key"] = start_server(tmp_path_factory.mktemp("fuzz-key") / "data", KEY)
        started["local"] = start_server(tmp_path_factory.mktemp("fuzz-local") / "data", None, local_only=True)
        yield started
    finally:
        for server in started.values():
            server.stop()


# -- what to send ---------------------------------------------------------------------------

DOCS = "/api/whatsapp/docs"  # the one HTML answer besides the QR page
KNOWN = [STATUS, "/api/whatsapp/qr", "/api/whatsapp/qr.png", EVENTS, *sorted(COMMANDS), "/metrics",
         "/api/whatsapp/openapi.json", DOCS, f"{DOCS}/docs.js", "/api/whatsapp/messages"]
ODD = ["/api", "/api/", "/api/whatsapp", "/api/whatsapp/", f"{STATUS}/", "//api/whatsapp/status",
       "/api//whatsapp/status", "/%61pi/whatsapp/status", "/api/whatsapp/%2e%2e/whatsapp/status",
       "/api/../api/whatsapp/status", "/API/whatsapp/status", "/api/whatsapp/qr.png/", "/metrics/",
       "/api/whatsapp/initialize;x", "/api/whatsapp/%00", "/api/whatsapp/%zz", "/api/whatsapp/%C3%BC",
       "/api/whatsapp/qr%2Epng"]
OUTSIDE = ["/", "/nope", "/static/x.js", "/index.html", "/x/../api/whatsapp/status"]
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%", min_size=0, max_size=12)
paths = st.one_of(st.sampled_from(KNOWN), st.sampled_from(KNOWN), st.sampled_from(ODD),
                  st.sampled_from(OUTSIDE),
                  st.lists(segment, min_size=1, max_size=3).map(lambda s: "/api/whatsapp/" + "/".join(s)))
queries = st.one_of(st.just(""), st.sampled_from(["?format=json", f"?api_key={KEY}", f"?key={KEY}",
                                                  "?format=png", "?a=1&a=2", "?%zz"]),
                    segment.map(lambda s: "?" + s))
# gunicorn refuses what is not an upper-case token itself (tests/test_access.py covers that).
methods = st.one_of(st.sampled_from(["GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "PATCH",
                                     "OPTIONS", "TRACE", "PROPFIND"]),
                    st.from_regex(r"[A-Z]{3,10}", fullmatch=True))
credentials = st.sampled_from(["none", "key", "basic", "wrong-key", "wrong-basic", "bearer", "garbage"])
hosts = st.sampled_from(["local", "127", "ipv6", "bare-localhost", "evil", "rebind", "missing-port-evil"])
origins = st.sampled_from(["none", "none", "same", "foreign", "null", "other-port", "https-same", "bogus"])
content_types = st.sampled_from([None, "application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=b",
                                 "application/octet-stream", "garbage/", "text/html"])
bodies = st.one_of(st.none(), st.sampled_from([b"", b"{}", b"[]", b"null", b'{"a": 1}', b'"x"', b"{",
                                               b"a=1", b"\xff\xfe", b"x" * 70_000]),
                   st.binary(max_size=300), st.text(max_size=50).map(lambda t: json.dumps({t: t}).encode()))
accepts = st.sampled_from([None, "application/json", "text/html", "*/*", "image/png", "nonsense"])


def _auth_headers(kind: str) -> dict:
    return {
        "none": {}, "key": {"X-Api-Key": KEY},
        "basic": {"Authorization": "Basic " + base64.b64encode(f"anyone:{KEY}".encode()).decode()},
        "wrong-key": {"X-Api-Key": KEY[:-1]},
        "wrong-basic": {"Authorization": "Basic " + base64.b64encode(f"{KEY}:nope".encode()).decode()},
        "bearer": {"Authorization": f"Bearer {KEY}"}, "garbage": {"Authorization": "Basic %%%"},
    }[kind]


def _host(kind: str, port: int) -> str:
    return {"local": f"localhost:{port}", "127": f"127.0.0.1:{port}", "ipv6": f"[::1]:{port}",
            "bare-localhost": "localhost", "evil": f"{EVIL_HOST}:{port}", "rebind": "127.0.0.1.nip.io",
            "missing-port-evil": EVIL_HOST}[kind]


def _origin(kind: str, host: str, port: int) -> str | None:
    return {"none": None, "same": f"http://{host}", "foreign": "http://attacker.example", "null": "null",
            "other-port": f"http://localhost:{port + 1}", "https-same": f"https://{host}",
            "bogus": "not a url"}[kind]


def _is_api(path: str) -> bool:
    # What the server treats as /api/ (percent-decoding and repeated slashes included).
    import re
    from urllib.parse import unquote
    decoded = re.sub("/{2,}", "/", unquote(path.split("?")[0], errors="replace"))
    return decoded in ("/api", "/metrics") or decoded.startswith(("/api/", "/metrics/"))


def _exact(path: str) -> str:
    from urllib.parse import unquote
    return unquote(path, errors="replace")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(mode=st.sampled_from(["key", "local"]), method=methods, path=paths, query=queries,
       cred=credentials, host_kind=hosts, origin_kind=origins, content_type=content_types,
       body=bodies, accept=accepts)
def test_fuzz_requests(servers, mode, method, path, query, cred, host_kind, origin_kind, content_type,
                       body, accept):
    server = servers[mode]
    host = _host(host_kind, server.port)
    authorised = cred in ("key", "basic") if mode == "key" else host_kind in ("local", "127", "ipv6",
                                                                              "bare-localhost")
    target = _exact(path)
    # Never run a command or hold a stream open with valid credentials: strip them instead.
    if authorised and (target in COMMANDS or target == EVENTS):
        if mode == "key":
            cred, authorised = "none", False
        else:
            host_kind, host, authorised = "evil", _host("evil", server.port), False
    origin = _origin(origin_kind, host, server.port)
    foreign = origin is not None and origin_kind not in ("same",)
    headers = {"Host": host, **_auth_headers(cred)}
    if origin is not None:
        headers["Origin"] = origin
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path + query, body=body, headers=headers)
        resp = conn.getresponse()
        ctype = resp.getheader("Content-Type", "")
        data = b"" if ctype.startswith("text/event-stream") else resp.read()
        code = resp.status
    finally:
        conn.close()
    where = f"{method} {path + query} {headers} -> {code} {ctype} {data[:200]!r}"

    assert code < 500, where
    if not _is_api(path):
        return
    if method not in SAFE and foreign:
        assert code == 403, where
    elif not authorised:
        assert code == 401, where
    if code >= 300:
        assert ctype == "application/json", where
        assert resp.getheader("Cache-Control") == "no-store", where
        if method != "HEAD":
            payload = json.loads(data)
            assert payload["success"] is False and payload["error"] and payload["message"], where
        if code == 401 and method in ("GET", "HEAD"):
            assert resp.getheader("WWW-Authenticate", "").startswith("Basic realm="), where
    else:
        assert authorised and method in SAFE, where
        assert "html" not in ctype or _exact(path).rstrip("/") in ("/api/whatsapp/qr", DOCS), where
    assert resp.getheader("X-Content-Type-Options") == "nosniff", where


def test_fuzz_left_the_session_alone(servers):
    """Runs after the property (file order): nothing the fuzzer sent changed the session."""
    assert servers["key"].get(STATUS, headers={"X-Api-Key": KEY})[1]["status"] == "stopped"
    assert servers["local"].get(STATUS)[1]["status"] == "stopped"
    for server in servers.values():
        assert "Traceback" not in server.log(), server.log()
