"""`/api/whatsapp/status` under 50 concurrent keep-alive clients: ready, while the outbox
drains at interval 0, browser frozen, and a bare Flask route on the same gunicorn settings
(idle, and during the same drain: the floor of the sending case); plus SIGTERM of that bare
server (the floor of the shutdown figure).

Rounds alternate bare / ready / sending / frozen so that others' load falls on all alike. The
browser is frozen with SIGSTOP on chromedriver and every Chromium process of the server
(so the session's owner thread blocks in its next driver call), and always continued in a
`finally`. The frozen server runs with the product's default driver and page timeouts
(30 s) so that a round ends long before the session gives up on the browser.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from .common import API_KEY, ROOT, Context, Row, ServerProcess, free_port, is_ready, median, watch_status
from .procs import browser_tree

CLIENTS = 50
# The same settings the product's gunicorn.conf.py sets, on the command line.
GUNICORN_FLAGS = ["-k", "gthread", "--workers", "1", "--threads", "8", "--timeout", "60",
                  "--graceful-timeout", "20", "--no-control-socket"]


def bare_server(ctx: Context):
    """gunicorn serving bench/bare_app.py with the product's settings; started and answering."""
    from harness import wait_for

    # gunicorn reads ./gunicorn.conf.py by default (the product's, which starts a session):
    # an empty config file keeps it to the flags given here.
    empty_conf = ctx.workdir / "bare.conf.py"
    empty_conf.write_text("# the bare floor: every setting is on the command line\n")
    port = free_port()
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", str(empty_conf), *GUNICORN_FLAGS,
               "--bind", f"127.0.0.1:{port}", "bench.bare_app:app"]
    folder = ctx.path("bare")
    # The durable floor's SQLite file on the same disk as the servers' data folders.
    server = ctx.server(folder, {"BENCH_BARE_DB": str(folder.parent / f"{folder.name}.sqlite3")},
                        port=port, command=command)
    t0 = time.monotonic()
    server.start(wait=False)

    def answers():
        if server.proc.poll() is not None:
            raise RuntimeError(f"bare gunicorn exited with {server.proc.returncode}:\n{server.log()}")
        with urllib.request.urlopen(server.url + "/bare", timeout=2) as resp:
            return resp.status == 200
    wait_for(answers, timeout=30, interval=0.05, message="the bare gunicorn")
    server.boot_seconds = time.monotonic() - t0  # process start to the first answer
    return server


