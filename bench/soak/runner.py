"""One soak run: set up, link once, cycles of faults under traffic, final checks, clean up.

`run(settings)` returns a `Result` (also when an invariant broke: `ok` false, `violations`
naming the cycle, its faults and the seed). Set-up: a work folder, the simulator in a
network namespace (partition.py; where namespaces cannot be made, on 127.0.0.1 without the
partition fault, or `Unavailable` with `require_isolation`), the data folder on a small
tmpfs (disk.py; likewise optional), the server as the Procfile starts it, linked once like
a phone would. Everything is undone in `finally`, in reverse order, also on Ctrl+C or a
failure: stopped processes resumed, the link healed and the disk freed, the server stopped
and whatever still runs on the data folder killed, the simulator and the namespace gone,
the tmpfs unmounted; a leftover namespace or mount is itself a violation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import psutil

from simulator.testing import Sim

from ..common import CLIENT_ID, TEST_ENV, free_port
from . import cycle as cycles
from .disk import SmallDisk, mounted_under
from .faults import parse_mix, resume
from .monitor import Monitor
from .partition import Namespace, Unavailable, namespaces
from .server import Server, alive, command_of, on_data_dir, tree_of, wait_gone
from .traffic import Incoming, Outgoing, RemoteSim

SIM_OPTIONS = ["--sync-seconds", "0.3", "--qr-ttl", "20", "--qr-first-ttl", "60", "--phone", "15550001111",
               "--pushname", "Soak Phone"]


@dataclasses.dataclass
class Settings:
    minutes: float | None = None
    cycles: int | None = None            # neither: 10 minutes
    seed: int = 19
    faults: str = "default"
    overlap: float = 0.3                 # chance that a cycle's second fault overlaps the first
    out_interval_s: float = 2.0
    in_interval_s: float = 3.0
    gap_s: tuple[float, float] = (2.0, 8.0)   # normal traffic between cycles
    recovery_s: float = 240.0
    drain_s: float = 150.0
    keep_going: bool = False
    require_isolation: bool = False      # Unavailable instead of a reduced mix without root
    disk_mb: int = 128
    keep_logs: bool = True               # the server's and simulator's logs to bench/results/ (else on failure)
    server_env: dict = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] = print


@dataclasses.dataclass
class Result:
    settings: Settings
    ok: bool
    violations: list[str]
    figures: dict
    cycles: list[dict]
    notes: list[str]
    workdir: Path | None = None          # the run's folder (removed): its processes name it
    namespace: str | None = None         # the run's network namespace (deleted), if it had one


class Soak:
    """The world faults act on (faults.World) and the run's state."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.mix = parse_mix(settings.faults)
        self.started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="whatsapp-soak-"))
        self.data_dir = self.workdir / "data"
        self.net: Namespace | None = None
        self.disk: SmallDisk | None = None
        self.local_sim: Sim | None = None
        self.phone: Sim
        self.server: Server | None = None          # the one the monitor asks (None while halting)
        self.last_server: Server | None = None     # the one traffic posts to
        self.port = free_port()
        self.stopped: dict[int, str] = {}
        self.notes: list[str] = []
        self.violations: list[str] = []
        self.problems: list[str] = []              # found between checks, taken by the next one
        self.reported_browsers = False
        self.reported: set[str] = set()            # violations already named by a cycle
        self.reported_missing: set[str] = set()    # repr of texts already counted lost/missed
        self.qr_shown: int | None = None
        self.logins_lost = 0
        self.records: list[dict] = []
        self.restarts = 0
        self.stop_seconds: list[float] = []
        self.wid = ""
        self.qr_baseline = 0
        self.monitor = Monitor(lambda: self.server, self.data_dir, CLIENT_ID)
        self.outgoing = Outgoing(lambda: self._poster(), settings.seed, settings.out_interval_s)
        self.incoming: Incoming | None = None
        self.final: dict = {}
        self.web_url = ""
        self.namespace: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def log(self, line: str) -> None:
        self.settings.log(f"[{time.monotonic() - self.started:7.1f}s] {line}")

    # -- faults.World ---------------------------------------------------------------------
    def tree(self) -> dict:
        return tree_of(self.data_dir, CLIENT_ID)

    def server_up(self) -> bool:
        return self.server is not None and self.server.up()

    def stop_server(self, signum: int) -> float:
        server, self.server = self.server, None
        assert server is not None
        seconds = server.halt(signum)
        self.stop_seconds.append(seconds)
        if signum == signal.SIGTERM:  # a graceful stop closes the browser: nothing may stay
            left = wait_gone(self.data_dir, 5.0)
            if left:
                self.problems.append(f"{len(left)} process(es) still on the data folder 5 s after "
                                     f"a SIGTERM stop: {[p.pid for p in left]}")
        return seconds

    def start_server(self) -> None:
        env = {"WHATSAPP_WEB_URL": self.web_url, **self.settings.server_env}
        if self.net is not None:  # TEST_ENV's resolver rules, with the namespace's address let through
            env["WHATSAPP_CHROME_ARGS"] = (f'--host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , '
                                           f'EXCLUDE {self.net.address(2)}"')
        server = Server(self.data_dir, {**SERVER_ENV, **env}, port=self.port)
        self.last_server = server
        server.start()
        self.server = server
        self.restarts += 1

    def new_only(self, violations: list[str]) -> list[str]:
        """Those not reported by an earlier cycle (the tallies are cumulative)."""
        fresh = [v for v in violations if v not in self.reported]
        self.reported.update(fresh)
        return fresh

    def take_problems(self) -> list[str]:
        taken, self.problems = self.problems, []
        return taken

    def _poster(self) -> Server:
        assert self.last_server is not None
        return self.last_server

    # -- the run ------------------------------------------------------------------------------
    def setup(self) -> None:
        try:
            self.net = Namespace().create()
            self.net.start_simulator(self.workdir / "simulator.log", SIM_OPTIONS)
            self.web_url, self.phone = self.net.web_url, RemoteSim(self.net.phone_url)
            self.log(f"simulator in namespace {self.net.name}: browser's link {self.net.web_url}, "
                     f"phone's link {self.net.phone_url}")
        except Unavailable as exc:
            self._without("partition", exc)
            from simulator.testing import start
            self.local_sim = start(sync_seconds=0.3, qr_ttl=20, qr_first_ttl=60, phone="15550001111",
                                   pushname="Soak Phone")
            self.web_url, self.phone = self.local_sim.url, self.local_sim
        try:
            self.disk = SmallDisk(self.data_dir, self.settings.disk_mb).mount()
            self.log(f"data folder {self.data_dir}: a {self.settings.disk_mb} MiB tmpfs")
        except Unavailable as exc:
            self._without("disk-full", exc)
        from conftest import link_phone
        from harness import login_on_disk, wait_for

        self.start_server()
        assert self.server is not None
        link_phone(self.server, self.phone)
        ready = self.server.wait_status(lambda s: s["status"] == "ready" and s["record"]["wid"], 30, "the link")
        self.wid = ready["record"]["wid"]
        wait_for(lambda: login_on_disk(self.data_dir, self.wid), 30, message="the login on disk")
        self.server.wait_status(lambda s: s["backups"].get("latest"), 60, "the first backup")
        self.qr_baseline = self.phone.phone_state()["qr_issued"]
        self.log(f"linked {self.wid}; {self.qr_baseline} QR code(s) shown for the link; "
                 f"seed {self.settings.seed}, mix {self.mix}")
        self.incoming = Incoming(self.phone, self.settings.seed, self.settings.in_interval_s)
        for thread in (self.monitor, self.outgoing, self.incoming):
            thread.start()

    def _without(self, fault: str, why: Exception) -> None:
        if self.settings.require_isolation:
            raise why
        if self.mix.pop(fault, None) is not None:
            self.notes.append(f"{fault} left out of the mix: {why}")
            self.log(f"WARNING: {fault} left out of the mix: {why}")
        if not self.mix:
            raise ValueError("nothing left in the fault mix") from why

    def loop(self) -> None:
        settings = self.settings
        minutes = settings.minutes if settings.minutes is not None or settings.cycles else 10.0
        deadline = None if minutes is None else self.started + minutes * 60
        n = 0
        while (settings.cycles is None or n < settings.cycles) and (deadline is None or time.monotonic() < deadline):
            n += 1
            record = cycles.run_cycle(self, n)
            self.records.append(record)
            if record["violations"]:
                self.violations.extend(f"cycle {n} ({record['label']}), seed {settings.seed}: {v}"
                                       for v in record["violations"])
                if not settings.keep_going:
                    return
            time.sleep(cycles.gap(settings.seed, n, settings.gap_s))  # the workload's pacing

    def finish(self) -> None:
        """Traffic stops, the last messages drain, everything is checked, the server stops."""
        assert self.incoming is not None
        for thread in (self.outgoing, self.incoming):
            thread.stop_event.set()
        for thread in (self.outgoing, self.incoming):
            thread.join(self.outgoing.settle_s + 15)
        self.final = cycles.final_check(self)
        self.violations.extend(f"end of the run, seed {self.settings.seed}: {v}" for v in self.final["violations"])
        self.monitor.stop()
        if self.server_up():
            self.stop_server(signal.SIGTERM)
        orphans = wait_gone(self.data_dir, 5.0) + [p for p in alive(self.monitor.pids)
                                                    if p.pid not in {q.pid for q in on_data_dir(self.data_dir)}]
        self.final["orphans"] = [f"{p.pid} {command_of(p)}" for p in orphans]
        if orphans:
            self.violations.append(f"{len(orphans)} orphaned process(es) after the stop: {self.final['orphans'][:3]}")

    def teardown(self) -> None:
        # A second Ctrl+C must not cut the cleanup short (only the main thread handles signals).
        ignoring = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignoring else None
        try:
            self._teardown()
        finally:
            if ignoring:
                signal.signal(signal.SIGINT, previous)

    def _teardown(self) -> None:
        problems = []
        ns_name = self.namespace = self.net.name if self.net is not None and self.net.index is not None else None
        steps: list[tuple[str, Callable[[], object]]] = [
            ("resume stopped processes", lambda: resume(self)),
            ("heal the partition", lambda: self.net.heal() if self.net and self.net.partitioned else None),
            ("free the disk", lambda: self.disk.free() if self.disk and self.disk.full else None),
            ("stop the threads", self._stop_threads),
            ("stop the server", self._kill_server),
            ("stop the simulator and the namespace", lambda: self.net.close() if self.net else None),
            ("stop the local simulator", lambda: self.local_sim.stop() if self.local_sim else None),
            ("unmount the data folder", lambda: self.disk.unmount() if self.disk else None),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # go on: every other step must still run
                problems.append(f"{what}: {exc!r}")
        leftover = [n for n in namespaces() if n == ns_name]
        if leftover or mounted_under(self.workdir):
            problems.append(f"left behind: namespaces {leftover}, mounts {mounted_under(self.workdir)}")
        self._keep_logs()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.violations.extend(f"cleanup: {p}" for p in problems)

    def _stop_threads(self) -> None:
        for thread in (self.outgoing, self.incoming, self.monitor):
            if thread is not None:
                thread.stop_event.set()

    def _kill_server(self) -> None:
        for server in {id(s): s for s in (self.server, self.last_server) if s is not None}.values():
            if server.up():
                with contextlib.suppress(TimeoutError):
                    server.halt(signal.SIGTERM)
        for proc in on_data_dir(self.data_dir):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(on_data_dir(self.data_dir), timeout=5)

    def _keep_logs(self) -> None:
        """The server's and the simulator's logs go next to the results (ignored by git)."""
        if not self.settings.keep_logs and not self.violations:
            return
        from .report import RESULTS
        RESULTS.mkdir(exist_ok=True)
        for log in self.workdir.glob("*.log"):
            shutil.copy(log, RESULTS / f"soak-{self.settings.seed}-{log.name}")


# Short intervals for a soak (README's table): fast detection, backups often enough that
# kills land in the middle of some, and `failed` retried soon.
SERVER_ENV = {**TEST_ENV, "WHATSAPP_SEND_INTERVAL_S": "0", "WHATSAPP_BACKUP_INTERVAL_S": "15",
              "WHATSAPP_FAILED_RETRY_S": "5"}


def run(settings: Settings) -> Result:
    """The whole run; see the module docstring. Raises `Unavailable` only with
    `settings.require_isolation` (after cleaning up)."""
    soak = Soak(settings)
    try:
        try:
            soak.setup()
            soak.loop()
            soak.finish()
        except KeyboardInterrupt:
            soak.violations.append(f"interrupted (Ctrl+C or SIGTERM) after {len(soak.records)} cycle(s), "
                                   f"seed {settings.seed}")
        except Unavailable:
            raise
        except Exception as exc:  # reported as a broken run, after the cleanup below
            soak.log(traceback.format_exc())
            soak.violations.append(f"the soak itself failed in cycle {len(soak.records) + 1}, seed "
                                   f"{settings.seed}: {repr(exc)[-1500:]}")
    finally:
        soak.teardown()
    from .report import figures
    return Result(settings, not soak.violations, soak.violations, figures(soak), soak.records, soak.notes,
                  soak.workdir, soak.namespace)
