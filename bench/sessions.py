"""Ready sessions for the messaging figures: a copy of the linked data folder, a server on it
settled in `ready`, and the floor script on a copy of its profile.

The server and the floor are never up at the same time: both are the same linked device
(a copy of one profile), and two open pages of one device are a conflict to WhatsApp (and to
the simulator). So the messaging figures alternate blocks: a server, then a floor, and so on.
"""
from __future__ import annotations

import time
from pathlib import Path

from .common import Context, ServerProcess, copy_profile, is_ready, profile_of, watch_status
from .floors import FloorProcess

# Sending as fast as the page allows, and chromedriver's log at the product's default (at
# "info" it writes every command: a cost the product does not have in production).
MESSAGING_ENV = {"WHATSAPP_SEND_INTERVAL_S": "0", "WHATSAPP_DRIVER_LOG": "warning"}


def copy_data(ctx: Context, linked: Path, name: str) -> Path:
    """A copy of a stopped server's whole data folder (profile, record, backups, store)."""
    return copy_profile(linked, ctx.path(name))


def ready_server(ctx: Context, data_dir: Path, env: dict | None = None, timeout: float = 60.0) -> ServerProcess:
    """A server on `data_dir`, ready. Its first backup comes 6 s after ready and takes about
    10 ms (the log says): not waited for, a figure it falls into is barely touched."""
    server = ctx.server(data_dir, {**MESSAGING_ENV, **(env or {})})
    try:
        server.start(wait=False)
        watch_status(server, is_ready, time.monotonic(), timeout=timeout)
    except BaseException:
        server.stop()
        raise
    return server


def ready_floor(ctx: Context, data_dir: Path) -> FloorProcess:
    """The floor script serving commands on a copy of `data_dir`'s profile, its chat list shown."""
    floor = FloorProcess(ctx, copy_profile(profile_of(data_dir), ctx.path("floor-profile")),
                         wait="#pane-side", serve=True, log_level="WARNING")
    try:
        floor.start()
        floor.event("seen")
    except BaseException:
        floor.close()
        raise
    return floor


def number(part: int, run: int, index: int) -> str:
    """A phone number of its own for each message's chat: 1 555 <part><run><index>, 11 digits."""
    return f"1555{part:01d}{run:03d}{index:03d}"
