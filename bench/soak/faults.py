"""The faults the soak injects, the mix they are drawn from, and each cycle's plan.

A fault is injected, held for a drawn number of seconds, then healed: SIGSTOP is followed by
SIGCONT, an outage or a partition ends, the disk is freed, a stopped server is started again
(a redeploy). Instantaneous faults (SIGKILL of a browser process, conflict, flaky login
checks) have nothing to heal. `inject` returns a short description, or None when there was
nothing to hit at that moment (no browser while the server restarts, say): the fault is then
counted as skipped, never as injected.

A cycle's plan depends only on the seed and the cycle's number (`plan(seed, cycle, ...)`),
not on anything that happened before, so a run is repeated exactly with the same seed and
mix, and `--cycles N` stops after the cycle that failed.
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
from collections.abc import Callable
from typing import Protocol

from simulator.testing import Sim

from .disk import SmallDisk
from .partition import Namespace


class World(Protocol):
    """What faults act on; the runner provides it."""

    phone: Sim
    net: Namespace | None
    disk: SmallDisk | None
    stopped: dict[int, str]   # pid -> the target it was stopped as, until SIGCONT

    def tree(self) -> dict: ...
    def server_up(self) -> bool: ...
    def stop_server(self, signum: int) -> float: ...
    def start_server(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Fault:
    """One kind of fault. `hold` is the (min, max) seconds it lasts before `heal`."""

    name: str
    inject: Callable[[World, random.Random], str | None]
    heal: Callable[[World], None] = lambda world: None
    hold: tuple[float, float] = (0.0, 0.0)
    needs: str | None = None   # "net" (a namespace) or "disk" (a tmpfs data folder)


def _signal(target: str, signum: int) -> Callable[[World, random.Random], str | None]:
    def inject(world: World, rng: random.Random) -> str | None:
        tree = world.tree()
        if target == "renderer":
            pid = rng.choice(tree["renderers"]) if tree["renderers"] else None
        else:
            pid = tree[target]
        if pid is None:
            return None
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return None
        if signum == signal.SIGSTOP:
            world.stopped[pid] = target
        return f"{signal.Signals(signum).name} {target} {pid}"
    return inject


def resume(world: World, target: str | None = None) -> None:
    """SIGCONT to the processes stopped as `target` (None: all), those still alive."""
    for pid, stopped_as in list(world.stopped.items()):
        if target is None or stopped_as == target:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            del world.stopped[pid]


def _resume(target: str) -> Callable[[World], None]:
    return lambda world: resume(world, target)


def _server(signum: int) -> Callable[[World, random.Random], str | None]:
    def inject(world: World, rng: random.Random) -> str | None:
        if not world.server_up():
            return None
        seconds = world.stop_server(signum)
        return f"{signal.Signals(signum).name} server (gone in {seconds:.1f} s)"
    return inject


def _outage(world: World, rng: random.Random) -> str:
    world.phone.outage(3600)  # ended by heal, so that the soak, not the simulator, times it
    return "simulator outage"


def _end_outage(world: World) -> None:
    world.phone.outage(0)


def _partition(world: World, rng: random.Random) -> str:
    assert world.net is not None
    world.net.partition()
    return f"partition of {world.net.web_url}"


def _heal_partition(world: World) -> None:
    assert world.net is not None
    world.net.heal()


def _fill(world: World, rng: random.Random) -> str:
    assert world.disk is not None
    return f"disk full ({world.disk.fill() >> 20} MiB of ballast)"


def _free(world: World) -> None:
    assert world.disk is not None
    world.disk.free()


def _flaky(world: World, rng: random.Random) -> str:
    count = rng.randint(1, 4)
    world.phone.flaky(count)  # the next `count` login checks (at the next page load) fail
    return f"next {count} login checks fail"


def _conflict(world: World, rng: random.Random) -> str:
    world.phone.conflict()
    return "open in another window"


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("kill-chromium", _signal("main", signal.SIGKILL)),
    Fault("stop-chromium", _signal("main", signal.SIGSTOP), _resume("main"), (2, 25)),
    Fault("kill-renderer", _signal("renderer", signal.SIGKILL)),
    Fault("stop-renderer", _signal("renderer", signal.SIGSTOP), _resume("renderer"), (2, 25)),
    Fault("kill-chromedriver", _signal("chromedriver", signal.SIGKILL)),
    Fault("stop-chromedriver", _signal("chromedriver", signal.SIGSTOP), _resume("chromedriver"), (2, 25)),
    Fault("kill-server", _server(signal.SIGKILL), lambda world: world.start_server(), (0, 5)),
    Fault("term-server", _server(signal.SIGTERM), lambda world: world.start_server(), (0, 5)),
    Fault("outage", _outage, _end_outage, (3, 40)),
    Fault("partition", _partition, _heal_partition, (5, 60), needs="net"),
    Fault("conflict", _conflict),
    Fault("flaky", _flaky),
    Fault("disk-full", _fill, _free, (5, 40), needs="disk"),
)}

DEFAULT_MIX = ("kill-chromium=2,stop-chromium=1,kill-renderer=1,stop-renderer=1,kill-chromedriver=1,"
               "stop-chromedriver=1,kill-server=2,term-server=2,outage=2,partition=3,conflict=1,flaky=1,"
               "disk-full=2")


def parse_mix(text: str) -> dict[str, float]:
    """`name=weight,name,...` (weight 1 when omitted; "default" is DEFAULT_MIX); ValueError
    naming the bad part."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in (DEFAULT_MIX if text.strip() == "default" else text).split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        try:
            mix[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"weight of {name} must be a number, not {weight!r}") from None
        if mix[name] < 0:
            raise ValueError(f"weight of {name} must not be negative")
    if not any(mix.values()):
        raise ValueError("the fault mix is empty")
    return mix


@dataclasses.dataclass(frozen=True)
class Planned:
    fault: Fault
    start: float   # seconds after the cycle's start
    hold: float


def plan(seed: int, cycle: int, mix: dict[str, float], overlap: float) -> list[Planned]:
    """The faults of one cycle: one, or with probability `overlap` a second one starting
    while (or just after) the first is held."""
    rng = random.Random(f"{seed}:{cycle}:plan")
    names = [name for name, weight in mix.items() if weight > 0]
    weights = [mix[name] for name in names]

    def draw(exclude: str | None = None) -> Fault:
        choices = [(n, w) for n, w in zip(names, weights, strict=True) if n != exclude] or [(names[0], 1.0)]
        return FAULTS[rng.choices([n for n, _ in choices], [w for _, w in choices])[0]]

    first = draw()
    planned = [Planned(first, 0.0, round(rng.uniform(*first.hold), 1))]
    if len(names) > 1 and rng.random() < overlap:
        second = draw(exclude=first.name)
        start = round(rng.uniform(0.0, planned[0].hold + 3.0), 1)
        planned.append(Planned(second, start, round(rng.uniform(*second.hold), 1)))
    return planned


def targets_rng(seed: int, cycle: int) -> random.Random:
    """Draws made while injecting (which renderer, how many flaky checks)."""
    return random.Random(f"{seed}:{cycle}:targets")
