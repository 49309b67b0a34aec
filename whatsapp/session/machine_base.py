"""The state every part of the session's machine shares, its constants and its helpers.

`MachineBase` holds the state; `watching.Watching` (a browser not ready yet) and
`ready.Ready` (a ready page) hold the rules of their phases; `machine.Machine` puts them
together with the commands and the failures. Pure: no I/O, no clock.
"""
from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..backoff import Backoff
from ..config import Config
from ..failures import Failure
from ..states import Account, Status
from ..web.page import PageState
from . import steps as S

WATCH_INTERVAL_S = 0.5      # a QR page is read this often (it waits for a person)
FAST_WATCH_S = 0.1          # a page between screens we know: one cheap script per read
SETTLE_WAIT_S = 0.5         # a starting or loading page is read with a wait for its next screen
RESTORE_RETRY_S = 30.0      # a never-linked QR asks the unreachable database again
UNREACHABLE_LIMIT = 2       # failed reachability checks in a row that make an outage
RECEIVE_POLL_S = 1.0        # a ready page is looked at for incoming messages this often
RECEIVE_GAP_S = 0.1         # and, when the page tells of a change, this long after the last read at the soonest
RECHECK_S = 5.0             # the next probe after one failed reachability check
CLOSE_S = 2.0               # closing a broken browser
FORGET_CLOSE_S = 3.0
SHUTDOWN_CLOSE_S = 5.0      # a planned stop: quit, then SIGTERM, then SIGKILL



class Phase(enum.Enum):
    IDLE = "idle"          # no browser: stopped
    LAUNCH = "launch"      # the next step launches the browser
    WATCH = "watch"        # browser up: waiting for the QR, the loading screen, the chats
    READY = "ready"        # chat list shown: probed every monitor interval
    BACKOFF = "backoff"    # waiting before a reconnect attempt
    FAILED = "failed"      # attempts used up, or a fatal failure


@dataclasses.dataclass(frozen=True)
class Timing:
    """The configuration's timings the machine decides by; the defaults are Config's own."""

    startup_timeout_s: float = Config.startup_timeout_s
    sync_timeout_s: float = Config.sync_timeout_s
    page_timeout_s: float = Config.page_timeout_s
    monitor_interval_s: float = Config.monitor_interval_s
    failed_retry_s: float = Config.failed_retry_s
    reconnect_step_s: float = Config.reconnect_step_s
    reconnect_max_delay_s: float = Config.reconnect_max_delay_s
    reconnect_max_attempts: int = Config.reconnect_max_attempts
    send_interval_s: float = Config.send_interval_s

    @classmethod
    def from_config(cls, config: Config) -> Timing:
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})



class MachineBase:
    """The session's state. `phase`, `status` and `due` are for the owner and for tests."""

    def __init__(self, timing: Timing):
        self.timing = timing
        self.phase = Phase.IDLE
        self.status = Status.STOPPED
        self.due: float | None = None       # monotonic time of the next `Due` event
        self.backoff = Backoff.linear(timing.reconnect_step_s, timing.reconnect_max_delay_s,
                                      timing.reconnect_max_attempts)
        self._deadline: float | None = None  # a watched page must move on by then
        self._deadline_s = 0.0              # ... which was this many seconds after it was set
        self.ready_since: float | None = None
        self._owner_due = 0.0               # the next ownership check outside ready
        self._qr_shown = False              # a QR was offered since this launch
        self._qr_accepted = False           # no backup restored the login: offer the QR
        self._conflict_seen = False
        self._tried: frozenset[str] = frozenset()  # backups restored in this episode
        self._fresh_restore_at = 0.0        # never linked, database not asked yet: ask again then
        self._restoring = ""                # "broken" or "fresh" while a RestoreNext runs
        self._unreachable = 0
        self._retry_failed = False          # `failed` after a temporary failure: look again
        self._probe_at = self._send_at = self._receive_at = 0.0  # while ready: when each step is due
        self._read_at = 0.0  # while ready: when the last read of incoming messages ended
        self._sent_last = False             # sends and reads take turns
        self._read_wait = 0.0               # the next page read waits for the screen to move on
        self._page: PageState | None = None
        self._account = Account()
        self._qr: str | None = None
        self._out: list[S.Action] = []
        self._facts = S.Facts(now=0.0, wall=datetime.fromtimestamp(0, UTC))

    # -- small helpers -----------------------------------------------------------------------
    @property
    def _now(self) -> float:
        return self._facts.now

    def _do(self, *actions: S.Action) -> None:
        self._out.extend(actions)

    def _update(self, **changes) -> None:
        if "status" in changes:
            self.status = changes["status"]
        if "qr" in changes:
            self._qr = changes["qr"]
        if "account" in changes:
            self._account = changes["account"]
        self._do(S.Update(changes))

    def _schedule(self, delay: float | None) -> None:
        self.due = None if delay is None else self._now + max(0.0, delay)

    def _enter(self, phase: Phase, delay: float | None) -> None:
        self.phase = phase
        self._schedule(delay)

    if TYPE_CHECKING:  # rules of one phase that the others call (see Machine)
        def _fail(self, failure: Failure) -> None: ...
        def _forget(self, told_phone: bool | None, reply: bool = True) -> None: ...
        def _became_ready(self, page: PageState) -> None: ...
        def _take_over(self) -> None: ...
        def _on_qr(self, page: PageState) -> None: ...
        def _offer_qr(self, page: PageState) -> None: ...
