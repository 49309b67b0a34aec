"""A closed-loop HTTP load generator: N clients, each on one keep-alive connection.

    python -m bench.loadgen http://127.0.0.1:PORT/path --clients 50 --seconds 2 --max-requests 20000 \
        [--method POST --body '{"to": "15550001111", "text": "hi"}'] [--header 'X-Api-Key: ...']

Run as its own process so that its threads do not compete for the benchmark's GIL (which
also serves the simulator). Prints one JSON object: count, errors, seconds, rps, and
latency percentiles in milliseconds of the answers with a 2xx status (others are counted in
`statuses` and `errors`). Every request has a timeout; the run is bounded by `--seconds` and
`--max-requests`. A body is sent as JSON.
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
from urllib.parse import urlsplit

from .common import percentile


def client(host, port, path, barrier, deadline_box, budget, out, timeout, request):
    latencies: list[float] = []
    errors, statuses = 0, {}  # type: int, dict[int, int]
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    method, body, headers = request

    def one():
        nonlocal conn
        t = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            return time.perf_counter() - t, 200 <= resp.status < 300
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            return time.perf_counter() - t, False

    one()  # warm-up: the connection is open before the clock starts
    barrier.wait()
    while time.monotonic() < deadline_box[0] and next(budget) > 0:
        seconds, ok = one()
        if ok:
            latencies.append(seconds)
        else:
            errors += 1
    conn.close()
    out.append((latencies, errors, statuses))


def run(url: str, clients: int, seconds: float, max_requests: int, timeout: float = 10.0,
        method: str = "GET", body: str | None = None, headers: dict[str, str] | None = None) -> dict:
    parts = urlsplit(url)
    headers = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = (method, body.encode() if body is not None else None, headers)
    deadline_box = [0.0]
    remaining = itertools.count(max_requests, -1)  # next() is atomic enough under the GIL
    out: list = []
    started = []

    def on_barrier():
        started.append(time.monotonic())
        deadline_box[0] = started[0] + seconds

    barrier = threading.Barrier(clients + 1, action=on_barrier)
    threads = [threading.Thread(target=client, daemon=True,
                                args=(parts.hostname, parts.port, parts.path or "/", barrier, deadline_box,
                                      remaining, out, timeout, request))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)
    for thread in threads:
        thread.join(seconds + timeout + 5)
    elapsed = time.monotonic() - started[0]
    latencies = sorted(x for lat, _, _ in out for x in lat)
    statuses: dict = {}
    for _, _, st in out:
        for code, n in st.items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    ms = lambda v: None if v is None else round(v * 1000, 3)
    return {"count": len(latencies), "errors": sum(e for _, e, _ in out), "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1) if elapsed else None,
            "p50_ms": ms(percentile(latencies, 50)), "p90_ms": ms(percentile(latencies, 90)),
            "p99_ms": ms(percentile(latencies, 99)), "max_ms": ms(latencies[-1] if latencies else None),
            "statuses": statuses, "clients_finished": len(out)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--max-requests", type=int, default=20000)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", help="a JSON body (Content-Type: application/json)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args()
    headers: dict[str, str] = {}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    print(json.dumps(run(args.url, args.clients, args.seconds, args.max_requests, method=args.method,
                         body=args.body, headers=headers)))


if __name__ == "__main__":
    main()
