"""Every decision the session makes, as a pure state machine.

`Machine.handle(event, facts)` takes one event (a command, the clock, the outcome of the
last action) and the facts of the moment, updates the machine and returns the actions to
run, in order (see `steps.py`). It does no I/O, reads no clock and never raises for the
world's faults: a unit test drives it with scripted page states and zero delays.

The rules, in one place:
- A browser is watched from launch: a starting or loading page is read often, a QR page
  less often (it waits for a person), a ready page every monitor interval (the probe).
- The chat list means ready. A QR where a login was expected (the page still holds it, or
  the record says this client id is linked) is a broken login: backups are restored,
  newest first, each once per episode; only when none restores is the QR offered. A QR on
  `post_logout` with the login gone from the page is the phone logging the device out:
  not retried, its backups go, the QR is offered for a new link.
- "Open in another window" is taken back with "Use here", once per occurrence.
- Any other failure closes the browser and backs off linearly (`Backoff.linear`) before
  relaunching on the saved login; a fatal kind (`Failure.retry` false, such as the
  unsupported-browser page) goes to `failed` at once. Attempts used up: `failed`, and
  after a temporary failure the machine checks every `failed_retry_s` whether WhatsApp
  answers again and then starts a fresh round by itself. Another owner of the profile is
  waited for at the backoff cap, never given up on.
- Only a phone logout (`ForgetLogin`), `disconnect` or `clear-session` (`DeleteLogin`) ever
  remove the login; nothing else does (a property test holds the machine to it).
"""
from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime, timedelta

from ..backoff import Backoff
from ..failures import Failure, NetworkDown, PageUnresponsive, ProfileLocked, UnrecognizedPage, UnsupportedBrowser
from ..states import Account, Reason, Status
from ..web.page import PageState, Screen
from . import steps as S

WATCH_INTERVAL_S = 0.5      # a QR page is read this often (it waits for a person)
FAST_WATCH_S = 0.1          # a page between screens we know: one cheap script per read
SETTLE_WAIT_S = 0.5         # a starting or loading page is read with a wait for its next screen
RESTORE_RETRY_S = 30.0      # a never-linked QR asks the unreachable database again
UNREACHABLE_LIMIT = 2       # failed reachability checks in a row that make an outage
RECEIVE_POLL_S = 1.0        # a ready page is looked at for incoming messages this often
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
    startup_timeout_s: float = 90.0
    sync_timeout_s: float = 300.0
    page_timeout_s: float = 30.0
    monitor_interval_s: float = 30.0
    failed_retry_s: float = 300.0
    reconnect_step_s: float = 5.0
    reconnect_max_delay_s: float = 30.0
    reconnect_max_attempts: int = 5
    send_interval_s: float = 2.0

    @classmethod
    def from_config(cls, config) -> Timing:
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


