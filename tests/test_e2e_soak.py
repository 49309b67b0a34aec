"""A short soak as part of `make test` (issue 19); the long one is `make soak` only.

The soak's own runner (bench/soak) with a fixed seed and a few cycles of the faults that
matter most: real partitions, a killed and a stopped server, a full data disk, a killed
Chromium, a frozen chromedriver, an outage, some overlapping. Every invariant must hold,
and nothing may be left behind: no network namespace, no mount, no process of the run.
Bounded by the runner's own bounds (each cycle: its faults' hold, then at most
`recovery_s` and `drain_s`). Needs root for the namespace and the tmpfs; skipped with the
reason otherwise.
"""
from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from bench.soak import disk, faults, partition, runner

E2E = True  # the server, Chromium, the simulator in a namespace
SEED = 1919
CYCLES = 5
MIX = "partition=3,kill-server=2,term-server=1,kill-chromium=1,disk-full=2,outage=1,stop-chromedriver=1"
RECOVERY_S, DRAIN_S = 120.0, 90.0


def of_run(proc: psutil.Process, workdir: Path) -> bool:
    """A process of the run: its command line names the run's own folder."""
    try:
        return str(workdir) in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def test_the_schedule_is_short_and_repeatable():
    """The plan depends on the seed and the cycle only; this one holds faults ~2 minutes."""
    mix = faults.parse_mix(MIX)
    plans = [faults.plan(SEED, n, mix, 0.3) for n in range(1, CYCLES + 1)]
    assert plans == [faults.plan(SEED, n, mix, 0.3) for n in range(1, CYCLES + 1)]
    assert sum(p.start + p.hold for plan in plans for p in plan) < 240


def test_a_short_soak_keeps_every_promise_and_leaves_nothing_behind():
    # Only this run's leftovers count: another soak may run beside it, or one killed mid-way
    # (its teardown never ran) may have left its own on this machine.
    lines: list[str] = []
    settings = runner.Settings(cycles=CYCLES, seed=SEED, faults=MIX, recovery_s=RECOVERY_S, drain_s=DRAIN_S,
                               require_isolation=True, keep_logs=False, log=lines.append)
    try:
        result = runner.run(settings)
    except partition.Unavailable as exc:
        pytest.skip(f"the soak needs network namespaces and a tmpfs (root): {exc}")
    assert result.workdir is not None and result.namespace is not None
    assert result.namespace not in partition.namespaces(), "the network namespace was left behind"
    assert not disk.mounted_under(result.workdir), "the tmpfs was left mounted"
    assert not [p.pid for p in psutil.process_iter() if of_run(p, result.workdir)], "a process was left behind"
    log = "\n".join(lines[-60:])
    assert result.ok, "\n".join(result.violations) + "\n--- soak log ---\n" + log
    figures = result.figures
    assert figures["cycles"] == CYCLES
    assert {"partition", "disk-full"} <= set(figures["injected"]), figures["injected"]
    assert figures["qr_shown"] == 0 and figures["logins_lost"] == 0
    assert figures["sent_twice"] == figures["lost"] == figures["in_twice"] == figures["in_missed"] == 0
    assert figures["accepted"] and figures["sent_once"] + figures["unknown"] >= figures["accepted"] - sum(
        figures["failed_documented"].values())
    assert figures["max_browsers"] == 1 and figures["orphans"] == 0
