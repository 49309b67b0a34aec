"""Slow clients cannot starve the server (issue 21): requests are read whole in gunicorn's event
loop (`whatsapp/serving.py`) before a thread takes them, within `READ_TIMEOUT_S`.

A real gunicorn as the Procfile starts it (`WHATSAPP_AUTO_INIT=0`: no browser), raw sockets
trickling a byte a second (`bench.slow_clients.Tricklers`, one thread, bounded waits), and
`/status` probed on new connections meanwhile. Timing bounds are loose (2 s) for this shared
2-core machine; the figures are printed (`pytest -s`).
"""
from __future__ import annotations

import json
import select
import socket
import time

import pytest
from harness import ServerProcess, start_server, wait_for

from bench.slow_clients import Tricklers, probe, slow_requests
from whatsapp.framing import MAX_BODY_BYTES, MAX_HEAD_BYTES, Incoming, Refusal
from whatsapp.serving import READ_TIMEOUT_S

E2E = True
KEY = "slow-clients-Key_1"
SLOW = 50
CUT_MARGIN_S = 1.5  # the loop wakes for the deadline; the client sees the close a moment later


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("slow") / "data", KEY)
    yield running
    running.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q / 100))]


def exchange(server: ServerProcess, data: bytes, timeout: float = 10) -> tuple[bytes, float]:
    """Send `data` at once, read until the server closes; (bytes received, seconds taken)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def _head(method: str, path: str, port: int, *lines: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *lines, "", ""]).encode()


def test_fifty_tricklers_leave_status_fast_and_are_cut_in_time(server):
    baseline, failed = probe(server.port, 2.0, key=KEY)
    assert not failed and baseline
    with Tricklers(server.port, slow_requests(server.port, KEY, SLOW), reconnect=False) as slow:
        wait_for(lambda: slow.open_count() == SLOW, timeout=10, message=f"{SLOW} slow connections")
        # While all of them are being read (the first cuts come at READ_TIMEOUT_S).
        loaded, failed = probe(server.port, READ_TIMEOUT_S - 1.5, key=KEY)
        wait_for(lambda: len(slow.cuts) == SLOW, timeout=READ_TIMEOUT_S + 10,
                 message="every slow connection cut")
    figures = {name: (round(_percentile(v, 50) * 1000, 1), round(_percentile(v, 99) * 1000, 1), len(v))
               for name, v in (("alone", baseline), ("with tricklers", loaded))}
    cuts = sorted(cut.seconds for cut in slow.cuts)
    print(f"\n/status p50, p99 (ms), probes: {figures}; {SLOW} tricklers cut after "
          f"{cuts[0]:.2f}..{cuts[-1]:.2f} s (median {cuts[len(cuts) // 2]:.2f} s)")
    assert not failed and not slow.errors, (failed, slow.errors)
    assert _percentile(loaded, 99) < 2.0, figures
    assert cuts[0] >= READ_TIMEOUT_S - 0.5 and cuts[-1] <= READ_TIMEOUT_S + CUT_MARGIN_S, cuts
    for cut in slow.cuts:
        # Each got bytes of its request in: the server says why it closes (JSON, as all errors).
        assert cut.answer.startswith(b"HTTP/1.1 408 "), cut
    assert server.get("/api/whatsapp/status", headers={"X-Api-Key": KEY})[0] == 200


def test_a_connection_that_sends_nothing_is_closed_silently(server):
    received, seconds = exchange(server, b"", timeout=READ_TIMEOUT_S + 5)
    assert received == b"" and READ_TIMEOUT_S - 0.5 <= seconds <= READ_TIMEOUT_S + CUT_MARGIN_S, seconds


def test_too_large_requests_are_answered_at_once(server):
    port = server.port
    big_body = _head("POST", "/api/whatsapp/initialize", port, f"X-Api-Key: {KEY}",
                     "Content-Type: application/json", f"Content-Length: {10 * MAX_BODY_BYTES}")
    received, seconds = exchange(server, big_body)
    assert received.startswith(b"HTTP/1.1 413 ") and seconds < 2.0, (received[:200], seconds)
    assert json.loads(received.partition(b"\r\n\r\n")[2])["success"] is False
    big_head = _head("GET", "/api/whatsapp/status", port, *[f"X-Pad-{n}: {'a' * 1000}"
                                                           for n in range(MAX_HEAD_BYTES // 1000 + 2)])
    received, seconds = exchange(server, big_head)
    assert received.startswith(b"HTTP/1.1 431 ") and seconds < 2.0, (received[:200], seconds)


def test_requests_in_pieces_pipelined_chunked_or_with_expect_are_served(server):
    port = server.port
    status = _head("GET", "/api/whatsapp/status", port, f"X-Api-Key: {KEY}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        # Split anywhere, even inside the blank line: served once the last byte is in.
        for piece in (status[:7], status[7:-1], status[-1:]):
            conn.sendall(piece)
            select.select([conn], [], [], 0.05)  # gives the server a chance to see a partial head
        assert _read_response(conn).startswith(b"HTTP/1.1 200 ")
        # Two requests in one send, on the same kept-alive connection.
        conn.sendall(status + status)
        assert _read_response(conn).startswith(b"HTTP/1.1 200 ")
        assert _read_response(conn).startswith(b"HTTP/1.1 200 ")
    # A chunked body, complete: the app reads it (400: the probe field is unknown, nothing runs).
    chunked = _head("POST", "/api/whatsapp/initialize", port, f"X-Api-Key: {KEY}", "Connection: close",
                    "Content-Type: application/json", "Transfer-Encoding: chunked")
    chunked += b'c\r\n{"probe": 1}\r\n0\r\n\r\n'
    received, _ = exchange(server, chunked)
    assert received.startswith(b"HTTP/1.1 400 ") and b"probe" in received, received[:300]
    # Expect: 100-continue: the server says "go on" before the body, once, and then answers.
    body = b'{"probe": 1}'
    expect = _head("POST", "/api/whatsapp/initialize", port, f"X-Api-Key: {KEY}", "Connection: close",
                   "Content-Type: application/json", "Expect: 100-continue", f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(expect)
        assert conn.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(body)
        rest = b""
        while chunk := conn.recv(65536):
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 400 ") and b"100 Continue" not in rest, rest[:300]


def _read_response(conn: socket.socket) -> bytes:
    """One response with a Content-Length from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536) or _eof()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536) or _eof()
    assert len(body) == length, "a pipelined response ran into the next one"
    return head


