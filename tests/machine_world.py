"""A scripted world for unit tests of the session's state machine (no browser, no clock).

    world = World(expects_login=True, pages=[loading(), chats()])
    world.ask(Command.INITIALIZE)
    world.run_until(lambda: world.machine.status is Status.READY)

`World` plays the owner thread: it feeds the machine events, runs the actions it returns
against scripted outcomes (pages to read, failures to raise, backups to restore), and
records every action. Its clock only moves when the machine waits (`due`), so a test with
a 30 s backoff runs in microseconds.
"""
from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

from whatsapp.failures import Failure
from whatsapp.session import steps as S
from whatsapp.session.machine import Machine, Timing
from whatsapp.states import Account, Status
from whatsapp.web.page import PageState, Screen

ACCOUNT = Account(wid="15550001111:2@c.us", phone="15550001111", pushname="Phone", platform="android")
START = datetime(2026, 12, 1, tzinfo=UTC)


def chats() -> PageState:
    return PageState(Screen.CHATS, stored_login=True, account=ACCOUNT)


def loading() -> PageState:
    return PageState(Screen.LOADING, stored_login=True, account=ACCOUNT, progress="Loading your chats [40%]")


def qr(payload: str = "2@code", *, stored: bool = False, post_logout: bool = False) -> PageState:
    return PageState(Screen.QR, qr=payload, stored_login=stored, post_logout=post_logout)


def qr_expired(offline: bool = False) -> PageState:
    return PageState(Screen.QR_EXPIRED, offline=offline)


def conflict() -> PageState:
    return PageState(Screen.CONFLICT, stored_login=True, account=ACCOUNT)


def screen(kind: Screen) -> PageState:
    return PageState(kind)


