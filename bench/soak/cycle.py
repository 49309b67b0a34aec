"""One cycle of the soak, and the final check.

A cycle runs its plan (faults.plan) on a timeline: each fault injected at its start, healed
after its hold, overlapping ones interleaved. Then, bounded:
- recovery: from the moment the last fault ended to `/status` ready;
- drain: until every message accepted, and every incoming message sent, before the session
  was ready again is through (on the phone side / published), or `drain_s` passes, after
  which what is still missing counts as lost;
- checks (invariants.py, plus the session's own: no QR shown, no logout, the login still
  there, at most one browser on the profile, no answer outside the contract);
- resources of the gunicorn worker (open files, threads, RSS).
The record is a plain dict for the JSON results.
"""
from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from ..common import CLIENT_ID
from .faults import Planned, plan, targets_rng
from .invariants import Tally, file_violations, message_violations, tally
from .server import Server

if TYPE_CHECKING:
    from .runner import Soak

POLL_S = 1.0


def gap(seed: int, cycle: int, between: tuple[float, float]) -> float:
    return round(random.Random(f"{seed}:{cycle}:gap").uniform(*between), 1)


def label(planned: list[Planned]) -> str:
    return " + ".join(f"{p.fault.name} at {p.start:g}s for {p.hold:g}s" if p.hold else f"{p.fault.name} at {p.start:g}s"
                      for p in planned)


def run_cycle(soak: Soak, n: int) -> dict:
    settings = soak.settings
    planned = plan(settings.seed, n, soak.mix, settings.overlap)
    record: dict = {"cycle": n, "label": label(planned), "faults": [], "violations": []}
    soak.log(f"cycle {n}: {record['label']}")
    t0 = time.monotonic()
    if not _run_timeline(soak, planned, targets_rng(settings.seed, n), t0, record):
        soak.log(f"cycle {n}: {record['violations']}")
        return _close(soak, record)
    ended = time.monotonic()
    ready_at = wait_ready(soak, settings.recovery_s)
    if ready_at is None:
        last = (soak.monitor.last or {})
        record["violations"].append(f"not ready within {settings.recovery_s:.0f} s after the faults ended "
                                    f"(status {last.get('status')}, reason {last.get('reason')}, "
                                    f"last error {last.get('lastError')!r})"[:1000])
        soak.log(f"cycle {n}: {record['violations'][-1]}")
        return _close(soak, record)
    record["recovery_s"] = round(ready_at - ended, 2)
    record["left_ready"] = soak.monitor.left_ready(t0)
    noticed = soak.monitor.noticed(t0)
    record["noticed_s"] = None if noticed is None or noticed > ended - t0 + 1 else round(noticed, 1)
    counts, waited = drain(soak, ready_at, settings.drain_s)
    record["drain_s"] = round(waited, 1)
    record["violations"] += message_violations(counts) + file_violations(soak.data_dir, CLIENT_ID, soak.wid)
    record["violations"] += session_violations(soak, t0)
    record["resources"] = resources(soak.server)
    record["messages"] = {"accepted": counts.accepted, "sent_once": counts.sent_once, "refused": dict(counts.refused),
                          "in_sent": counts.in_sent, "in_once": counts.in_once}
    soak.log(f"cycle {n}: ready {record['recovery_s']} s after the faults (left ready {record['left_ready']}x), "
             f"drained in {record['drain_s']} s; out {counts.sent_once}/{counts.accepted} once, in "
             f"{counts.in_once}/{counts.in_sent} once; {'OK' if not record['violations'] else record['violations']}")
    return _close(soak, record)


def _run_timeline(soak: Soak, planned: list[Planned], rng: random.Random, t0: float, record: dict) -> bool:
    """Inject and heal on time; False (with a violation) when an injection or a heal failed
    (what was injected is healed anyway, so the run can go on or clean up)."""
    events = sorted([(p.start, i, 0) for i, p in enumerate(planned)] +
                    [(p.start + p.hold, i, 1) for i, p in enumerate(planned)])
    entries: dict[int, dict] = {}
    for at, i, heal in events:
        time.sleep(max(0.0, t0 + at - time.monotonic()))  # the fault schedule's pacing
        fault = planned[i].fault
        try:
            if not heal:
                what = fault.inject(soak, rng)
                entries[i] = {"fault": fault.name, "at": round(time.monotonic() - t0, 1),
                              "what": what or "skipped: nothing to hit", "injected": what is not None}
                record["faults"].append(entries[i])
                soak.log(f"  {fault.name}: {entries[i]['what']}")
            elif entries[i]["injected"]:
                fault.heal(soak)
                entries[i]["healed_at"] = round(time.monotonic() - t0, 1)
        except Exception as exc:  # the product's failure to stop or start is a finding
            record["violations"].append(f"{fault.name} {'heal' if heal else 'inject'}: {exc!r}"[:2000])
            for j, entry in entries.items():
                if entry["injected"] and "healed_at" not in entry and j != i:
                    try:
                        planned[j].fault.heal(soak)
                    except Exception as again:
                        record["violations"].append(f"{planned[j].fault.name} heal: {again!r}"[:500])
            if not soak.server_up():  # a stop that failed, or a start: one more start, for the rest of the run
                try:
                    soak.start_server()
                except Exception as again:
                    record["violations"].append(f"start after the failure: {again!r}"[:2000])
            return False
    return True


def _close(soak: Soak, record: dict) -> dict:
    record["violations"] = soak.new_only(record["violations"] + soak.take_problems())
    return record


