"""Accepting stays cheap: `POST /messages` under 50 concurrent keep-alive clients, with an
empty outbox and with `QUEUED` messages already waiting, beside bare routes on the same
gunicorn settings (bench/bare_app.py).

The servers run with `WHATSAPP_AUTO_INIT=0`, so nothing is sent and what is accepted stays
queued (in SQLite, in the data folder, as in production), and `WHATSAPP_OUTBOX_MAX` far
above what a run adds, so no answer is a 429. "Empty" is a fresh folder every run; "queued"
a fresh copy of a folder filled once through the product's own store. Rounds alternate
bare / durable / empty / queued so that others' load falls on all alike.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from .common import CLIENT_ID, Context, Row, copy_profile
from .latency import CLIENTS, bare_server, load

QUEUED = 10_000
BODY = {"to": "+1 555 000 2222", "text": "Your order has shipped"}
SERVER_ENV = {"WHATSAPP_AUTO_INIT": "0", "WHATSAPP_OUTBOX_MAX": "10000000"}


def queued_folder(ctx: Context, count: int) -> Path:
    """A data folder whose outbox holds `count` queued messages (written by the product's
    store, each accept committed and fsynced as the API does: about 1.5 ms each here)."""
    from whatsapp.messages import open_store

    folder = ctx.path("queued-template")
    store = open_store(client_id=CLIENT_ID, data_dir=folder)
    try:
        for n in range(count):
            store.accept("15550002222", f"queued {n}", None, None, datetime.now(UTC), count + 1)
    finally:
        store.close()
    return folder


def accepting(ctx: Context) -> dict:
    seconds = 1.0 if ctx.quick else 2.0
    template = queued_folder(ctx, QUEUED)
    results: dict[str, list[dict]] = {"bare": [], "durable": [], "empty": [], "queued": []}
    bare = bare_server(ctx)
    try:
        for run in range(ctx.runs):
            results["bare"].append(load(bare.url + "/bare", seconds, BODY, keyed=False))
            results["durable"].append(load(bare.url + "/bare-durable", seconds, BODY, keyed=False))
            for kind, folder in (("empty", ctx.path("accept-empty")),
                                 ("queued", copy_profile(template, ctx.path("accept-queued")))):
                server = ctx.server(folder, SERVER_ENV)
                try:
                    server.start()
                    before = server.status()["outbox"]["queued"]
                    result = load(server.url + "/api/whatsapp/messages", seconds, BODY)
                    result["queued_before"] = before
                    result["queued_after"] = server.status()["outbox"]["queued"]
                    results[kind].append(result)
                finally:
                    server.stop()
            ctx.log("  accept run {}: p99 bare {} ms, durable {} ms, empty {} ms, {} queued {} ms".format(
                run + 1, results["bare"][-1]["p99_ms"], results["durable"][-1]["p99_ms"],
                results["empty"][-1]["p99_ms"], results["queued"][-1]["queued_before"],
                results["queued"][-1]["p99_ms"]))
    finally:
        bare.stop()
    return {"rows": _rows(results), "runs": results}


def _rows(results: dict) -> list[Row]:
    def pick(kind: str, key: str) -> list:
        return [r[key] for r in results[kind]]

    def refused(kind: str) -> int:
        return sum(r["errors"] for r in results[kind])
    rows = []
    for kind, label in (("empty", "empty outbox"), ("queued", f"{QUEUED:,} queued")):
        added = [r["queued_after"] - r["queued_before"] for r in results[kind]]
        answered = [r["statuses"].get("202", 0) for r in results[kind]]  # warm-up requests included
        stored = ("every 202 stored (the outbox grew by as many)" if added == answered
                  else f"202s {answered} but the outbox grew by {added}")
        rows += [
            Row(f"POST /messages p50, {label}", "ms", pick(kind, "p50_ms"), "bare POST p50", pick("bare", "p50_ms")),
            Row(f"POST /messages p99, {label}", "ms", pick(kind, "p99_ms"), "bare POST (parse JSON, 202) p99",
                pick("bare", "p99_ms"), target=2.0,
                note=f"{CLIENTS} keep-alive clients; non-2xx or errors: {refused(kind)}; accepted per run "
                     f"{min(added)}-{max(added)}: {stored}"),
            Row("  same, against the durable floor (SQLite insert, fsync)", "ms", pick(kind, "p99_ms"),
                "bare POST + SQLite WAL insert, synchronous=FULL, p99", pick("durable", "p99_ms"),
                note="what the on-disk-before-answering promise costs by itself"),
            Row(f"POST /messages req/s, {label}", "req/s", pick(kind, "rps"), "bare POST req/s", pick("bare", "rps"),
                note="higher is better: a ratio under 1 is slower than bare"),
        ]
    return rows
