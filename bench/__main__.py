"""`python -m bench [--quick] [--runs N] [--only NAMES]`: run the benchmarks, print the table,
write `bench/results/<UTC time>.json` and `bench/results/latest.json`.

Exit status 0 when every measurement ran (missed targets are reported, not failed: these
are figures, not tests), 1 when one could not be measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from .common import SYNC_SECONDS, Context, link, product_config
from .report import print_breakdown, print_table

RESULTS = Path(__file__).resolve().parent / "results"
MEASUREMENTS = ("restart", "history", "initialize", "sending", "receiving", "accept", "latency", "growth", "shutdown",
                "backup", "memory", "profile", "slow_clients")


def _versions() -> dict:
    from whatsapp.web.browser import find_chrome, find_chromedriver

    config = product_config()
    found = {"python": platform.python_version()}
    for name, binary in (("chromium", find_chrome(config)), ("chromedriver", find_chromedriver(config))):
        try:
            found[name] = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                         timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            found[name] = repr(exc)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 runs, fewer memory candidates, 100 sends / 10 reconnects for growth (smoke check)")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 5, 2 with --quick)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    only = set(args.only.split(",")) if args.only else set(MEASUREMENTS)
    unknown = only - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")

    started = datetime.now(UTC)
    t_start = time.monotonic()
    load_before = os.getloadavg()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {line}", flush=True)

    rows, details, errors = [], {}, {}
    ctx = Context(runs=runs, quick=args.quick, log=log)
    log(f"simulator on {ctx.sim.url} (sync {SYNC_SECONDS} s); work folder {ctx.workdir}; {runs} runs")

    def step(name: str, fn):
        log(f"{name} ...")
        try:
            result = fn()
        except Exception as exc:  # report it and go on with the other measurements
            errors[name] = "".join(traceback.format_exception_only(exc)).strip()
            details[name] = {"error": errors[name], "traceback": traceback.format_exc()}
            log(f"{name} FAILED: {errors[name][:2000]}")
            return None
        details[name] = {k: v for k, v in result.items() if k != "rows"}
        rows.extend(result.get("rows", []))
        return result

    try:
        linked = ctx.path("linked")
        def link_profile() -> dict:
            link(ctx, linked)
            return {}

        if only - {"slow_clients", "accept"}:  # the others start from a linked profile
            step("link", link_profile)
        from . import accepting, backups, breakdown, growth, history, latency, memory, messaging, startup

        restart = None
        if "restart" in only or "shutdown" in only or "backup" in only:
            restart = step("restart", lambda: startup.restart_to_ready(ctx, linked))
            if restart and "restart" not in only:  # run only for the shutdown or backup figures
                rows = [r for r in rows if r.name.startswith("SIGTERM") or r not in restart["rows"]]
        if "history" in only:
            step("history", lambda: history.restart_with_history(ctx, linked))
        if "initialize" in only:
            step("initialize", lambda: startup.initialize_to_qr(ctx))
        if only & {"sending", "receiving"}:
            parts = only & {"sending", "receiving"}
            step("+".join(sorted(parts)), lambda: messaging.messaging(ctx, linked, parts))
        if "accept" in only:
            step("accept", lambda: accepting.accepting(ctx))
        if "latency" in only:
            step("latency", lambda: latency.status_latency(ctx, linked))
        if "growth" in only:
            step("growth", lambda: growth.growth(ctx, linked))
        if "shutdown" in only and restart:
            floor = step("shutdown", lambda: latency.bare_sigterm(ctx))
            for row in rows:
                if row.name.startswith("SIGTERM") and floor:
                    row.floor_samples = floor["sigterm"]
                    row.floor_name = "SIGTERM to a bare gunicorn"
        if "backup" in only:
            logged = restart["backups_logged"] if restart else []
            step("backup", lambda: backups.backup_and_restore(ctx, linked, logged))
        if "memory" in only:
            step("memory", lambda: memory.memory(ctx, linked))
        if "profile" in only:
            step("profile", lambda: breakdown.profile_start(ctx, linked))
        if "slow_clients" in only:
            from . import slow_clients
            step("slow_clients", lambda: slow_clients.slow_clients(ctx))
    finally:
        ctx.close()

    elapsed = time.monotonic() - t_start
    print()
    print_table(rows)
    print_breakdown(details)
    result = {
        "started": started.isoformat(timespec="seconds"), "seconds": round(elapsed, 1), "runs": runs,
        "quick": args.quick, "sync_seconds": SYNC_SECONDS,
        "host": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                 "note": "shared machine: compare ratios, not absolute figures", **_versions()},
        "rows": [row.to_json() for row in rows], "details": details, "errors": errors,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started:%Y%m%dT%H%M%SZ}.json"
    text = json.dumps(result, indent=1, default=str)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"\nwritten: {path} and {RESULTS / 'latest.json'} ({elapsed:.0f} s; load average "
          f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs)")
    if errors:
        print(f"not measured: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
