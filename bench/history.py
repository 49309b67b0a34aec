"""A restart with a long message history: the server's data folder holds `HISTORY` sent
messages (a few months of a business's traffic), beside the same floor as a plain restart.

SQLite's integrity check at the store's open reads the whole file (here 0.2-0.3 s at
100,000 messages, 1.4 s at 500,000), so the cost of a start must not grow with the history:
the store opens beside the browser's launch, not before it. The row shows it from outside
(Popen -> the log line of `ready`), and the open itself is timed in-process on a copy.
"""
from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from .common import CLIENT_ID, Context, Row, copy_profile, median, paired, profile_of
from .startup import TimedServer, floor_run

HISTORY = 100_000
TEXT = "Your order has shipped; it arrives on Thursday between 9 and 12. Reply STOP to opt out."


def fill_history(data_dir: Path, count: int) -> Path:
    """`count` sent messages in the product's store under `data_dir`: the file and its schema
    made by the product's store, the rows copied in by SQL (doubling, one transaction each)
    rather than accepted one by one (1.5 ms each: 150 s for 100,000)."""
    from whatsapp.messages import Status, open_store
    from whatsapp.messages.sqlite import default_path

    store = open_store(client_id=CLIENT_ID, data_dir=data_dir)
    try:
        first, _ = store.accept("15550002222", TEXT, None, None, datetime.now(UTC), 10)
        store.claim(first.id, datetime.now(UTC))
        store.mark(first.id, Status.SENT, datetime.now(UTC), wa_id="true_15550002222@c.us_BENCH")
    finally:
        store.close()
    path = default_path(data_dir, CLIENT_ID)
    conn = sqlite3.connect(path)
    try:
        have = 1
        while have < count:
            with conn:
                conn.execute(
                    "INSERT INTO whatsapp_messages (client_id, id, direction, status, to_number, text, wa_id,"
                    " attempts, created_ms, sent_ms) SELECT client_id, lower(hex(randomblob(16))), direction,"
                    " status, to_number, text, wa_id, attempts, created_ms, sent_ms FROM whatsapp_messages"
                    " LIMIT ?", (min(have, count - have),))
            have += min(have, count - have)
    finally:
        conn.close()
    return path


def store_open_s(path: Path, runs: int) -> float:
    """Seconds the product's SQLite store takes to open `path` (a copy: opening writes)."""
    from whatsapp.messages.sqlite import SqliteMessageStore

    times = []
    for _ in range(runs):
        t = time.monotonic()
        SqliteMessageStore(path, CLIENT_ID).close()
        times.append(time.monotonic() - t)
    return median(times)


def restart_with_history(ctx: Context, linked: Path) -> dict:
    folder = copy_profile(linked, ctx.path("history"))
    path = fill_history(folder, HISTORY)
    size_mib = path.stat().st_size / 2**20
    copy = ctx.path("history-store")
    copy.mkdir()
    opened = store_open_s(Path(shutil.copy2(path, copy / path.name)), 1 if ctx.quick else 3)
    server_s: list[float] = []
    floor_s: list[float] = []

    def server_run() -> None:
        timed = TimedServer(ctx.server(folder))
        try:
            timed.popen()
            server_s.append(timed.wait_line("ready", timed.t0))
        finally:
            timed.server.stop()

    def floor_one() -> None:
        seen, _ = floor_run(ctx, copy_profile(profile_of(linked), ctx.path("floor-profile")), "#pane-side")
        floor_s.append(seen)

    for run in range(ctx.runs):
        for step in ((server_run, floor_one) if run % 2 == 0 else (floor_one, server_run)):
            step()
        ctx.log(f"  history run {run + 1}: server {server_s[-1]:.2f} s, floor {floor_s[-1]:.2f} s")
    rows = [Row(f"restart -> ready with {HISTORY:,} messages stored", "s", server_s,
                "raw Selenium script as a process, Popen -> #pane-side", floor_s, target=1.1,
                note=f"the store: {size_mib:.0f} MiB, its open {opened:.3f} s in-process (integrity check), "
                     f"beside the launch; {paired(server_s, floor_s)}")]
    return {"rows": rows, "store_mib": size_mib, "store_open_s": opened}
