"""`/status` under 50 slow clients, beside the same server without them (the floor).

A slow client (`Tricklers`) opens a raw connection and sends its request one byte a second:
most send the head of a GET, some complete headers with a large Content-Length and then the
body (with the key and without). gunicorn's stock gthread worker gives each of them one of
its 8 threads until the request is whole, so 8 of them starve the server; the product's
worker (`whatsapp/serving.py`) reads requests in its event loop and cuts each after 5 s.
A cut client reconnects at once, as an attacker would, so 50 stay connected throughout.

Figures, per run: /status p50 and p99 from sequential probes on new connections (a new
connection must be accepted, as a real client's is) while the slow clients run, beside the
same probes with none; how long the server took to cut a slow client; and, for reference,
the share of probes (2 s timeout) a stock gthread server answers under the same load.
"""
from __future__ import annotations

import http.client
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from .common import Context, Row, median, percentile

CLIENTS = 50
KEY = "bench-slow-clients-key"
PROBE_TIMEOUT_S = 2.0


def slow_requests(port: int, key: str, count: int = CLIENTS) -> list[tuple[str, bytes, bytes]]:
    """(kind, sent at once, sent a byte a second): 80% heads, 10% keyed bodies, 10% unkeyed."""
    host = f"127.0.0.1:{port}"
    head = (f"GET /api/whatsapp/status HTTP/1.1\r\nHost: {host}\r\nUser-Agent: trickler\r\n"
            f"X-Api-Key: {key}\r\nAccept: application/json\r\n\r\n").encode()
    keyed = (f"POST /api/whatsapp/initialize HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: {key}\r\n"
             "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n").encode()
    unkeyed = (f"POST /api/whatsapp/clear-session HTTP/1.1\r\nHost: {host}\r\n"
               "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode()
    body = b'{"x": "' + b"y" * 1000
    kinds = []
    for n in range(count):
        if n % 10 == 8:
            kinds.append(("keyed-body", keyed, body))
        elif n % 10 == 9:
            kinds.append(("unkeyed-body", unkeyed, body))
        else:
            kinds.append(("head", b"", head))
    return kinds


@dataclass
class _Slow:
    kind: str
    rest: bytes
    sock: socket.socket
    opened: float
    received: bytearray = field(default_factory=bytearray)


@dataclass
class Cut:
    """One slow connection the server ended: seconds from connect, and what it answered."""
    kind: str
    seconds: float
    answer: bytes  # the first bytes received (a status line), b"" when closed silently


class Tricklers:
    """Slow connections sending a byte per `interval`, driven by one thread until `stop()`.

    Every connection the server ends is recorded in `cuts`; with `reconnect` it is replaced
    by a new one of its kind. Every wait is bounded: connects time out after 5 s, `stop()`
    joins the thread for at most 10 s and closes every socket.
    """

    def __init__(self, port: int, requests: list[tuple[str, bytes, bytes]], interval: float = 1.0,
                 reconnect: bool = True):
        self.port, self.requests, self.interval, self.reconnect = port, requests, interval, reconnect
        self.cuts: list[Cut] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name="tricklers", daemon=True)

    def start(self) -> Tricklers:
        for kind, first, rest in self.requests:
            self._open(kind, first, rest)
        self._thread.start()
        return self

    def open_count(self) -> int:
        return len(self._selector.get_map())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def __enter__(self) -> Tricklers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _open(self, kind: str, first: bytes, rest: bytes) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(first)
        except OSError as exc:
            self.errors.append(f"{kind}: connect: {exc!r}")
            return
        sock.setblocking(False)
        slow = _Slow(kind, rest, sock, time.monotonic())
        self._selector.register(sock, selectors.EVENT_READ, slow)

    def _end(self, slow: _Slow) -> None:
        self.cuts.append(Cut(slow.kind, time.monotonic() - slow.opened, bytes(slow.received[:64])))
        self._selector.unregister(slow.sock)
        slow.sock.close()
        if self.reconnect and not self._stop.is_set():
            first, rest = next((f, r) for k, f, r in self.requests if k == slow.kind)
            self._open(slow.kind, first, rest)

    def _run(self) -> None:
        next_tick = time.monotonic() + self.interval
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_tick:
                next_tick += self.interval
                for key in list(self._selector.get_map().values()):
                    self._trickle(key.data)
            for key, _ in self._selector.select(timeout=max(0.0, min(next_tick - now, 0.1))):
                slow = key.data
                try:
                    data = slow.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    slow.received += data
                else:
                    self._end(slow)

    def _trickle(self, slow: _Slow) -> None:
        if not slow.rest:
            return  # all sent: waiting for the answer
        try:
            slow.sock.send(slow.rest[:1])
            slow.rest = slow.rest[1:]
        except OSError:
            self._end(slow)