class World:
    def __init__(self, *, pages=(), expects_login: bool = False, backups=(), timing: Timing | None = None,
                 reachable: bool = True, qr_wanted: bool = False, backup_in: float = float("inf"),
                 restore_unresolved: bool = False, outbox: int = 0, receiving: bool = False,
                 unread: bool = False):
        self.machine = Machine(timing or Timing(reconnect_step_s=1, reconnect_max_delay_s=3,
                                                reconnect_max_attempts=3, failed_retry_s=60,
                                                monitor_interval_s=30))
        self.pages: deque[PageState | Failure] = deque(pages)
        self.last_page: PageState = screen(Screen.UNKNOWN)
        self.launches: deque[Failure | None] = deque()
        self.backups = list(backups)          # restorable names, newest first
        self.broken_backups: set[str] = set()  # these fail with BackupError
        self.expects_login = expects_login
        self.reachable: deque[bool] | bool = reachable
        self.qr_wanted = qr_wanted
        self.backup_in = backup_in
        self.restore_unresolved = restore_unresolved
        self.outbox = outbox                  # messages left to send
        self.receiving = receiving
        self.unread = unread                  # chats with unread messages keep coming
        self.send_failures: deque[Failure] = deque()
        self.cleared_elsewhere = False
        self.step_cost = 0.5                  # seconds a send or a read takes on the page
        self.probe_times: list[float] = []
        self.now = 0.0
        self.actions: list[S.Action] = []
        self.replies: list[str] = []
        self.statuses: list[Status] = []
        self.browser_open = False
        self.most_browsers = 0
        self.logged_out_told = True

    # -- the machine's facts -------------------------------------------------------------------
    def facts(self) -> S.Facts:
        return S.Facts(now=self.now, wall=START + timedelta(seconds=self.now),
                       expects_login=self.expects_login, qr_wanted=self.qr_wanted,
                       backup_in=self.backup_in, restore_unresolved=self.restore_unresolved,
                       outbox_waiting=self.outbox > 0, receiving=self.receiving,
                       cleared_elsewhere=self.cleared_elsewhere)

    # -- driving ---------------------------------------------------------------------------
    def feed(self, event: S.Event) -> None:
        events = [event]
        while events:
            actions = self.machine.handle(events.pop(0), self.facts())
            for index, action in enumerate(actions):
                if isinstance(action, S.WITH_OUTCOME):
                    assert index == len(actions) - 1, f"{action} is not the last action: {actions}"
                outcome = self.run(action)
                if outcome is not None:
                    events.append(outcome)

    def ask(self, command: S.Command) -> str | None:
        before = len(self.replies)
        self.feed(S.Asked(command))
        return self.replies[-1] if len(self.replies) > before else None

    def tick(self) -> bool:
        """Advance the clock to the machine's next step and take it; False when it waits for nothing."""
        if self.machine.due is None:
            return False
        self.now = max(self.now, self.machine.due)
        self.feed(S.Due())
        return True

    def run_until(self, condition, steps: int = 200) -> None:
        for _ in range(steps):
            if condition():
                return
            if not self.tick():
                break
        assert condition(), f"not reached; status {self.machine.status}, phase {self.machine.phase}, " \
                            f"actions {[type(a).__name__ for a in self.actions[-12:]]}"

    def run_steps(self, steps: int) -> None:
        for _ in range(steps):
            if not self.tick():
                return

    # -- carrying out actions ---------------------------------------------------------------------
    def next_page(self) -> PageState | Failure:
        if self.pages:
            self.last_page = self.pages.popleft() if len(self.pages) > 1 else self.pages[0]
        return self.last_page

    def _reachable(self) -> bool:
        if isinstance(self.reachable, deque):
            return self.reachable.popleft() if len(self.reachable) > 1 else self.reachable[0]
        return self.reachable

    def run(self, action: S.Action) -> S.Event | None:
        self.actions.append(action)
        match action:
            case S.Update(changes):
                if "status" in changes and (not self.statuses or self.statuses[-1] is not changes["status"]):
                    self.statuses.append(changes["status"])
            case S.Reply(message):
                self.replies.append(message)
            case S.Launch():
                failure = self.launches.popleft() if self.launches else None
                if failure is not None:
                    return S.Broke(failure)
                assert not self.browser_open, "a second browser was launched while one runs"
                self.browser_open = True
                self.most_browsers = max(self.most_browsers, 1)
                return S.Launched(seconds=0.5, has_session=self.expects_login)
            case S.ReadPage() | S.Probe():
                assert self.browser_open, f"{action} without a browser"
                if isinstance(action, S.Probe):
                    self.probe_times.append(self.now)
                page = self.next_page()
                if isinstance(page, Failure):
                    return S.Broke(page)
                if isinstance(action, S.ReadPage) and page.screen in (Screen.LOADING, Screen.UNKNOWN):
                    self.now += action.wait_s  # the page did not move on: the read waited it out
                if isinstance(action, S.ReadPage):
                    return S.PageRead(page)
                return S.Probed(page, self._reachable() if page.screen is Screen.CHATS else None)
            case S.RestoreNext(tried):
                tried = set(tried)
                closed = False
                for name in self.backups:
                    if name in tried:
                        continue
                    tried.add(name)
                    self.browser_open, closed = False, True
                    if name in self.broken_backups:
                        continue
                    self.pages = deque([loading(), chats()])  # the restored login opens
                    return S.Restored(frozenset(tried), name, browser_closed=True)
                return S.Restored(frozenset(tried), None, browser_closed=closed)
            case S.SendNext():
                assert self.browser_open and self.machine.status is Status.READY
                self.now += self.step_cost
                if self.send_failures:
                    return S.Broke(self.send_failures.popleft())
                self.outbox = max(0, self.outbox - 1)
                return S.Sent(more=self.outbox > 0)
            case S.ReadIncoming():
                assert self.browser_open and self.machine.status is Status.READY
                self.now += self.step_cost
                return S.Received(unread=self.unread)
            case S.LogOutPage():
                return S.PageLoggedOut(told_phone=self.browser_open and self.logged_out_told)
            case S.CheckReachable():
                return S.Reachability(self._reachable())
            case S.Close():
                self.browser_open = False
            case S.ForgetLogin() | S.DeleteLogin():
                self.expects_login = False
                self.cleared_elsewhere = False
            case S.MarkReady():
                self.expects_login = True
        return None

    # -- what happened ------------------------------------------------------------------------
    def of(self, kind) -> list:
        return [a for a in self.actions if isinstance(a, kind)]

    def published(self, name: str) -> list[dict]:
        return [a.data for a in self.of(S.Publish) if a.name == name]

    def last_update(self, field: str):
        for action in reversed(self.of(S.Update)):
            if field in action.changes:
                return action.changes[field]
        return None
