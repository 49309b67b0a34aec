"""The messaging figures in alternating blocks: a ready server, then the floor script, on
copies of one linked data folder (bench/sessions.py says why never both at once).

Each block runs the parts asked for (`sending`, `receiving`), the server's through the API
and `/events`, the floor's through the script's commands; which side goes first alternates
between runs, so others' load falls on both alike.
"""
from __future__ import annotations

from pathlib import Path

from . import receiving, sending
from .common import Context
from .events import EventStream
from .sessions import copy_data, ready_floor, ready_server


def messaging(ctx: Context, linked: Path, parts: set[str]) -> dict:
    work = copy_data(ctx, linked, "messaging")
    sent, received = sending.empty(), receiving.empty()

    def server_block(run: int) -> None:
        server = ready_server(ctx, work)
        try:
            receiving.wait_all_read(ctx)  # what the floor left unread is opened first, not timed
            with EventStream(server) as events:
                if "sending" in parts:
                    sending.product_block(ctx, server, events, run, sent)
                if "receiving" in parts:
                    receiving.product_block(ctx, server, events, run, received)
        finally:
            server.stop()

    def floor_block(run: int) -> None:
        floor = ready_floor(ctx, work)
        try:
            if "sending" in parts:
                sending.floor_block(ctx, floor, run, sent)
            if "receiving" in parts:
                receiving.floor_block(ctx, floor, run, received)
        finally:
            floor.close()

    for run in range(ctx.runs):
        for block in ((server_block, floor_block) if run % 2 == 0 else (floor_block, server_block)):
            block(run)
    rows = []
    if "sending" in parts:
        rows += sending.rows(sent, ctx)
    if "receiving" in parts:
        rows += receiving.rows(received)
    return {"rows": rows, "sending": sent, "receiving": received}