def probe(port: int, seconds: float, key: str = KEY) -> tuple[list[float], int]:
    """Sequential GET /status, one new connection each, for `seconds`: (latencies, failures)."""
    latencies, failures = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
        try:
            conn.request("GET", "/api/whatsapp/status", headers={"X-Api-Key": key})
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
        finally:
            conn.close()
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            failures += 1
    return latencies, failures


def _figures(latencies: list[float], failures: int) -> dict:
    ordered = sorted(latencies)
    ms = lambda v: None if v is None else round(v * 1000, 3)
    return {"count": len(ordered), "failures": failures, "p50_ms": ms(percentile(ordered, 50)),
            "p99_ms": ms(percentile(ordered, 99))}


def slow_clients(ctx: Context) -> dict:
    seconds = 3.0 if ctx.quick else 8.0
    env = {"WHATSAPP_AUTO_INIT": "0", "WHATSAPP_API_KEY": KEY}
    server = ctx.server(ctx.path("slow-clients"), env).start()
    runs: dict[str, list] = {"none": [], "slow": [], "stock": [], "cut_s": []}
    try:
        for run in range(ctx.runs):
            runs["none"].append(_figures(*probe(server.port, seconds)))
            with Tricklers(server.port, slow_requests(server.port, KEY)) as slow:
                runs["slow"].append(_figures(*probe(server.port, max(seconds, 7.0))))  # past the first cuts
                cuts = [c.seconds for c in slow.cuts]
            runs["cut_s"].append(median(cuts))
            ctx.log(f"  slow clients run {run + 1}: /status p99 {runs['none'][-1]['p99_ms']} ms alone, "
                    f"{runs['slow'][-1]['p99_ms']} ms with {CLIENTS} slow clients; {len(cuts)} cut, "
                    f"median after {median(cuts) or 0:.2f} s")
    finally:
        server.stop()
    stock = ctx.server(ctx.path("slow-clients-stock"), env)
    stock.command = [*stock.command, "-k", "gthread"]  # the command line beats gunicorn.conf.py
    stock.start()
    try:
        with Tricklers(stock.port, slow_requests(stock.port, KEY)):
            runs["stock"].append(_figures(*probe(stock.port, seconds)))
    finally:
        stock.stop()
    return {"rows": _rows(runs), "runs": runs}


def _rows(runs: dict) -> list[Row]:
    pick = lambda kind, key: [r[key] for r in runs[kind]]
    failures = sum(pick("slow", "failures"))
    stock = runs["stock"][0]
    answered = 100.0 * stock["count"] / max(1, stock["count"] + stock["failures"])
    return [
        Row(f"/status p50, {CLIENTS} slow clients", "ms", pick("slow", "p50_ms"), "no slow clients p50",
            pick("none", "p50_ms")),
        Row(f"/status p99, {CLIENTS} slow clients", "ms", pick("slow", "p99_ms"), "no slow clients p99",
            pick("none", "p99_ms"), note=f"sequential probes on new connections; failed: {failures}"),
        Row("slow client cut after (median)", "s", runs["cut_s"], note="from connect; the bound is 5 s"),
        Row("stock gthread: /status answered", "%", [answered],
            note=f"same slow clients, {PROBE_TIMEOUT_S:g} s timeout: {stock['count']} of "
                 f"{stock['count'] + stock['failures']} probes answered"),
    ]