def load(url: str, seconds: float, body: dict | None = None, keyed: bool = True) -> dict:
    """One bounded load run from a separate process (python -m bench.loadgen): GET, or POST
    of `body` as JSON; with the benchmark's API key unless `keyed` is false."""
    extra = ["--header", f"X-Api-Key: {API_KEY}"] if keyed else []
    if body is not None:
        extra += ["--method", "POST", "--body", json.dumps(body)]
    out = subprocess.run([sys.executable, "-m", "bench.loadgen", url, "--clients", str(CLIENTS),
                          "--seconds", str(seconds), "--max-requests", "50000", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=seconds + 90, check=True)
    return json.loads(out.stdout)


def _signal_all(procs: list[psutil.Process], signum: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(signum)
        except psutil.Error:
            pass


def status_latency(ctx: Context, linked: Path) -> dict:
    """Rounds of bare / ready / sending / frozen on one server (a copy of the linked folder)."""
    from .sessions import copy_data

    seconds = 1.0 if ctx.quick else 2.0  # p99 of a short window is a handful of requests
    results: dict[str, list] = {"bare": [], "bare_sending": [], "ready": [], "sending": [], "frozen": []}
    bare = server = None
    try:
        bare = bare_server(ctx)
        server = ctx.server(copy_data(ctx, linked, "latency"), {
            "WHATSAPP_DRIVER_TIMEOUT_S": "30", "WHATSAPP_PAGE_TIMEOUT_S": "30", "WHATSAPP_SEND_INTERVAL_S": "0"})
        server.start(wait=False)
        watch_status(server, is_ready, time.monotonic())
        for run in range(ctx.runs):
            results["bare"].append(load(bare.url + "/bare", seconds, keyed=False))
            results["ready"].append(load(server.url + "/api/whatsapp/status", seconds))
            sending, bare_sending = _while_sending(server, bare, seconds, run)
            results["sending"].append(sending)
            results["bare_sending"].append(bare_sending)
            tree = browser_tree(server)
            try:
                _signal_all(tree, signal.SIGSTOP)
                frozen = load(server.url + "/api/whatsapp/status", seconds)
                frozen["frozen_processes"] = len(tree)
                results["frozen"].append(frozen)
            finally:
                _signal_all(tree, signal.SIGCONT)
            watch_status(server, is_ready, time.monotonic(), timeout=60)
            last = {kind: values[-1]["p99_ms"] for kind, values in results.items()}
            ctx.log(f"  latency run {run + 1}: p99 bare {last['bare']} ms, ready {last['ready']} ms, "
                    f"sending {last['sending']} ms (bare while sending {last['bare_sending']} ms; "
                    f"{results['sending'][-1]['sent_during']} sent), frozen {last['frozen']} ms")
    finally:
        if server is not None:
            server.stop()
        if bare is not None:
            bare.stop()
    return {"rows": _rows(results), "runs": results}


def _while_sending(server: ServerProcess, bare: ServerProcess, seconds: float, run: int) -> tuple[dict, dict]:
    """`/status` under load while the outbox drains at interval 0 (to two numbers in turn,
    so every send loads a chat: the browser's heaviest work), from the first `message_sent`
    on, and the bare route under the same load in the same drain (the floor: Chromium busy on
    the same cores; which goes first alternates by run). `sent_during` counts the sends that
    completed within each window. What is left is cancelled and the outbox is empty again
    before the next round."""
    from harness import wait_for

    from .events import EventStream, post_message
    from .sessions import number

    queued = 6 + int(8 * seconds)  # more than two windows can send (about 1 a second)
    with EventStream(server) as events:
        ids = [post_message(server, number(7, run, i % 2), f"status load r{run} {i}")[2]["id"]
               for i in range(queued)]
        events.wait(lambda e: e["event"] == "message_sent", 60)  # the drain is under way
        windows = {}
        order = (("bare", bare.url + "/bare", False), ("status", server.url + "/api/whatsapp/status", True))
        for name, url, keyed in (order if run % 2 == 0 else order[::-1]):
            t0 = time.time()
            windows[name] = load(url, seconds, keyed=keyed)
            t1 = time.time()
            windows[name]["sent_during"] = sum(1 for e in events.events
                                               if e["event"] == "message_sent" and t0 <= e["t"] <= t1)
    for message_id in ids:
        server.request("DELETE", f"/api/whatsapp/messages/{message_id}")  # 409 once sending or sent
    wait_for(lambda: server.status()["outbox"]["sending"] == 0, timeout=60, interval=0.05,
             message="the send in flight to end")
    return windows["status"], windows["bare"]


def _rows(results: dict) -> list[Row]:
    """Each case beside its floor: the bare route on an idle machine, except while sending,
    where the floor is the bare route during the same drain (the browser's load on the same
    two cores falls on both; the idle figure is in the note)."""
    def pick(kind, key):
        return [r[key] for r in results[kind]]

    rows = []
    for kind in ("ready", "sending", "frozen"):
        errors = sum(r["errors"] for r in results[kind])  # non-2xx answers and failed requests
        floor, floor_name, extra = "bare", "bare /bare", ""
        if kind == "sending":
            floor, floor_name = "bare_sending", "bare /bare while the server sends"
            idle = median(pick("bare", "p99_ms"))
            extra = (f"; sends completed within each {results[kind][0]['seconds']:.0f}-s window: "
                     f"{', '.join(str(r['sent_during']) for r in results[kind])}; "
                     f"against the idle bare route's p99 ({idle:.3g} ms): {median(pick(kind, 'p99_ms')) / idle:.2f}x")
        rows += [
            Row(f"/status p50, {kind}", "ms", pick(kind, "p50_ms"), f"{floor_name} p50", pick(floor, "p50_ms")),
            Row(f"/status p99, {kind}", "ms", pick(kind, "p99_ms"), f"{floor_name} p99", pick(floor, "p99_ms"),
                target=2.0, note=f"{CLIENTS} keep-alive clients; non-2xx or errors: {errors}{extra}"),
            Row(f"/status req/s, {kind}", "req/s", pick(kind, "rps"), f"{floor_name} req/s", pick(floor, "rps"),
                note="higher is better: ratio < 1 is slower than bare"),
        ]
    return rows


def bare_sigterm(ctx: Context) -> dict:
    """The floor of the shutdown figure: SIGTERM to an idle bare gunicorn, to every process
    gone; also its boot (process start to first answer), the floor of a server's own boot."""
    from .startup import sigterm_to_gone

    sigterm, boot = [], []
    for _ in range(ctx.runs):
        bare = bare_server(ctx)
        try:
            boot.append(bare.boot_seconds)
            sigterm.append(sigterm_to_gone(bare)["all"])
        finally:
            bare.stop()
    return {"sigterm": sigterm, "boot": boot}
