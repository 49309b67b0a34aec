"""Receiving (issue 16): the phone sends (`sim.send`) -> `message_received` on `/events`.

Each message comes from a new sender, so it reaches the account as a chat-list row with an
unread badge (the chat is not open): the server notices the badge, opens the chat, reads
its rows, stores the message and publishes it. The floor is the simulator's own page,
open in the floor script, showing that badge: what the page does before anyone can read it.
The server does more than the floor (opening the chat, reading the row, the store, the
event), so the ratio says how much of that wait is the server's, not a target.
"""
from __future__ import annotations

import math
import time

from .common import Context, Row, ServerProcess, percentile
from .events import EventStream
from .floors import FloorProcess
from .sessions import number

TOTAL = 20           # messages per side over the whole run
RECEIVED_TIMEOUT_S = 30.0


def empty() -> dict:
    return {"received": [], "floor_badge": [], "floor_seen": []}


def per_block(ctx: Context) -> int:
    return math.ceil((TOTAL // 2 if ctx.quick else TOTAL) / ctx.runs)


def product_block(ctx: Context, server: ServerProcess, events: EventStream, run: int, out: dict) -> None:
    for i in range(per_block(ctx)):
        text = f"bench in r{run} {i}"
        since = events.mark()
        t0 = time.time()
        ctx.sim.send(number(5, run, i), text, name=f"Bench In {run}-{i}")
        got = events.wait(lambda e, text=text: e["event"] == "message_received"  # type: ignore[misc]
                          and (e.get("data") or {}).get("text") == text, RECEIVED_TIMEOUT_S, since=since)
        out["received"].append(got["t"] - t0)
    ctx.log(f"  receiving block {run + 1}, server: "
            + "/".join(f"{v * 1000:.0f}" for v in out["received"][-per_block(ctx):]) + " ms")


def floor_block(ctx: Context, floor: FloorProcess, run: int, out: dict) -> None:
    for i in range(per_block(ctx)):
        title = f"Floor In {run}-{i}"
        floor.command("arm", "armed", title=title)
        t0 = time.time()
        ctx.sim.send(number(6, run, i), f"floor in r{run} {i}", name=title)
        badge = floor.command("badge", "badge", title=title, timeout=RECEIVED_TIMEOUT_S)
        out["floor_badge"].append(badge["page_t"] - t0)
        out["floor_seen"].append(badge["t"] - t0)
    ctx.log(f"  receiving block {run + 1}, floor badge: "
            + "/".join(f"{v * 1000:.0f}" for v in out["floor_badge"][-per_block(ctx):]) + " ms")


def wait_all_read(ctx: Context, timeout: float = 60.0) -> None:
    """Until the server has opened every chat the floor left unread (before measuring it)."""
    from harness import wait_for

    wait_for(lambda: all(m.get("read") for m in ctx.sim.inbox()), timeout=timeout, interval=0.1,
             message="every incoming message read by the server")


def rows(out: dict) -> list[Row]:
    def p95(values: list[float]) -> list[float | None]:
        return [percentile(sorted(values), 95)] if values else []
    note = (f"{len(out['received'])} messages, each from a new sender (a badge, not the open chat); "
            "floor: the page's own Date.now() when the row's badge appeared")
    return [
        Row("/_phone/send -> message_received, median", "s", out["received"],
            "the simulator's page showing the badge", out["floor_badge"], note=note),
        Row("/_phone/send -> message_received, p95", "s", p95(out["received"]),
            "the simulator's page showing the badge, p95", p95(out["floor_badge"])),
    ]
