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
- "Open in another window" is taken back with "Use here", once per occurrence. A page that
  is none of the known screens is kept (screenshot and outline) and is `unrecognized_page`.
- While ready, the probe comes first when it is due; sends (at least `send_interval_s`
  apart) and reads of incoming messages take turns between probes.
- Any other failure closes the browser and backs off linearly (`Backoff.linear`) before
  relaunching on the saved login; a fatal kind (`Failure.retry` false, such as the
  unsupported-browser page) goes to `failed` at once. Attempts used up: `failed`, and
  after a temporary failure the machine checks every `failed_retry_s` whether WhatsApp
  answers again and then starts a fresh round by itself. Another owner of the profile is
  waited for at the backoff cap, never given up on.
- Only a phone logout (`ForgetLogin`), `disconnect` or `clear-session` (`DeleteLogin`, also
  when another server or process made it: `Facts.cleared_elsewhere`) ever remove the login;
  nothing else does (a property test holds the machine to it).

The phases' rules live in `watching.Watching` (a browser not ready yet) and `ready.Ready`;
the state they share in `machine_base.MachineBase`.
"""
from __future__ import annotations

from datetime import timedelta

from ..failures import Failure, ProfileLocked
from ..states import Account, Reason, Status
from . import steps as S
from .machine_base import (
    CLOSE_S,
    FORGET_CLOSE_S,
    RECEIVE_GAP_S,
    RECEIVE_POLL_S,
    RESTORE_RETRY_S,
    SHUTDOWN_CLOSE_S,
    Phase,
    Timing,
)
from .ready import Ready
from .watching import Watching

__all__ = ["Machine", "Phase", "Timing"]


class Machine(Watching, Ready):
    """The whole machine: the entry point, the commands and the failures; the phases' rules
    are in `Watching` and `Ready`."""

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
                self._read_at = self._now
                self._receive_at = self._now + (0.0 if unread else RECEIVE_POLL_S)
                self._ready_due()
            case S.PageChanged() if self.phase is Phase.READY:
                # Read soon, not at the next poll; never more often than RECEIVE_GAP_S.
                self._receive_at = min(self._receive_at, max(self._now, self._read_at + RECEIVE_GAP_S))
                self._ready_due()
        if self.phase is not Phase.READY:
            self.ready_since = None
        return self._out

    def bug(self, description: str, facts: S.Facts) -> list[S.Action]:
        """A bug of ours surfaced while running an action: not retried at once (it would likely
        repeat): `failed`, with the description in `last_error`, until someone calls initialize
        or, an unattended server being meant to stay up, a fresh round every
        `failed_retry_s` once WhatsApp answers (a bug that depends on the page may not recur)."""
        self._out, self._facts = [], facts
        self._go_failed(None, f"internal error (a bug, see the log): {description}",
                        retry=self.timing.failed_retry_s > 0)
        return self._out

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

    def _on_reachability(self, reachable: bool) -> None:
        if reachable:
            self._new_round()
        else:
            self._schedule(self.timing.failed_retry_s)

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
