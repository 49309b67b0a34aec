"""The soak's figures, its one table, and the JSON results in bench/results/.

`figures(soak)` gathers everything from a finished (or broken) run; `table(figures)` is the
rows printed, each with the value it must have where there is one; `write(result)` stores
the table, the figures and every cycle's record as `bench/results/soak-<UTC time>.json` and
`soak-latest.json` (beside the benchmarks' files, ignored by git).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common import percentile

if TYPE_CHECKING:
    from .runner import Result, Soak

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _growth(first: dict | None, last: dict | None, key: str) -> str:
    if not first or not last:
        return "-"
    return f"{first[key]} -> {last[key]} ({last[key] - first[key]:+g})"


def figures(soak: Soak) -> dict[str, Any]:
    records = soak.records
    injected = Counter(f["fault"] for r in records for f in r["faults"] if f["injected"])
    skipped = Counter(f["fault"] for r in records for f in r["faults"] if not f["injected"])
    recovered = [r for r in records if "recovery_s" in r]
    slowest = max(recovered, key=lambda r: r["recovery_s"], default=None)
    partitions = [r["noticed_s"] for r in recovered if r.get("noticed_s") is not None
                  and r["faults"] and r["faults"][0]["fault"] == "partition"]
    samples = [r["resources"] for r in records if r.get("resources")]
    by_worker: dict[int, list[dict]] = {}
    for sample in samples:
        by_worker.setdefault(sample["pid"], []).append(sample)
    longest = max(by_worker.values(), key=len, default=[])
    tally = soak.final.get("tally") or {}
    latencies = sorted(soak.monitor.latencies)
    return {
        "seed": soak.settings.seed, "mix": soak.mix, "seconds": round(soak.elapsed(), 1),
        "cycles": len(records), "injected": dict(injected), "skipped": dict(skipped),
        "recoveries": sum(r.get("left_ready", 0) for r in records), "server_starts": soak.restarts,
        "not_recovered": len(records) - len(recovered),
        "slowest_recovery": None if slowest is None else
        {"seconds": slowest["recovery_s"], "cycle": slowest["cycle"], "faults": slowest["label"]},
        "partition_noticed_s": None if not partitions else {"min": min(partitions), "max": max(partitions)},
        "qr_shown": soak.qr_shown, "logins_lost": soak.logins_lost,
        "qr_offered": len(soak.monitor.qr_seen),
        "restores": ((soak.monitor.last or {}).get("record") or {}).get("restoresFromBackup"),
        "accepted": tally.get("accepted"), "sent_once": tally.get("sent_once"),
        "sent_twice": len(tally.get("sent_twice", [])), "lost": len(tally.get("lost", [])),
        "refused": tally.get("refused", {}), "failed_documented": tally.get("failed", {}),
        "unknown": tally.get("unknown"), "sent_unasked": len(tally.get("sent_unasked", [])),
        "in_sent": tally.get("in_sent"), "in_once": tally.get("in_once"),
        "in_twice": len(tally.get("in_twice", [])), "in_missed": len(tally.get("in_missed", [])),
        "max_browsers": soak.monitor.max_mains,
        "orphans": None if "orphans" not in soak.final else len(soak.final["orphans"]),
        "status_p99_ms": None if not latencies else round(1000 * (percentile(latencies, 99) or 0), 1),
        "status_max_ms": None if not latencies else round(1000 * latencies[-1], 1),
        "status_unanswered": soak.monitor.unanswered,
        "slowest_stop_s": round(max(soak.stop_seconds, default=0.0), 2),
        "growth_first_last": {k: _growth(samples[0] if samples else None, samples[-1] if samples else None, k)
                              for k in ("fds", "threads", "rss_mib")},
        "growth_one_worker": {"samples": len(longest),
                              **{k: _growth(longest[0] if longest else None, longest[-1] if longest else None, k)
                                 for k in ("fds", "threads", "rss_mib")}},
        "resources": samples,
    }


def table(f: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, required) rows."""
    def count(value: Any) -> str:
        return "-" if value is None else str(value)

    slowest = f["slowest_recovery"]
    rows = [
        ("cycles (seconds)", f"{f['cycles']} ({f['seconds']:.0f} s, seed {f['seed']})", ""),
        ("faults injected", ", ".join(f"{k} {v}" for k, v in sorted(f["injected"].items())) or "0", ""),
        ("faults skipped (nothing to hit)", ", ".join(f"{k} {v}" for k, v in sorted(f["skipped"].items())) or "0", ""),
        ("recoveries (left ready, came back) / server starts", f"{f['recoveries']} / {f['server_starts']}", ""),
        ("cycles not ready again within the bound", str(f["not_recovered"]), "0"),
        ("slowest recovery (faults ended -> ready)",
         "-" if not slowest else f"{slowest['seconds']:.1f} s (cycle {slowest['cycle']}: {slowest['faults']})", ""),
        ("partition noticed (left ready) after, min / max",
         "-" if not f["partition_noticed_s"] else f"{f['partition_noticed_s']['min']} / "
         f"{f['partition_noticed_s']['max']} s", ""),
        ("QR codes shown after the link (qr_issued)", count(f["qr_shown"]), "0"),
        ("  /status samples saying qr / restores from a backup", f"{f['qr_offered']} / {count(f['restores'])}", ""),
        ("logins lost", count(f["logins_lost"]), "0"),
        ("messages accepted / sent once", f"{count(f['accepted'])} / {count(f['sent_once'])}", "equal*"),
        ("messages sent twice", count(f["sent_twice"]), "0"),
        ("messages lost", count(f["lost"]), "0"),
        ("texts sent that were never accepted", count(f["sent_unasked"]), "0"),
        ("refused, nothing stored (507/429/503)", ", ".join(f"{k}: {v}" for k, v in f["refused"].items()) or "0", ""),
        ("failed for a documented reason", ", ".join(f"{k}: {v}" for k, v in f["failed_documented"].items()) or "0",
         ""),
        ("POSTs never settled (no answer)", count(f["unknown"]), ""),
        ("incoming sent / published once", f"{count(f['in_sent'])} / {count(f['in_once'])}", "equal"),
        ("incoming published twice", count(f["in_twice"]), "0"),
        ("incoming missed", count(f["in_missed"]), "0"),
        ("most browsers on the profile at once", count(f["max_browsers"]), "1"),
        ("orphaned processes after the stop", count(f["orphans"]), "0"),
        ("/status p99 / max (unanswered in 2 s)",
         f"{count(f['status_p99_ms'])} ms / {count(f['status_max_ms'])} ms ({f['status_unanswered']})", ""),
        ("slowest server stop (SIGTERM or SIGKILL)", f"{f['slowest_stop_s']} s", "< 30 s"),
    ]
    for key, name in (("fds", "open files"), ("threads", "threads"), ("rss_mib", "RSS MiB")):
        rows.append((f"worker {name}: first -> last cycle", f["growth_first_last"][key], ""))
        rows.append((f"  same worker, {f['growth_one_worker']['samples']} cycles", f["growth_one_worker"][key], ""))
    return rows


def print_table(result: Result, out: Any = print) -> None:
    rows = [("figure", "value", "required"), *table(result.figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for n, row in enumerate(rows):
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out("  ".join("-" * width for width in widths))
    out("* less those refused, failed for a documented reason, or never settled")
    for note in result.notes:
        out(f"note: {note}")


def write(result: Result) -> Path:
    stamp = datetime.now(UTC)
    body = {"started": stamp.isoformat(timespec="seconds"), "ok": result.ok, "violations": result.violations,
            "settings": {k: v for k, v in dataclasses.asdict(result.settings).items() if k != "log"},
            "table": [list(row) for row in table(result.figures)], "figures": result.figures,
            "cycles": result.cycles, "notes": result.notes,
            "host": {"cpus": os.cpu_count(), "load": os.getloadavg(), "python": platform.python_version()}}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"soak-{stamp:%Y%m%dT%H%M%SZ}.json"
    text = json.dumps(body, indent=1, default=str)
    path.write_text(text)
    (RESULTS / "soak-latest.json").write_text(text)
    return path
