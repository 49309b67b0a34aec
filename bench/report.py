"""Printing the results: the main table, then where the seconds of a start go."""
from __future__ import annotations

from .common import Row, median

COLUMNS = ("measurement", "median", "max", "floor", "ratio", "target", "verdict")


def _num(value, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{text} {unit}".strip()


def print_table(rows: list[Row]) -> None:
    lines = [COLUMNS]
    for row in rows:
        lines.append((row.name, _num(row.median, row.unit), _num(row.max, row.unit),
                      _num(row.floor, row.unit) if row.floor_samples else "-",
                      f"{row.ratio:.2f}x" if row.ratio is not None and row.floor_samples else "-",
                      row.target_text, row.verdict))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(COLUMNS))]
    for n, line in enumerate(lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
    print()
    print("floors and notes:")
    for row in rows:
        parts = [p for p in (row.floor_name if row.floor_samples else "", row.note) if p]
        if parts:
            print(f"  {row.name}: {'; '.join(parts)}")


def _seconds_table(title: str, items: dict) -> None:
    items = {k: v for k, v in items.items() if v is not None}
    if not items:
        return
    print(f"\n{title}")
    width = max(len(k) for k in items)
    for key, value in items.items():
        print(f"  {key.ljust(width)}  {value:7.3f} s")


def _phases_table(title: str, phases: dict) -> None:
    """Rows (server median, floor median, counted in the sum); "-" where a side has no such mark."""
    if not phases:
        return
    print(f"\n{title}")
    width = max(len(k) for k in phases)
    print(f"  {'phase'.ljust(width)}   server    floor     extra")
    totals = [0.0, 0.0]

    def cell(value) -> str:
        return "     -  " if value is None else f"{value:6.3f} s"
    for key, (server, floor, *counted) in phases.items():
        if server is None and floor is None:
            continue
        if server is not None and floor is not None and (counted[0] if counted else True):
            totals = [totals[0] + server, totals[1] + floor]
        extra = "" if server is None or floor is None else f"{server - floor:+6.3f} s"
        print(f"  {key.ljust(width)}  {cell(server)}  {cell(floor)}  {extra}")
    print(f"  {'sum of medians'.ljust(width)}  {totals[0]:6.3f} s  {totals[1]:6.3f} s  {totals[0] - totals[1]:+6.3f} s")


def print_breakdown(details: dict) -> None:
    restart = details.get("restart") or {}
    _phases_table("where the seconds of a restart go (medians from Popen; floor = the raw Selenium script):",
                  restart.get("phases") or {})
    boot = median((details.get("shutdown") or {}).get("boot") or [])
    if boot is not None:
        print(f"  (a bare gunicorn + Flask app boots to its first answer in {boot:.3f} s)")
    _phases_table("where the seconds of a first start -> QR go (medians from Popen):",
                  (details.get("initialize") or {}).get("phases") or {})
    print("  (phases from the server's log, chromedriver's log, the process table and the floor's own\n"
          "   prints; each is a median of its own, so the sum of medians need not equal the median total;\n"
          "   indented lines are parts of the line above and are not summed)")
    profile = details.get("profile") or {}
    if profile.get("imports"):
        _seconds_table("a new server process pays (subprocess timings, median):", profile["imports"])
    if profile.get("launch_steps"):
        _seconds_table("the product's launch path replayed in-process (median):", profile["launch_steps"])
    memory = details.get("memory") or {}
    if memory.get("candidates"):
        print("\nmemory by process kind (MiB PSS):")
        for name, runs in memory["candidates"].items():
            for m in runs[:1]:
                if "by_kind" in m:
                    kinds = ", ".join(f"{k} {v:.0f}" for k, v in m["by_kind"].items())
                    print(f"  {name}: {m['total']:.0f} = {kinds} (alone {m['alone']:.0f}, USS {m['uss']:.0f})")
