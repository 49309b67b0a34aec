"""The simulator in a network namespace of its own, and real partitions of its link.

    host                                    namespace wa-soak-<k>
    wsb<k>h 10.213.<k>.1/30  <-- veth -->   wsb<k>n 10.213.<k>.2/30    the browser's link
    wsc<k>h 10.213.<k>.5/30  <-- veth -->   wsc<k>n 10.213.<k>.6/30    the phone's link

The simulator runs inside (`ip netns exec`) listening on 0.0.0.0, which in the namespace
means its two veth addresses only. The server is pointed at `web_url`
(http://10.213.<k>.2:<port>/); the soak's phone-side calls go to `phone_url` (.6), over the
second pair, which a partition never touches: `sim.outage`, `sim.send` and `sim.messages`
work while the browser's link is cut.

A partition sets the namespace's end of the browser's link down. The host's end keeps its
address and route (its carrier drops, the route stays), and both ends carry permanent
neighbour entries, so the kernel never learns that the peer is gone: packets to it are
dropped silently, connects hang in SYN retries and open sockets stall, as when a real
network path vanishes. Without the permanent entries ARP would fail after ~3 s and every
connect would fail at once with EHOSTUNREACH: a refusal, the easy case. (`tc netem loss
100%` would do as well, but this kernel has no netem, and no tc classifiers.) Detecting the
cut is left to the product's own timeouts.

`k` is the first index whose lock file (/run/wa-soak/<k>.lock) this process can flock, so
two soaks on one machine never share names or addresses; leftovers of a killed run with
that index are removed before use. `close()` (idempotent, also after a failed `create()`)
stops what runs inside, deletes the links and the namespace, and waits until `ip netns
list` no longer shows it. `Unavailable` is raised where namespaces cannot be made.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

LOCK_DIR = Path("/run/wa-soak")
MAX_INDEX = 64
COMMAND_TIMEOUT_S = 10.0
ROOT = Path(__file__).resolve().parents[2]


class Unavailable(Exception):
    """Network namespaces cannot be made here (not root, no `ip`, or the kernel refused)."""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One `ip` command (bounded); raises RuntimeError with its stderr when `check` fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def namespaces() -> list[str]:
    """The names `ip netns list` shows now."""
    return [line.split()[0] for line in run("ip", "netns", "list", check=False).stdout.splitlines() if line.strip()]


class Namespace:
    """One namespace with the simulator in it; see the module docstring."""

    def __init__(self, port: int = 3002):
        self.port = port
        self.index: int | None = None
        self.partitioned = False
        self._lock: IO[str] | None = None
        self._sim: subprocess.Popen[bytes] | None = None
        self._sim_log: IO[bytes] | None = None

    # -- names --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"wa-soak-{self.index}"

    def _ifname(self, link: str, side: str) -> str:
        return f"ws{link}{self.index}{side}"  # at most 15 characters: "wsb63h"

    def address(self, host: int) -> str:
        return f"10.213.{self.index}.{host}"

    @property
    def web_url(self) -> str:
        return f"http://{self.address(2)}:{self.port}/"

    @property
    def phone_url(self) -> str:
        return f"http://{self.address(6)}:{self.port}/"

    # -- setting up ---------------------------------------------------------------------------
    def create(self) -> Namespace:
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root (ip netns add); not root here")
        self._take_index()
        try:
            self._build()
        except BaseException:
            self.close()  # nothing half-made is left behind
            raise
        return self

    def _build(self) -> None:
        self._remove_leftovers()
        try:
            run("ip", "netns", "add", self.name)
        except (RuntimeError, OSError) as exc:
            raise Unavailable(f"ip netns add refused: {exc}") from exc
        self._in("ip", "link", "set", "lo", "up")
        for link, first in (("b", 1), ("c", 5)):
            host_if, ns_if = self._ifname(link, "h"), self._ifname(link, "n")
            run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            run("ip", "link", "set", ns_if, "netns", self.name)
            run("ip", "addr", "add", f"{self.address(first)}/30", "dev", host_if)
            self._in("ip", "addr", "add", f"{self.address(first + 1)}/30", "dev", ns_if)
            run("ip", "link", "set", host_if, "up")
            self._in("ip", "link", "set", ns_if, "up")
            # Permanent neighbours: a cut link must drop packets, not fail ARP (docstring).
            host_mac = Path(f"/sys/class/net/{host_if}/address").read_text().strip()
            ns_mac = self._in("cat", f"/sys/class/net/{ns_if}/address").stdout.strip()
            run("ip", "neigh", "replace", self.address(first + 1), "lladdr", ns_mac, "dev", host_if,
                "nud", "permanent")
            self._in("ip", "neigh", "replace", self.address(first), "lladdr", host_mac, "dev", ns_if,
                     "nud", "permanent")

    def start_simulator(self, log_path: Path, options: list[str], timeout: float = 30.0) -> None:
        """`python -m simulator --host 0.0.0.0` inside; returns once the phone side answers."""
        self._sim_log = open(log_path, "ab")  # noqa: SIM115  (closed in close())
        self._sim = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-m", "simulator", "--host", "0.0.0.0",
             "--port", str(self.port), "--quiet", *options],
            cwd=ROOT, stdout=self._sim_log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.phone_url + "_phone/state", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self._sim.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator in {self.name} did not answer within {timeout:.0f} s "
                                   f"(exit {self._sim.poll()}); see {log_path}")
            time.sleep(0.1)  # polling interval of a bounded wait

    # -- the fault ----------------------------------------------------------------------------
    def partition(self) -> None:
        """Cut the browser's link (packets vanish; see the module docstring)."""
        self._in("ip", "link", "set", self._ifname("b", "n"), "down")
        self.partitioned = True

    def heal(self) -> None:
        self._in("ip", "link", "set", self._ifname("b", "n"), "up")
        self.partitioned = False

    # -- tearing down -------------------------------------------------------------------------
    def close(self) -> None:
        if self.index is None:
            return
        try:
            if self._sim is not None and self._sim.poll() is None:
                self._sim.terminate()
                try:
                    self._sim.wait(5)
                except subprocess.TimeoutExpired:
                    self._sim.kill()
                    self._sim.wait(5)
            self._remove_leftovers()
        finally:
            if self._sim_log is not None:
                self._sim_log.close()
            if self._lock is not None:
                self._lock.close()  # releases the flock
            self.index = None

    def _take_index(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for index in range(MAX_INDEX):
            handle = open(LOCK_DIR / f"{index}.lock", "w")  # noqa: SIM115  (held until close())
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self._lock, self.index = handle, index
            return
        raise Unavailable(f"all {MAX_INDEX} soak namespace indexes are in use")

    def _remove_leftovers(self) -> None:
        """Whatever this index's names hold: processes inside, links, the namespace itself."""
        if self.name in namespaces():
            pids = run("ip", "netns", "pids", self.name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", self.name, check=False)
        for link in ("b", "c"):
            if Path(f"/sys/class/net/{self._ifname(link, 'h')}").exists():
                run("ip", "link", "del", self._ifname(link, "h"), check=False)
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while self.name in namespaces() and time.monotonic() < deadline:
            time.sleep(0.1)  # namespace deletion is asynchronous; bounded
        if self.name in namespaces():
            raise RuntimeError(f"namespace {self.name} is still listed after ip netns del")

    def _in(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.name, *args)

    def __enter__(self) -> Namespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()
