"""The one owner of the browser: a thread, a command queue, and the snapshot `/status` reads.

HTTP handlers never touch Selenium. They read `snapshot()` (an immutable object that only
the owner thread replaces) or `submit()` a command and wait for it with a deadline. The
owner thread's only wait is `queue.get(timeout=...)`, so a command or a shutdown wakes it
at once, also in the middle of a reconnect backoff. It feeds each event to the state
machine (`machine.py`) and runs the actions it returns (`effects.py`).
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time

from ..bus import Bus
from ..config import Config
from ..messages import MessageStore
from ..persistence.keeper import Keeper
from ..states import Snapshot, utcnow
from ..web import version
from . import steps as S
from .effects import Effects
from .machine import Machine, Timing
from .outbox import Outbox

log = logging.getLogger(__name__)

QR_VIEW_WINDOW_S = 120.0    # a QR page fetched this recently means someone is looking
PICKUP_S = 2.0              # a stop command not picked up by then: the owner may be stuck
_POKE = object()            # in the queue: the outbox changed
_PAGE_CHANGED = object()    # in the queue: the page told of a change (web/watch.py)
_OPENED = object()          # in the queue: the message store has opened (Outbox.start)


class ShuttingDown(Exception):
    """The server is stopping; commands are refused."""


class CommandError(Exception):
    def __init__(self, status: int, message: str, error: str = "error"):
        super().__init__(message)
        self.status, self.error = status, error


class _Pending:
    """A submitted command. `picked` and `cancelled` are decided under `lock`: a command
    whose caller gave up (answered 504) is never run later."""

    def __init__(self, command: S.Command):
        self.command = command
        self.lock = threading.Lock()
        self.picked = self.cancelled = False
        self.done = threading.Event()
        self.result: str | None = None
        self.value: bytes | None = None  # SCREENSHOT: the PNG
        self.error: Exception | None = None

    def pick(self) -> bool:
        with self.lock:
            if self.cancelled:
                return False
            self.picked = True
            return True

    def cancel(self) -> bool:
        """True when it was still waiting and now never runs."""
        with self.lock:
            if not self.picked:
                self.cancelled = True
            return self.cancelled


class Session:
    def __init__(self, config: Config, bus: Bus, keeper: Keeper | None = None, store: MessageStore | None = None):
        self.config = config
        self.bus = bus
        self.keeper = keeper or Keeper(config, bus)
        self.store = store
        self.machine = Machine(Timing.from_config(config))
        # Set when a launch is over (its page loaded, or it failed), or has asked for Chromium
        # on a profile with no login, or the owner waits for a command. See `wait_settled`.
        self._settled = threading.Event()
        self.effects = Effects(config, self.keeper, bus, store, on_page_change=self.page_changed,
                               on_settled=self._settled.set)
        self.outbox = Outbox(store, config.message_ttl_s, self.effects.publish)
        self._snapshot = Snapshot(max_reconnect_attempts=config.reconnect_max_attempts)
        self._queue: queue.Queue[_Pending | object] = queue.Queue()
        self._wakes_lock = threading.Lock()
        self._wakes: set[object] = set()  # wake-ups in the queue (_POKE, _PAGE_CHANGED): not added twice
        self._thread: threading.Thread | None = None
        self._stop_calls = itertools.count()  # next() is atomic: a second SIGTERM inside the first
        self._stopping = False
        self._shutdown: _Pending | None = None
        self._qr_viewed_at = float("-inf")
        self._changed = threading.Condition()  # notified on every new snapshot

    # -- what handlers call ------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        return snapshot.replace(is_shutting_down=True) if self._stopping else snapshot

    def status_json(self) -> dict:
        body = self.snapshot().to_json()
        body.update(self.keeper.status())
        body["outbox"] = self.outbox_status()
        return body

    def outbox_status(self) -> dict:
        """The outbox's counts for /status and /metrics (no I/O)."""
        return self.outbox.status()

    def outbox_changed(self, queued: int = 0) -> None:
        """A message was accepted (`queued` +1) or cancelled (-1), any thread: the counts are
        adjusted now and the owner is woken, once for a burst (it counts again then)."""
        self.outbox.waiting = True
        self.outbox.adjust(queued)
        self._wake_once(_POKE)

    def page_changed(self) -> None:
        """The page told of a change (the page watch's thread): the owner is woken, once for
        a burst, to read incoming messages soon."""
        self._wake_once(_PAGE_CHANGED)

    def _wake_once(self, wake: object) -> None:
        """Queue `wake` unless it is queued already (a burst wakes the owner once)."""
        with self._wakes_lock:
            if wake in self._wakes:
                return
            self._wakes.add(wake)
        self._queue.put(wake)

    def _woken(self, wake: object) -> None:
        """The owner took `wake`: a later call queues it again."""
        with self._wakes_lock:
            self._wakes.discard(wake)

    def note_qr_viewed(self) -> None:
        self._qr_viewed_at = time.monotonic()

    def wait_for_change(self, timeout: float) -> None:
        """Block until the snapshot is replaced (or `timeout`): for a handler that waits for a
        state (a fresh QR) without polling."""
        with self._changed:
            self._changed.wait(max(0.0, timeout))

    def start(self) -> None:
        """Start the owner thread (idempotent); with WHATSAPP_AUTO_INIT, initialize."""
        if self._thread is not None:
            return
        self.effects.prepare()
        # The user agent needs Chromium's version (`chromium --version` via Debian's wrapper,
        # ~0.15 s, on a first start): learn it now, off the first launch's path (gunicorn's
        # post_fork began it already).
        version.warm_up_soon(self.config.chrome_bin, self.config.session_dir)
        self.keeper.start()
        self._snapshot = self._snapshot.replace(has_session=self.effects.saved_login())
        if self.config.auto_init:  # queued first: the thread must not look idle before it
            self._queue.put(_Pending(S.Command.INITIALIZE))
        # The store opens beside the launch; the owner is woken once it has (housekeeping,
        # and anything left from before to send). After INITIALIZE: a small store opens in
        # milliseconds, and its wake must not come before the launch in the queue.
        self.outbox.start(opened=lambda: self._wake_once(_OPENED))
        self._thread = threading.Thread(target=self._run, name="whatsapp-session", daemon=True)
        self._thread.start()

    def wait_settled(self, timeout: float) -> bool:
        """Block, at most `timeout`, until the start's launch is over (the page loaded, or the
        launch failed), or until it asked for Chromium on a profile with no login, or until
        the owner waits for a command. True if it got there.

        gunicorn's post_fork waits for this before the worker imports the app (~0.4 s of
        CPU). With a login, the import then runs while the page syncs its chats: beside the
        launch it took CPU from Chromium's start and page load on a two-core machine. With no
        login the QR follows the page load at once and nobody sees it until the app serves
        it, so the import runs beside Chromium's start. Either way none of it runs beside the
        owner's short steps before the launch, each of which would wait up to the
        interpreter's switch interval (5 ms) to resume (issue 20)."""
        return self._settled.wait(timeout)

    def submit(self, name: str, timeout: float) -> str:
        """Run a command on the owner thread; raises ShuttingDown, TimeoutError or CommandError."""
        return self._run_command(S.Command(name), timeout).result or ""

    def _run_command(self, command: S.Command, timeout: float) -> _Pending:
        if self._stopping:
            raise ShuttingDown()
        if self._thread is None or not self._thread.is_alive():
            raise CommandError(503, "The session is not running in this process.", "unavailable")
        end = time.monotonic() + timeout
        pending = _Pending(command)
        self._queue.put(pending)
        if command in (S.Command.DISCONNECT, S.Command.CLEAR):
            self._unstick(pending, end)
        if not pending.done.wait(max(0.0, end - time.monotonic())):
            pending.cancel()  # still queued: it never runs; already running: it finishes
            raise TimeoutError(command.value)
        if pending.error:
            raise pending.error
        return pending

    def screenshot(self, timeout: float) -> bytes | None:
        """A PNG of what the browser shows now, taken by the owner thread between its steps;
        None when no browser runs. Raises like `submit`."""
        pending = self._run_command(S.Command.SCREENSHOT, timeout)
        return pending.value

    def begin_stop(self) -> None:
        """Refuse commands from now on and queue the shutdown; returns at once.

        Signal-safe: it takes no lock the interrupted code could hold, and a second SIGTERM
        arriving inside the first (Heroku sends one to every process) does nothing."""
        if next(self._stop_calls):
            return
        self._stopping = True
        self._shutdown = _Pending(S.Command.SHUTDOWN)
        self._queue.put(self._shutdown)

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop, bounded: browser closed properly, backup, record, lock released."""
        end = time.monotonic() + timeout
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._stopping = True
            self.effects.kill_browser()
            self.keeper.stop(timeout=max(0.5, end - time.monotonic()))
            return
        self.begin_stop()
        if self._shutdown is not None:
            self._unstick(self._shutdown, end - 1.0)
        thread.join(max(0.0, end - time.monotonic() - 1.0))
        if thread.is_alive():
            log.error("the session did not stop in time; killing the browser")
            self.effects.kill_browser()
            thread.join(1.0)
        self.keeper.stop(timeout=max(0.5, end - time.monotonic()))

    def _unstick(self, pending: _Pending, end: float) -> None:
        """Wait for the owner to pick `pending` up; past PICKUP_S, if it is stuck inside a
        driver call (a hung browser can hold it for the whole driver timeout), kill the
        browser so that the call fails at once. Never for a backup copy or a database call."""
        started = time.monotonic()
        while not pending.picked and not pending.done.is_set() and time.monotonic() < end:
            if time.monotonic() - started >= PICKUP_S and self.effects.in_driver_call:
                log.warning("the browser is not answering; killing it so that %s can proceed",
                            pending.command.value)
                self.effects.kill_browser()
                return
            pending.done.wait(0.05)

    # -- the owner thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                due = self.machine.due
                chores = self.outbox.housekeeping_at
                wake = chores if due is None else min(due, chores)
                wait = max(0.0, wake - time.monotonic())
                if wait > 0 and self._queue.empty():  # idle: nothing asked, nothing due now
                    self._settled.set()
                try:
                    pending = self._queue.get(timeout=wait)
                except queue.Empty:
                    pending = None
                if time.monotonic() >= self.outbox.housekeeping_at:
                    self.outbox.housekeeping()
                if pending is _POKE:
                    self._woken(_POKE)
                    self.outbox.count()
                    self.outbox.waiting = True
                    self._dispatch(S.OutboxChanged())
                elif pending is _OPENED:
                    self._woken(_OPENED)
                    if self.outbox.waiting:
                        self._dispatch(S.OutboxChanged())
                elif pending is _PAGE_CHANGED:
                    self._woken(_PAGE_CHANGED)
                    self._dispatch(S.PageChanged())
                elif isinstance(pending, _Pending):
                    if not pending.pick():
                        continue  # its caller gave up: it must not run later
                    try:
                        self._dispatch(S.Asked(pending.command), pending)
                    finally:
                        pending.done.set()
                    if pending.command is S.Command.SHUTDOWN:
                        return
                elif due is not None and time.monotonic() >= due:
                    self._dispatch(S.Due())
        except BaseException:
            log.exception("the session owner thread died")
            self.effects.kill_browser()
            raise

    def _facts(self) -> S.Facts:
        now = time.monotonic()
        since = self.machine.ready_since
        return S.Facts(now=now, wall=utcnow(), expects_login=self.keeper.expects_login(),
                       qr_wanted=now - self._qr_viewed_at < QR_VIEW_WINDOW_S,
                       backup_in=self.keeper.seconds_to_backup(0.0 if since is None else now - since),
                       restore_unresolved=self.keeper.restore_unresolved(),
                       outbox_waiting=self.outbox.waiting and self.store is not None,
                       receiving=self.config.receive and self.store is not None,
                       cleared_elsewhere=self.keeper.cleared_elsewhere())

    def _dispatch(self, event: S.Event, pending: _Pending | None = None) -> None:
        """Feed `event` to the machine and run its actions; outcomes are fed back in turn."""
        events = [event]
        try:
            while events:
                for action in self.machine.handle(events.pop(0), self._facts()):
                    outcome = self._act(action, pending)
                    if isinstance(outcome, S.Sent):
                        if not outcome.more:
                            self.outbox.waiting = False  # an accept meanwhile pokes again
                        self.outbox.count()
                    if outcome is not None:
                        events.append(outcome)
        except Exception as exc:  # a bug of ours (failures of the world arrive as events)
            log.exception("bug in the session (please report it); the session stops")
            self._recover_from_bug(exc)
            if pending is not None and pending.result is None:
                pending.error = CommandError(500, f"{pending.command.value} failed: internal error",
                                             "internal_error")

    def _act(self, action: S.Action, pending: _Pending | None) -> S.Event | None:
        if isinstance(action, S.Update):
            self._apply(action.changes)
            return None
        if isinstance(action, S.Publish):
            self.bus.publish(action.name, **action.data)
            return None
        if isinstance(action, S.Log):
            log.log(logging.getLevelName(action.level), "%s", action.message)
            return None
        if isinstance(action, S.Screenshot):
            if pending is not None:
                pending.value = self.effects.screenshot()
            return None
        if isinstance(action, S.Reply):
            if pending is not None:
                pending.result = action.message
            return None
        try:
            return self.effects.run(action)
        finally:
            if isinstance(action, S.Launch):
                self._settled.set()

    def _recover_from_bug(self, exc: Exception) -> None:
        try:
            facts = self._facts()
        except Exception:  # the bug may be in what the facts are read from
            log.exception("while reading the facts to recover from a bug")
            facts = S.Facts(now=time.monotonic(), wall=utcnow())
        for action in self.machine.bug(repr(exc), facts):
            try:
                self._act(action, None)
            except Exception:  # already handling a bug: keep going so the browser is closed
                log.exception("while recovering from a bug")

    def _apply(self, changes: dict) -> None:
        old = self._snapshot
        if "status" in changes and changes["status"] is not old.status:
            changes = {**changes, "since": utcnow()}
        new = old.replace(**changes)
        self._snapshot = new  # one writer (this thread): readers see the old or the new object
        with self._changed:
            self._changed.notify_all()
        if new.status is not old.status:
            detail = f"reason: {new.reason.value}" if new.reason else "no error"
            if new.next_reconnect_at:
                detail += f"; next attempt at {new.next_reconnect_at:%H:%M:%S}"
            log.info("status %s -> %s (%s)", old.status.value, new.status.value, detail)
            self.bus.publish("status", status=new.status.value, previous=old.status.value,
                             reason=new.reason.value if new.reason else None)