class Machine:
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
        self._sent_last = False             # sends and reads take turns
        self._read_wait = 0.0               # the next page read waits for the screen to move on
        self._page: PageState | None = None
        self._account = Account()
        self._qr: str | None = None
        self._out: list[S.Action] = []
        self._facts = S.Facts(now=0.0, wall=datetime.fromtimestamp(0, UTC))

    # -- the one entry point -----------------------------------------------------------------
    def handle(self, event: S.Event, facts: S.Facts) -> list[S.Action]:
        self._out, self._facts = [], facts
        if facts.cleared_elsewhere and self.phase is not Phase.IDLE and not isinstance(event, S.Asked):
            # disconnect / clear-session reached another server (or process) first: the login
            # running here is no longer the account's; it must not be kept nor restored.
            self._do(S.Log("WARNING", "the login was cleared by another server or process: "
                                      "closing the browser and deleting it here too"))
            self._forget(told_phone=None, reply=False)
            return self._out
        match event:
            case S.Asked(command):
                self._command(command)
            case S.Due():
                self._on_due()
            case S.Launched(seconds, has_session):
                self._on_launched(seconds, has_session)
            case S.PageRead(page) if self.phase is Phase.WATCH:
                self._watch(page)
            case S.Probed(page, reachable) if self.phase is Phase.READY:
                self._probe(page, reachable)
            case S.Broke(failure):
                self._fail(failure)
            case S.Restored(tried, name, closed):
                self._on_restored(tried, name, closed)
            case S.PageLoggedOut(told):
                self._forget(told_phone=told)
            case S.Reachability(reachable) if self.phase is Phase.FAILED:
                self._on_reachability(reachable)
            case S.OutboxChanged() if self.phase is Phase.READY:
                self._ready_due()
            case S.Sent(_, wait_s) if self.phase is Phase.READY:
                self._sent_last = True
                self._send_at = self._now + max(self.timing.send_interval_s, wait_s)
                self._ready_due()
            case S.Received(unread) if self.phase is Phase.READY:
                self._sent_last = False
                self._receive_at = self._now + (0.0 if unread else RECEIVE_POLL_S)
                self._ready_due()
        if self.phase is not Phase.READY:
            self.ready_since = None
        return self._out

    def bug(self, description: str, facts: S.Facts) -> list[S.Action]:
        """A bug of ours surfaced while running an action: never retried (it would repeat);
        `failed` until someone calls initialize, with the description in `last_error`."""
        self._out, self._facts = [], facts
        self._go_failed(None, f"internal error (a bug, see the log): {description}", retry=False)
        return self._out

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

    # -- commands ----------------------------------------------------------------------------
    def _command(self, command: S.Command) -> None:
        if command is S.Command.INITIALIZE:
            if self.phase in (Phase.IDLE, Phase.FAILED):
                self._new_round()
                self._do(S.Reply("Starting the session."))
            elif self.phase is Phase.BACKOFF:
                self._schedule(0)
                self._do(S.Reply("Reconnecting now."))
            else:
                self._do(S.Reply(f"Already {self.status.value}; nothing to do."))
        elif command is S.Command.DISCONNECT:
            self._do(S.LogOutPage())
        elif command is S.Command.CLEAR:
            self._forget(told_phone=None)
        elif command is S.Command.SCREENSHOT:
            if self.phase in (Phase.WATCH, Phase.READY):
                self._do(S.Screenshot())
            else:
                self._do(S.Reply(""))  # no browser runs: nothing to show
        elif command is S.Command.SHUTDOWN:
            ready_for = self._now - self.ready_since if self.ready_since is not None else 0.0
            self._do(S.Close(SHUTDOWN_CLOSE_S), S.CleanShutdown(self._account, ready_for), S.ReleaseLock())
            self._enter(Phase.IDLE, None)
            self._update(status=Status.STOPPED, monitor_active=False, qr=None, next_reconnect_at=None)
            self._do(S.Reply("stopped"))

    def _new_round(self) -> None:
        self.backoff.reset()
        self._tried = frozenset()
        self._enter(Phase.LAUNCH, 0)
        self._update(status=Status.STARTING, reconnect_attempts=0, monitor_active=True,
                     next_reconnect_at=None)

    def _forget(self, told_phone: bool | None, reply: bool = True) -> None:
        """disconnect (told_phone: whether the page logged out) or clear-session (None)."""
        self._do(S.Close(FORGET_CLOSE_S), S.DeleteLogin(), S.ReleaseLock())
        self.backoff.reset()
        self._enter(Phase.IDLE, None)
        self._update(status=Status.STOPPED, reason=None, has_session=False, qr=None, account=Account(),
                     reconnect_attempts=0, next_reconnect_at=None, monitor_active=False, last_error=None)
        if not reply:
            return
        if told_phone is None:
            self._do(S.Reply("Browser closed and the saved login deleted."))
        elif told_phone:
            self._do(S.Reply("Logged out: the phone no longer lists this device; the saved login is deleted."))
        else:
            self._do(S.Reply("The saved login is deleted, but the page could not log out: remove the "
                             "device under Linked devices on the phone."))

    def _enter(self, phase: Phase, delay: float | None) -> None:
        self.phase = phase
        self._schedule(delay)

    # -- the clock ---------------------------------------------------------------------------
    def _on_due(self) -> None:
        if self.due is None or self._now < self.due:
            return
        self.due = None
        if self.phase in (Phase.LAUNCH, Phase.BACKOFF):
            status = Status.RECONNECTING if self.phase is Phase.BACKOFF else Status.STARTING
            self._update(status=status, next_reconnect_at=None, monitor_active=True, qr=None)
            self._do(S.Launch())
        elif self.phase is Phase.WATCH:
            if (self.status is Status.QR and self._facts.restore_unresolved and not self._qr_accepted
                    and self._now >= self._fresh_restore_at):
                self._fresh_restore_at = self._now + RESTORE_RETRY_S
                self._restoring = "fresh"
                self._do(S.RestoreNext(self._tried))
                return
            check_owner = self._now >= self._owner_due
            if check_owner:
                self._owner_due = self._now + self.timing.monitor_interval_s
            self._do(S.ReadPage(check_owner=check_owner, wait_s=self._read_wait))
        elif self.phase is Phase.READY:
            self._ready_step()
        elif self.phase is Phase.FAILED and self._retry_failed:
            self._do(S.CheckReachable())

    def _on_launched(self, seconds: float, has_session: bool) -> None:
        self._qr_shown = self._qr_accepted = self._conflict_seen = False
        self._deadline, self._deadline_s = self._now + self.timing.startup_timeout_s, self.timing.startup_timeout_s
        self._owner_due = self._now + self.timing.monitor_interval_s  # just checked by the launch
        self._read_wait = SETTLE_WAIT_S
        self._enter(Phase.WATCH, 0)
        self._update(has_session=has_session)
        self._do(S.Publish("browser_started", {"seconds": round(seconds, 3)}))

    def _on_reachability(self, reachable: bool) -> None:
        if reachable:
            self._new_round()
        else:
            self._schedule(self.timing.failed_retry_s)

    # -- watching a page that is not ready -----------------------------------------------------
    def _watch(self, page: PageState) -> None:
        self._page = page
        if page.screen in (Screen.LOADING, Screen.UNKNOWN):
            # The read itself waits for the next screen: read again at once.
            self._read_wait = SETTLE_WAIT_S
            self._schedule(0)
        else:
            self._read_wait = 0.0
            self._schedule(WATCH_INTERVAL_S if page.screen in (Screen.QR, Screen.QR_EXPIRED) else FAST_WATCH_S)
        if page.screen is Screen.CHATS:
            self._became_ready(page)
        elif page.screen is Screen.LOADING:
            if self.status is not Status.SYNCING:
                self._deadline, self._deadline_s = self._now + self.timing.sync_timeout_s, self.timing.sync_timeout_s
                self._update(status=Status.SYNCING, account=page.account, qr=None)
            elif self._deadline is not None and self._now > self._deadline:
                self._fail(PageUnresponsive(f"still loading the chats after {self.timing.sync_timeout_s:g} s"))
        elif page.screen in (Screen.QR, Screen.QR_EXPIRED):
            self._on_qr(page)
        elif page.screen is Screen.CONFLICT:
            self._take_over()
        elif page.screen is Screen.UNSUPPORTED:
            self._fail(UnsupportedBrowser())
        elif page.screen is Screen.ERROR:
            self._fail(NetworkDown(f"WhatsApp Web could not be loaded ({page.url})"))
        elif self._deadline is not None and self._now > self._deadline:
            # Not slow, not broken: a page we do not know (WhatsApp shipped a new build?).
            # Kept for a person to see; then the usual reconnect policy, the login untouched.
            self._do(S.SaveEvidence())
            self._fail(UnrecognizedPage(f"none of the known WhatsApp Web screens within "
                                        f"{self._deadline_s:g} s ({page.url or 'no URL'})"))

    def _on_qr(self, page: PageState) -> None:
        if page.post_logout and not page.stored_login:
            if self._facts.expects_login or self.status in (Status.READY, Status.SYNCING):
                return self._logged_out(page)
        elif (not self._qr_shown and not self._qr_accepted
              and (page.stored_login or self._facts.expects_login)):
            self._restoring = "broken"
            return self._do(S.RestoreNext(self._tried))
        self._offer_qr(page)

    def _offer_qr(self, page: PageState) -> None:
        self._qr_shown = True
        self._deadline = None  # a QR waits for a person, for as long as it takes
        if page.screen is Screen.QR_EXPIRED and self._facts.qr_wanted and not page.offline:
            self._do(S.ClickReload())
        previous = self._qr
        # A QR with last-wid-md still stored is a broken saved login, not an absent one.
        self._update(status=Status.QR, qr=page.qr, account=Account(), has_session=page.stored_login)
        if page.qr and page.qr != previous:
            self._do(S.Publish("qr", {"qr": page.qr}))

    def _on_restored(self, tried: frozenset[str], name: str | None, closed: bool) -> None:
        why, self._restoring = self._restoring, ""
        self._tried = tried
        if name is None and closed:
            # Every candidate failed after the browser was closed for the first: relaunch;
            # the next QR finds nothing left to try and is offered.
            self._enter(Phase.LAUNCH, 0)
            return
        if name is not None:  # the executor closed the browser and put the backup in place
            if why == "broken":
                self._update(reason=Reason.AUTH_FAILED, status=Status.STARTING, qr=None)
            else:
                self._update(status=Status.STARTING, qr=None)
            self._enter(Phase.LAUNCH, 0)
            return
        if why == "broken":
            self._qr_accepted = True
            self._update(reason=Reason.AUTH_FAILED,
                         last_error="the saved login did not open and no backup restored it")
            if tried:
                self._do(S.Publish("restore_failed", {"reason": Reason.AUTH_FAILED.value}))
        if self._page is not None and self.phase is Phase.WATCH:
            self._offer_qr(self._page)
        self._schedule(0)

    def _logged_out(self, page: PageState) -> None:
        phone = self._account.phone
        self._do(S.Log("WARNING", "the phone removed this device: the login is gone, offering a new QR"))
        self._do(S.ForgetLogin())
        self.backoff.reset()
        self._qr_shown = True
        self._deadline = None
        self.phase = Phase.WATCH
        self._update(status=Status.QR, reason=Reason.LOGGED_OUT, has_session=False, qr=page.qr,
                     account=Account(), reconnect_attempts=0)
        self._do(S.Publish("logged_out", {"phone": phone}))
        if page.qr:
            self._do(S.Publish("qr", {"qr": page.qr}))

    def _take_over(self) -> None:
        if self._conflict_seen:
            return
        self._conflict_seen = True
        self._do(S.Log("WARNING", "WhatsApp is open in another window: taking the session back (Use here)"))
        self._update(reason=Reason.CONFLICT)
        self._do(S.UseHere())
        self._schedule(0)

    def _became_ready(self, page: PageState) -> None:
        restored = not self._qr_shown
        self.backoff.reset()
        self._tried = frozenset()
        self._conflict_seen = False
        self._unreachable = 0
        self.ready_since = self._now
        self.phase = Phase.READY
        self._probe_at = self._now + min(self.timing.monitor_interval_s, max(0.0, self._facts.backup_in))
        self._send_at = self._receive_at = self._now
        self._ready_due()
        # The record first, so that /status shows both together.
        self._do(S.MarkReady(page.account, linked_now=not restored))
        self._update(status=Status.READY, account=page.account, has_session=True, qr=None,
                     reconnect_attempts=0, next_reconnect_at=None, last_ready_at=self._facts.wall,
                     monitor_active=True)
        self._do(S.Publish("ready", {"restored": restored, "phone": page.account.phone,
                                     "pushname": page.account.pushname}))

    # -- a ready page ----------------------------------------------------------------------------
    def _ready_step(self) -> None:
        """The health probe when it is due (it never waits behind more than one other step),
        else a send or a read of incoming messages, taking turns when both are due."""
        now = self._now
        if now >= self._probe_at:
            self._do(S.Probe())
            return
        send = self._facts.outbox_waiting and now >= self._send_at
        receive = self._facts.receiving and now >= self._receive_at
        if send and (not receive or not self._sent_last):
            self._do(S.SendNext())
        elif receive:
            self._do(S.ReadIncoming(open_unread=True))
        else:
            self._ready_due()

    def _ready_due(self) -> None:
        due = self._probe_at
        if self._facts.outbox_waiting:
            due = min(due, self._send_at)
        if self._facts.receiving:
            due = min(due, self._receive_at)
        self.due = max(due, self._now)

    def _probe(self, page: PageState, reachable: bool | None) -> None:
        self._page = page
        interval = self.timing.monitor_interval_s
        if page.screen is Screen.CHATS:
            self._conflict_seen = False
            if reachable is False:
                self._unreachable += 1
                if self._unreachable >= UNREACHABLE_LIMIT:
                    return self._fail(NetworkDown(f"WhatsApp Web did not answer {self._unreachable} checks in a row"))
                self._probe_at = self._now + min(interval, RECHECK_S)
                return self._ready_due()
            self._unreachable = 0
            if self._facts.backup_in <= 0:
                # Only now: the probe has just confirmed the page shows a working session.
                self._do(S.Backup(self._account))
                self._probe_at = self._now + interval
            else:
                self._probe_at = self._now + min(interval, self._facts.backup_in)
            return self._ready_due()
        self._schedule(interval)
        if page.screen is Screen.CONFLICT:
            self._take_over()
        elif page.screen in (Screen.QR, Screen.QR_EXPIRED):
            self.phase = Phase.WATCH
            self._on_qr(page)
        elif page.screen is Screen.LOADING:
            self.phase = Phase.WATCH
            self._deadline, self._deadline_s = self._now + self.timing.sync_timeout_s, self.timing.sync_timeout_s
            self._update(status=Status.SYNCING)
            self._schedule(0)
        elif page.screen is Screen.ERROR:
            self._fail(NetworkDown("WhatsApp Web shows the browser's error page"))
        elif page.screen is Screen.UNSUPPORTED:
            self._fail(UnsupportedBrowser())
        else:
            # Between screens (the page reloading after a phone logout, say): watch it for a
            # bounded while instead of judging a page caught mid-navigation.
            self.phase = Phase.WATCH
            self._deadline, self._deadline_s = self._now + self.timing.page_timeout_s, self.timing.page_timeout_s
            self._schedule(FAST_WATCH_S)

    # -- failures ----------------------------------------------------------------------------
    def _fail(self, failure: Failure) -> None:
        """Close the browser; back off and relaunch on the saved login, or give up."""
        self._restoring = ""
        if not failure.retry:
            return self._go_failed(failure.reason, str(failure), retry=False)
        delay = self.backoff.next_delay()
        if delay is None and isinstance(failure, ProfileLocked):
            # Another server drives the account (a deploy overlapping the old dyno may last
            # minutes): wait for it to let go instead of giving up.
            delay = self.backoff.cap
        if delay is None:
            return self._go_failed(failure.reason, str(failure), retry=self.timing.failed_retry_s > 0)
        self._do(S.Close(CLOSE_S))
        self._enter(Phase.BACKOFF, delay)
        self._update(status=Status.RECONNECTING, reason=failure.reason, last_error=str(failure), qr=None,
                     reconnect_attempts=self.backoff.attempts, monitor_active=True,
                     next_reconnect_at=self._facts.wall + timedelta(seconds=delay))
        self._do(S.Publish("reconnecting", {"attempt": self.backoff.attempts, "delay": delay,
                                            "reason": failure.reason.value}))
        limit = self.backoff.max_attempts
        self._do(S.Log("WARNING", f"session broke ({failure.reason.value}: {failure}); attempt "
                                  f"{self.backoff.attempts} of {limit} in {delay:.1f} s"))

    def _go_failed(self, reason: Reason | None, error: str, retry: bool) -> None:
        self._do(S.Close(CLOSE_S), S.ReleaseLock())
        self._retry_failed = retry
        self._enter(Phase.FAILED, self.timing.failed_retry_s if retry else None)
        self._update(status=Status.FAILED, reason=reason, last_error=error, next_reconnect_at=None,
                     monitor_active=False, qr=None, reconnect_attempts=self.backoff.attempts)
        self._do(S.Publish("failed", {"reason": reason.value if reason else None,
                                      "attempts": self.backoff.attempts}))
        later = (f"checking every {self.timing.failed_retry_s:g} s whether WhatsApp answers again"
                 if retry else "POST /initialize to try again")
        self._do(S.Log("ERROR", f"giving up ({reason.value if reason else 'error'}: {error}); {later}"))