def _eof() -> bytes:
    raise AssertionError("the server closed the connection mid-response")


def test_a_long_answer_is_not_cut(server):
    """The event stream outlives the read deadline: only reading a request is bounded."""
    request = _head("GET", "/api/whatsapp/events", server.port, f"X-Api-Key: {KEY}")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        first = conn.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in first, first[:300]
        end = time.monotonic() + READ_TIMEOUT_S + 3
        while (left := end - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], left)
            if readable:
                assert conn.recv(65536), "the event stream was closed"


def test_sigterm_is_not_held_up_by_tricklers(tmp_path):
    running = start_server(tmp_path / "data", KEY)
    try:
        with Tricklers(running.port, slow_requests(running.port, KEY, 10), reconnect=False) as slow:
            wait_for(lambda: slow.open_count() == 10, timeout=10, message="10 slow connections")
            seconds = running.stop()
    finally:
        running.stop()
    print(f"\nSIGTERM to exit with 10 tricklers connected: {seconds:.2f} s")
    # A stopping worker gives requests still coming 2 s (gthread's STOP_KEEPALIVE_LINGER).
    assert seconds < 2 + 3, running.log()


# -- the framing decisions, pure (whatsapp/framing.py) -------------------------------------

def _incoming():
    from gunicorn.config import Config as GunicornConfig

    return Incoming(GunicornConfig(), ("127.0.0.1", 50000), 1, deadline=0.0)


def _verdicts(request: bytes) -> list:
    """The verdict after each byte, as if the request came a byte at a time."""
    incoming = _incoming()
    return [incoming.progress(request[:n]) for n in range(1, len(request) + 1)]


CHUNKED_HEAD = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\n",
    CHUNKED_HEAD + b"5;name=value\r\nhello\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nX-Check: t\r\n\r\n",
    CHUNKED_HEAD + b"0\r\n\r\n",
], ids=["get", "leading-crlf", "length", "chunked", "extension-trailer", "empty-chunked"])
def test_a_request_is_whole_exactly_at_its_last_byte(request_bytes):
    verdicts = _verdicts(request_bytes)
    assert verdicts[-1] is Incoming.COMPLETE and all(v is None for v in verdicts[:-1]), verdicts
    # Bytes pipelined behind it change nothing.
    assert _incoming().progress(request_bytes + b"GET /next HTTP/1.1\r\n") is Incoming.COMPLETE


@pytest.mark.parametrize("request_bytes, status", [
    (CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n", 400),
    (CHUNKED_HEAD + b"5\r\nhelloXX0\r\n\r\n", 400),  # the data's CRLF is missing
    (CHUNKED_HEAD + b"0\r\nTrailer: t\r\n\r\n", 400),  # a trailer gunicorn forbids
    (CHUNKED_HEAD + b"1" * (MAX_BODY_BYTES + 10), 400),  # a size line that never ends
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), 413),
    (CHUNKED_HEAD + (b"400\r\n" + b"x" * 1024 + b"\r\n") * (MAX_BODY_BYTES // 1024 + 1), 413),
    (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * MAX_HEAD_BYTES, 431),
])
def test_what_the_loop_refuses_itself(request_bytes, status):
    verdict = _incoming().progress(request_bytes)
    assert isinstance(verdict, Refusal) and verdict.status == status, verdict


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"get / HTTP/1.1\r\n\r\n",
    b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
])
def test_a_head_gunicorn_rejects_goes_to_gunicorn_at_once(request_bytes):
    # Its thread answers the 4xx/5xx from these bytes: nothing more is awaited.
    assert _incoming().progress(request_bytes) is Incoming.COMPLETE
