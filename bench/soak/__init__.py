"""The soak: faults at random, for minutes or hours, while messages move; nothing lost, nothing twice.

`python -m bench.soak [--minutes M | --cycles N] [--seed S] [--faults MIX]` (or `make soak`)
runs the server as the Procfile does against the simulator in a network namespace of its
own, links it once, then loops: messages POSTed and sent in by the phone at a steady rate
while faults are injected at random times (seeded), alone or overlapping; after every cycle
and at the end the invariants are checked; one table is printed and the results are written
to `bench/results/soak-*.json`. Exit status 1 names the cycle, its faults and the seed.

Modules: `partition` (the namespace, its two links, real partitions), `disk` (the tmpfs data
folder and its ballast), `faults` (kinds, mix, each cycle's plan), `server` (stopping it by
signal, its processes), `traffic` (the steady messages both ways, and their ledgers),
`monitor` (/status and the process table, sampled), `invariants` (what must hold), `cycle`
(one cycle and the final check), `runner` (set-up, the loop, clean-up), `report`.
"""
