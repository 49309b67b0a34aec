"""Sending: `POST /messages` -> `sent` beside a raw Selenium script doing the same page steps.

Per block (bench/messaging.py runs the blocks, server and floor alternately):

- a message to a new chat: the server opens it through `/send?phone=&text=`; the floor
  loads the same URL, waits for the compose box to hold the text, clicks the send button and
  waits for the new outgoing row's tick (`sent`);
- then a message to the same number, whose chat is now open (no page load): the floor types
  with `document.execCommand('insertText')`, clicks send and waits for the tick;
- in the first blocks only, a burst of `BURST` messages to `BURST_CHATS` numbers in turn
  (every one a chat switch) at `WHATSAPP_SEND_INTERVAL_S=0`: messages per minute from the
  first accept to the last `sent`; the floor sends the same sequence itself.

The server's figure runs from just before the POST to the arrival of its `message_sent`
event on `/events` (a client's view: accepting, the owner picking it up, the page, the
store, the event); the floor's from writing the command to the script's print of the tick.
"""
from __future__ import annotations

import time
from datetime import datetime

from .common import Context, Row, ServerProcess, median, paired
from .events import EventStream, is_event, post_message
from .floors import FloorProcess
from .sessions import number

PAIRS = 2            # new-chat + open-chat messages per block
BURST, BURST_CHATS = 20, 6   # per burst; 3 bursts a side (1 of 12 with --quick)
SENT_TIMEOUT_S = 60.0


def empty() -> dict:
    return {"url": [], "open": [], "floor_url": [], "floor_open": [], "rate": [], "floor_rate": [],
            "server_side": []}


def burst_runs(ctx: Context) -> int:
    return 1 if ctx.quick else 3


def burst_size(ctx: Context) -> int:
    return 12 if ctx.quick else BURST


def product_block(ctx: Context, server: ServerProcess, events: EventStream, run: int, out: dict) -> None:
    for k in range(PAIRS):
        to = number(1, run, k)
        for kind in ("url", "open"):
            t0, _, message = post_message(server, to, f"bench {kind} r{run} k{k}")
            sent = events.wait(is_event("message_sent", message["id"]), SENT_TIMEOUT_S)
            out[kind].append(sent["t"] - t0)
            out["server_side"].append({"kind": kind, "createdAt": message.get("createdAt"),
                                       "sentAt": sent["data"].get("sentAt")})
    if run < burst_runs(ctx):
        size = burst_size(ctx)
        accepted = [post_message(server, number(2, run, i % BURST_CHATS), f"bench burst r{run} {i}")
                    for i in range(size)]
        first_accept = accepted[0][1]
        last = max(events.wait(is_event("message_sent", m["id"]), SENT_TIMEOUT_S + size)["t"] for _, _, m in accepted)
        out["rate"].append(size / (last - first_accept) * 60.0)
    ctx.log(f"  sending block {run + 1}, server: new chat {_ms(out['url'][-PAIRS:])}, open chat "
            f"{_ms(out['open'][-PAIRS:])}" + (f", {out['rate'][-1]:.0f}/min" if run < burst_runs(ctx) else ""))


def floor_block(ctx: Context, floor: FloorProcess, run: int, out: dict) -> None:
    from whatsapp.web.chat import send_url

    def send_new(to: str, text: str) -> dict:
        return floor.command("send_url", "sent", url=send_url(ctx.sim.url, to, text), text=text)

    for k in range(PAIRS):
        to = number(3, run, k)
        t0 = time.time()
        out["floor_url"].append(send_new(to, f"floor url r{run} k{k}")["t"] - t0)
        t0 = time.time()
        out["floor_open"].append(floor.command("send_open", "sent", text=f"floor open r{run} k{k}")["t"] - t0)
    if run < burst_runs(ctx):
        size = burst_size(ctx)
        t0 = time.time()
        last = t0
        for i in range(size):
            last = send_new(number(4, run, i % BURST_CHATS), f"floor burst r{run} {i}")["t"]
        out["floor_rate"].append(size / (last - t0) * 60.0)
    rate = f", {out['floor_rate'][-1]:.0f}/min" if run < burst_runs(ctx) else ""
    ctx.log(f"  sending block {run + 1}, floor: new chat {_ms(out['floor_url'][-PAIRS:])}, open chat "
            f"{_ms(out['floor_open'][-PAIRS:])}{rate}")


def _ms(values: list[float]) -> str:
    return "/".join(f"{v * 1000:.0f}" for v in values) + " ms"


def rows(out: dict, ctx: Context) -> list[Row]:
    size = burst_size(ctx)
    return [
        Row("POST /messages -> sent, new chat (/send URL)", "s", out["url"],
            "raw script: /send URL, box holds text, click send, tick", out["floor_url"], target=1.2,
            note="server: POST to its message_sent event on /events; floor: command to printed tick; "
                 f"the server's own createdAt -> sentAt: {_server_side(out, 'url')}; "
                 f"{paired(out['url'], out['floor_url'])}"),
        Row("POST /messages -> sent, chat already open", "s", out["open"],
            "raw script: execCommand insertText, click send, tick", out["floor_open"], target=1.2,
            note=f"the server's own createdAt -> sentAt: {_server_side(out, 'open')}; "
                 f"{paired(out['open'], out['floor_open'])}"),
        Row(f"messages per minute, interval 0 ({size} to {BURST_CHATS} numbers in turn)", "/min", out["rate"],
            "raw script sending the same sequence", out["floor_rate"],
            note="higher is better: a ratio under 1 is slower than the floor; every message a chat switch"),
    ]


def _server_side(out: dict, kind: str) -> str:
    """The median of the message objects' own createdAt -> sentAt (the server's clock)."""
    spans = []
    for item in out["server_side"]:
        if item["kind"] != kind:
            continue
        try:
            spans.append((datetime.fromisoformat(item["sentAt"].replace("Z", "+00:00"))
                          - datetime.fromisoformat(item["createdAt"].replace("Z", "+00:00"))).total_seconds())
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    value = median(spans)
    return "-" if value is None else f"{value:.3f} s"
