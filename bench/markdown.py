"""`python -m bench.markdown [results.json]`: a results file (default `bench/results/latest.json`)
as the Markdown table the README carries, with the run's date, length and load average."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .report import _num

RESULTS = Path(__file__).resolve().parent / "results"


def _target(row: dict) -> str:
    if row["verdict"] in ("flat", "levels off", "grows"):
        return row["verdict"]
    if row["target"] == "-":
        return "-"
    return f"{row['target']} {'✓' if row['verdict'] == 'ok' else row['verdict']}"


def table(results: dict) -> str:
    host = results["host"]
    load = f"load average {host['load_before'][0]:.1f} before, {host['load_after'][0]:.1f} after"
    lines = [f"Run {results['started'][:16].replace('T', ' ')} UTC, {results['seconds']:.0f} s, "
             f"{results['runs']} runs each, {host['cpus']} CPUs, {load}; {host.get('chromium', '')}.", "",
             "| measurement | median | max | floor (same run) | ratio | target |", "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        name = row["name"]
        if name.startswith("  "):
            name = "&nbsp;&nbsp;" + name.strip()
        unit = row["unit"]
        floor = f"{_num(row['floor'], unit)}: {row['floor_name']}" if row["floor"] is not None else ""
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else ""
        lines.append(f"| {name} | {_num(row['median'], unit)} | {_num(row['max'], unit)} | {floor} | {ratio} "
                     f"| {_target(row)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else RESULTS / "latest.json"
    print(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
