"""Cost does not grow with time: one server through `SENDS` sends, then `RECONNECTS`
reconnects (SIGKILL of the main Chromium process, then ready again), sampled as it goes.

Samples (bench/procs.footprint): PSS of gunicorn (master + worker) and of the browser tree,
the browser's process count, the worker's open files and threads. Each series gets a
least-squares slope (per 100 sends, per 10 reconnects) and a verdict (bench/fit.py): flat,
levels off, or grows. Sends go in batches of `BATCH` to one number, the numbers in turn (a
chat switch per batch, as a notification service with a few busy recipients), at
`WHATSAPP_SEND_INTERVAL_S=0`; a sample follows each batch's last `message_sent`, and one
follows every `EVERY` reconnects, `SETTLE_S` after ready (the page's first seconds are not
its steady state). Short monitor and reconnect settings keep a reconnect to seconds.

The floor of the sends phase: the floor script, on a copy of the profile after the server
stopped, doing the same sends in the same batches (a `/send` URL for each batch's first,
the open chat for the rest), its browser tree's PSS sampled the same way: what the page
itself keeps as a chat fills, beside what the product adds.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .common import Context, Row, median
from .events import EventStream, is_event, post_message
from .fit import fit
from .procs import footprint, tree_pss
from .sessions import copy_data, number, ready_floor, ready_server

GROWTH_ENV = {"WHATSAPP_MONITOR_INTERVAL_S": "0.5", "WHATSAPP_RECONNECT_STEP_S": "0.1",
              "WHATSAPP_RECONNECT_MAX_DELAY_S": "0.5", "WHATSAPP_RECONNECT_MAX_ATTEMPTS": "5"}
SETTLE_S = 1.0
CHATS = 10
SERIES = (("server", "gunicorn PSS", "MiB", 2.0), ("browser", "browser tree PSS", "MiB", 8.0),
          ("browser_uss", "browser tree USS", "MiB", 8.0),
          ("browser_processes", "browser processes", "", 0.5), ("worker_fds", "worker open files", "", 0.5),
          ("worker_threads", "worker threads", "", 0.5))


def sizes(ctx: Context) -> tuple[int, int, int, int]:
    """(sends, batch, reconnects, sample every n reconnects): 1000/50/100/5, --quick 100/10/10/1."""
    return (100, 10, 10, 1) if ctx.quick else (1000, 50, 100, 5)


def growth(ctx: Context, linked: Path) -> dict:
    sends, batch, reconnects, every = sizes(ctx)
    work = copy_data(ctx, linked, "growth")
    server = ready_server(ctx, work, GROWTH_ENV)
    send_samples, reconnect_samples, reconnect_s = [], [], []
    try:
        with EventStream(server) as events:
            send_samples.append({"x": 0, **footprint(server)})
            for b in range(sends // batch):
                accepted = [post_message(server, number(8, 0, b % CHATS), f"growth {b}-{i}")[2] for i in range(batch)]
                for message in accepted:
                    events.wait(is_event("message_sent", message["id"]), 60)
                send_samples.append({"x": (b + 1) * batch, "t": time.time(), **footprint(server)})
                if (b + 1) % max(1, len(range(sends // batch)) // 5) == 0:
                    ctx.log(f"  growth: {(b + 1) * batch} sent, {_brief(send_samples[-1])}")
            reconnect_samples.append({"x": 0, **footprint(server)})
            for r in range(reconnects):
                reconnect_s.append(_reconnect(server, events))
                if (r + 1) % every == 0:
                    time.sleep(SETTLE_S)  # a dwell before sampling, the same after every reconnect
                    reconnect_samples.append({"x": r + 1, "t": time.time(), **footprint(server)})
                if (r + 1) % max(1, reconnects // 5) == 0:
                    ctx.log(f"  growth: {r + 1} reconnects (last {reconnect_s[-1]:.2f} s), "
                            f"{_brief(reconnect_samples[-1])}")
    finally:
        server.stop()
    floor_samples = _floor_sends(ctx, work, sends, batch)
    rows = _rows(send_samples, 100, "per 100 sends", sends, floor_samples)
    rows += _rows(reconnect_samples, 10, "per 10 reconnects", reconnects)
    recon_fit = fit(list(range(len(reconnect_s))), reconnect_s)
    rows.append(Row("reconnect: SIGKILL of Chromium -> ready", "s", reconnect_s,
                    note=f"{len(reconnect_s)} reconnects; slope "
                         f"{(recon_fit.slope * 10 if recon_fit else 0):+.3f} s per 10 reconnects; "
                         "no floor of its own: compare the restart's part after chromedriver's spawn"))
    return {"rows": rows, "send_samples": send_samples, "reconnect_samples": reconnect_samples,
            "reconnect_s": reconnect_s, "floor_send_samples": floor_samples}


def _floor_sends(ctx: Context, work: Path, sends: int, batch: int) -> list[dict]:
    """The floor script through the same sends, its browser tree sampled after each batch."""
    from whatsapp.web.chat import send_url

    floor = ready_floor(ctx, work)
    try:
        assert floor.proc is not None
        samples = [{"x": 0, **tree_pss(floor.proc.pid)}]
        for b in range(sends // batch):
            to = number(9, 0, b % CHATS)
            for i in range(batch):
                text = f"floor growth {b}-{i}"
                if i == 0:
                    floor.command("send_url", "sent", url=send_url(ctx.sim.url, to, text), text=text)
                else:
                    floor.command("send_open", "sent", text=text)
            samples.append({"x": (b + 1) * batch, "t": time.time(), **tree_pss(floor.proc.pid)})
        ctx.log(f"  growth floor: {sends} sent, browser {samples[0]['browser']:.0f} -> "
                f"{samples[-1]['browser']:.0f} MiB")
        return samples
    finally:
        floor.close()


def _brief(sample: dict) -> str:
    return (f"gunicorn {sample['server']:.0f} MiB, browser {sample['browser']:.0f} MiB in "
            f"{sample['browser_processes']} processes, {sample['worker_fds']} files, "
            f"{sample['worker_threads']} threads")


def _reconnect(server, events: EventStream, timeout: float = 60.0) -> float:
    """SIGKILL the main Chromium process; seconds until the session is ready again."""
    from harness import browser_tree

    since = events.mark()
    main = browser_tree(server)["main"]
    if main is None:
        raise RuntimeError("no main Chromium process to kill")
    t0 = time.time()
    os.kill(main, signal.SIGKILL)
    left: Callable[[dict], bool] = lambda e: e["event"] == "status" and e["data"].get("status") != "ready"
    gone = events.wait(left, timeout, since=since)
    back = events.wait(lambda e: e["event"] == "status" and e["data"].get("status") == "ready", timeout,
                       since=events.events.index(gone) + 1)
    return back["t"] - t0


def _rows(samples: list[dict], per: float, label: str, span: float, floor: list[dict] | None = None) -> list[Row]:
    xs = [s["x"] for s in samples]
    rows = []
    for key, name, unit, tolerance in SERIES:
        floor_fit = fit([s["x"] for s in floor], [s.get(key) for s in floor]) if floor and key in floor[0] else None
        ys = [s.get(key) for s in samples]
        line = fit(xs, ys)
        known = [y for y in ys if y is not None]
        per_unit = f"{unit}/{label.removeprefix('per ')}"  # "MiB/100 sends"
        if line is None or not known:
            rows.append(Row(f"{name}, slope {label}", per_unit, [None]))
            continue
        first, last = known[0], known[-1]
        beside: dict = {}
        if key in ("browser", "browser_uss") and floor_fit is not None and floor:
            beside = {"floor_name": "the raw script's browser tree through the same sends (slope)",
                      "floor_samples": [floor_fit.slope * per], "compare": False}
            note_floor = (f"; floor {floor[0][key]:.0f} -> {floor[-1][key]:.0f} MiB, second half "
                          f"{floor_fit.second_half * per:+.2f}, {floor_fit.verdict(span, tolerance)}")
        else:
            note_floor = ""
        rows.append(Row(f"{name}, slope {label}", per_unit, [line.slope * per], judged=line.verdict(span, tolerance),
                        note=f"{first:.1f} -> {last:.1f} over {span:g} (median {median(known):.1f}); second half "
                             f"{line.second_half * per:+.2f} {label}; scatter {line.residual_sd:.2f}{note_floor}",
                        **beside))
    return rows