def wait_ready(soak: Soak, timeout: float) -> float | None:
    """The monotonic time `/status` said ready, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = soak.server
        if server is not None:
            try:
                code, body = server.get("/api/whatsapp/status", timeout=5)
                if code == 200 and body["status"] == "ready":
                    return time.monotonic()
            except (OSError, ValueError):
                pass
        time.sleep(0.25)  # polling interval of a bounded wait
    return None


def published_in(server: Server) -> list[dict]:
    """Every incoming message the server lists, all pages."""
    found: list[dict] = []
    after = None
    while True:
        code, body = server.get("/api/whatsapp/messages?direction=in&limit=500" + (f"&after={after}" if after else ""),
                                timeout=10)
        if code != 200:
            raise OSError(f"GET /messages?direction=in answered {code}: {body}")
        found += body["messages"]
        after = body.get("next")
        if not after:
            return found


def drain(soak: Soak, cutoff: float, bound: float) -> tuple[Tally, float]:
    """Wait (bounded) until what was settled or sent in before `cutoff` is through; returns
    the tally with `cutoff` (missing then means lost) and the seconds waited."""
    started = time.monotonic()
    assert soak.incoming is not None
    phone: list[dict] = []
    published: list[dict] = []
    while True:
        outs, ins = soak.outgoing.snapshot(), soak.incoming.snapshot()
        try:
            phone = soak.phone.messages()
            if soak.server is not None:
                published = published_in(soak.server)
        except OSError:
            pass  # the server may be busy restarting its session: asked again
        counts = tally(outs, ins, phone, published, cutoff=float("-inf"))
        # What an earlier check already called lost is not waited for again.
        late = [o for o in counts.pending if o.settled is not None and o.settled < cutoff
                and repr(o.text) not in soak.reported_missing]
        late_in = [i for i in counts.in_pending if i.sent < cutoff and repr(i.text) not in soak.reported_missing]
        if (not late and not late_in) or time.monotonic() - started > bound:
            break
        time.sleep(POLL_S)  # polling interval of a bounded wait
    failed = failed_codes(soak.server, late) if late else {}
    final = tally(outs, ins, phone, published, cutoff, failed)
    soak.reported_missing.update(final.in_missed + [lost.split(" (id ")[0] for lost in final.lost])
    return final, time.monotonic() - started


def failed_codes(server: Server | None, missing: list) -> dict[str, str]:
    """id -> error code of those `missing` messages the API lists as failed."""
    codes: dict[str, str] = {}
    if server is None:
        return codes
    for out in missing:
        try:
            code, body = server.get(f"/api/whatsapp/messages/{out.id}", timeout=5)
        except (OSError, ValueError):
            continue
        if code == 200 and isinstance(body, dict) and body["status"] == "failed":
            codes[out.id] = body["error"]["code"]
    return codes


def session_violations(soak: Soak, since: float) -> list[str]:
    """QR codes shown, logouts, the login gone, two browsers, answers outside the contract."""
    found = []
    soak.qr_shown = soak.phone.phone_state()["qr_issued"] - soak.qr_baseline
    if soak.qr_shown:
        found.append(f"{soak.qr_shown} QR code(s) shown since the link")
    monitor = soak.monitor
    lost = []
    if any(t >= since for t in monitor.qr_seen):
        lost.append("/status said qr")
    if any(t >= since for t in monitor.logged_out_seen):
        lost.append("/status gave reason logged_out")
    body = monitor.last or {}
    if body and not body["session"]["hasSession"]:
        lost.append("the saved login is gone (/status hasSession false)")
    if lost:
        soak.logins_lost += 1
        found += lost
    if monitor.max_mains > 1 and not soak.reported_browsers:
        soak.reported_browsers = True
        found.append(f"{monitor.max_mains} browsers on the profile at once: {monitor.max_mains_detail}")
    unexpected, soak.outgoing.unexpected = soak.outgoing.unexpected, []
    found += [f"an answer outside the contract: {u}" for u in unexpected]
    return found


def resources(server: Server | None) -> dict | None:
    worker = server.worker() if server else None
    if worker is None:
        return None
    try:
        with worker.oneshot():
            return {"pid": worker.pid, "fds": worker.num_fds(), "threads": worker.num_threads(),
                    "rss_mib": round(worker.memory_info().rss / 2**20, 1)}
    except Exception:  # psutil.Error: it went meanwhile
        return None


def final_check(soak: Soak) -> dict:
    """After traffic stopped: ready again, everything through, every invariant."""
    settings = soak.settings
    ready_at = wait_ready(soak, settings.recovery_s)
    violations = [] if ready_at is not None else [f"not ready within {settings.recovery_s:.0f} s at the end"]
    # Not ready: still counted (a short wait), so that the table says what was lost meanwhile.
    counts, waited = drain(soak, time.monotonic(), settings.drain_s if ready_at is not None else 10.0)
    violations += message_violations(counts) + file_violations(soak.data_dir, CLIENT_ID, soak.wid)
    violations += session_violations(soak, soak.started) + soak.take_problems()
    violations = [v for v in violations if v not in soak.reported] + [
        f"(again) {v}" for v in violations if v in soak.reported]  # the end restates what still holds
    soak.log(f"final drain {waited:.1f} s; out {counts.sent_once}/{counts.accepted} once, "
             f"in {counts.in_once}/{counts.in_sent} once")
    return {"violations": violations, "tally": counts.to_json(), "drain_s": round(waited, 1),
            "resources": resources(soak.server)}
