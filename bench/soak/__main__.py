"""`python -m bench.soak`: see the package docstring; `--help` for the options.

Exit status: 0 when every invariant held, 1 when one broke (each violation is printed with
its cycle, faults and seed, and how to run the same schedule again), 2 for bad options.
"""
from __future__ import annotations

import argparse
import signal
import sys

from .faults import DEFAULT_MIX, FAULTS, parse_mix
from .report import print_table, write
from .runner import Settings, run


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM like Ctrl+C: the run's `finally` cleans up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, help="run this long (default 10 when --cycles is not given)")
    parser.add_argument("--cycles", type=int, help="run this many cycles")
    parser.add_argument("--seed", type=int, default=19, help="the schedule's seed (default 19)")
    parser.add_argument("--faults", default="default",
                        help=f"the mix, name=weight,... of {', '.join(FAULTS)} (default: {DEFAULT_MIX})")
    parser.add_argument("--overlap", type=float, default=0.3, help="chance of a second, overlapping fault")
    parser.add_argument("--keep-going", action="store_true", help="go on after a broken invariant")
    args = parser.parse_args(argv)
    try:
        parse_mix(args.faults)
    except ValueError as exc:
        parser.error(f"--faults: {exc}")
    if (args.minutes is not None and args.minutes <= 0) or (args.cycles is not None and args.cycles <= 0):
        parser.error("--minutes and --cycles must be greater than 0")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also where a shell started it with SIGINT ignored
    settings = Settings(minutes=args.minutes, cycles=args.cycles, seed=args.seed, faults=args.faults,
                        overlap=args.overlap, keep_going=args.keep_going,
                        log=lambda line: print(line, flush=True))
    result = run(settings)
    print()
    print_table(result)
    path = write(result)
    print(f"\nwritten: {path}")
    if result.ok:
        return 0
    print("\nINVARIANTS BROKEN:", file=sys.stderr)
    for violation in result.violations:
        print(f"  {violation}", file=sys.stderr)
    cycles = max(1, result.figures["cycles"])
    print(f"same schedule again: make soak SOAK_SEED={args.seed} SOAK_CYCLES={cycles} "
          f"SOAK_FAULTS='{args.faults}'", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
