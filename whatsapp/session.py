"""The one owner of the browser: a thread, a command queue, and the session's state machine.

HTTP handlers never touch Selenium. They read `snapshot()` (an immutable object replaced
whole by the owner thread) or `submit()` a command and wait for it with a deadline. The
owner thread's only wait is `queue.get(timeout=...)`, so a command or a shutdown wakes it
at once, also in the middle of a reconnect backoff.
"""
from __future__ import annotations

import enum
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

from . import page
from .browser import Browser, clear_stale_singleton, sweep_orphans, warm_up
from .bus import Bus
from .config import Config
from .keeper import Keeper
from .monitor import Backoff, Failure, LaunchFailed, NetworkDown, PageUnresponsive, ProfileLocked, classify
from .page import Screen
from .states import Account, Reason, Snapshot, Status, utcnow
from .store import ProfileLock, delete_profile, has_login, private_dir

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5      # how often a QR page is read (it waits for a person)
FAST_WATCH_S = 0.1          # how often a starting or loading page is read (one cheap script)
QR_VIEW_WINDOW_S = 120.0    # a QR page fetched this recently means someone is looking
CLOSE_DEADLINE_S = 5.0      # a planned close: quit, then SIGTERM, then SIGKILL
PICKUP_S = 2.0              # a stop command not picked up by then: the owner is stuck


class Phase(enum.Enum):
    IDLE = "idle"          # no browser: stopped
    LAUNCH = "launch"      # next step launches the browser
    WATCH = "watch"        # browser up, waiting for the QR, the loading screen, the chats
    READY = "ready"        # chat list shown: health probes every monitor interval
    BACKOFF = "backoff"    # waiting before a reconnect attempt
    FAILED = "failed"      # attempts used up


class ShuttingDown(Exception):
    """The server is stopping; commands are refused."""


class CommandError(Exception):
    def __init__(self, status: int, message: str, error: str = "error"):
        super().__init__(message)
        self.status, self.error = status, error


class _Command:
    def __init__(self, name: str):
        self.name = name
        self.picked = threading.Event()
        self.done = threading.Event()
        self.result: str | None = None
        self.error: Exception | None = None


class Session:
    def __init__(self, config: Config, bus: Bus, keeper: Keeper | None = None):
        self.config = config
        self.bus = bus
        self.keeper = keeper or Keeper(config, bus)
        self.profile_dir = config.profile_dir.resolve() if config.profile_dir.is_absolute() else config.profile_dir.absolute()
        self._snapshot = Snapshot(max_reconnect_attempts=config.reconnect_max_attempts)
        self._queue: queue.Queue[_Command] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._browser: Browser | None = None
        self._browser_guard = threading.Lock()  # only around swapping/killing the browser handle
        self._lock = ProfileLock(config.lock_path)
        self._backoff = Backoff(config.reconnect_step_s, config.reconnect_max_delay_s,
                                config.reconnect_max_attempts)
        self._phase = Phase.IDLE
        self._due: float | None = None          # monotonic time of the next step
        self._watch_deadline: float | None = None
        self._ready_since: float | None = None
        self._qr_shown = False                  # a QR was shown since this browser launched
        self._qr_accepted = False               # a broken login could not be restored: offer the QR
        self._conflict_seen = False
        self._restores_tried: set[str] = set()
        self._qr_viewed_at = float("-inf")
        self._hostname = socket.gethostname()
        self._set_guard = threading.Lock()  # the owner and stop() both replace the snapshot
        self._shutdown_command: _Command | None = None

    # -- what handlers call ------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def status_json(self) -> dict:
        body = self._snapshot.to_json()
        body.update(self.keeper.status())
        return body

    def note_qr_viewed(self) -> None:
        self._qr_viewed_at = time.monotonic()

    def start(self) -> None:
        """Start the owner thread (idempotent); with WHATSAPP_AUTO_INIT, initialize."""
        if self._thread is not None:
            return
        private_dir(self.config.session_dir)  # owner-only from the first moment
        # The user agent needs Chromium's version (`chromium --version` via Debian's wrapper,
        # ~0.15 s): learn it now, off the first launch's path.
        threading.Thread(target=warm_up, args=(self.config,), name="chromium-version", daemon=True).start()
        self.keeper.start()
        self._set(has_session=self._saved_login_on_disk())
        self._thread = threading.Thread(target=self._run, name="whatsapp-session", daemon=True)
        self._thread.start()
        if self.config.auto_init:
            self._queue.put(_Command("initialize"))

    def submit(self, name: str, timeout: float) -> str:
        """Run a command on the owner thread; raises ShuttingDown, TimeoutError or CommandError."""
        if self._snapshot.is_shutting_down:
            raise ShuttingDown()
        if self._thread is None or not self._thread.is_alive():
            raise CommandError(503, "The session is not running in this process.", "unavailable")
        end = time.monotonic() + timeout
        command = _Command(name)
        self._queue.put(command)
        if name in ("disconnect", "clear-session") and not command.picked.wait(PICKUP_S):
            # The owner is inside a driver call that may hang for the whole driver timeout:
            # killing the browser makes that call fail at once, and the command proceeds.
            log.warning("the browser is not answering; killing it so that %s can proceed", name)
            self._kill_browser()
        if not command.done.wait(max(0.0, end - time.monotonic())):
            raise TimeoutError(name)
        if command.error:
            raise command.error
        return command.result or ""

    def begin_stop(self) -> None:
        """Refuse commands from now on and queue the shutdown; returns at once (signal-safe)."""
        if self._shutdown_command is None:
            self._set(is_shutting_down=True)
            self._shutdown_command = _Command("shutdown")
            self._queue.put(self._shutdown_command)

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop, bounded: browser closed properly, backup, record, lock released."""
        end = time.monotonic() + timeout
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._set(is_shutting_down=True)
            self._kill_browser()
            self.keeper.stop(timeout=max(0.5, end - time.monotonic()))
            return
        self.begin_stop()
        command = self._shutdown_command
        if not command.picked.wait(min(PICKUP_S, max(0.0, end - time.monotonic()))):
            log.warning("the browser is not answering; killing it to shut down in time")
            self._kill_browser()
        thread.join(max(0.0, end - time.monotonic() - 1.0))
        if thread.is_alive():
            log.error("the session did not stop in time; killing the browser")
            self._kill_browser()
            thread.join(1.0)
        self.keeper.stop(timeout=max(0.5, end - time.monotonic()))

    # -- the owner thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                wait = None if self._due is None else max(0.0, self._due - time.monotonic())
                try:
                    command = self._queue.get(timeout=wait)
                except queue.Empty:
                    command = None
                if command is not None:
                    command.picked.set()
                    if command.name == "shutdown":
                        self._finish(command, self._shutdown)
                        return
                    self._finish(command, self._COMMANDS[command.name].__get__(self))
                elif self._due is not None and time.monotonic() >= self._due:
                    self._due = None
                    self._step()
        except BaseException:
            log.exception("the session owner thread died")
            self._kill_browser()
            raise

    def _finish(self, command: _Command, handler) -> None:
        try:
            command.result = handler()
        except Failure as exc:
            command.error = CommandError(500, str(exc), exc.reason.value)
        except Exception as exc:
            log.exception("%s failed", command.name)
            command.error = CommandError(500, f"{command.name} failed: {exc}", "internal_error")
        finally:
            command.done.set()

    def _step(self) -> None:
        step = {Phase.LAUNCH: self._launch, Phase.BACKOFF: self._launch,
                Phase.WATCH: self._watch, Phase.READY: self._probe}.get(self._phase)
        if step is None:
            return
        try:
            step()
        except Exception as exc:
            try:
                failure = classify(exc)
            except Exception:
                log.exception("unexpected error in %s", self._phase.value)
                failure = LaunchFailed(f"internal error: {exc!r}")
            self._fail(failure)

    # -- steps -------------------------------------------------------------------------------
    def _launch(self) -> None:
        reconnecting = self._phase is Phase.BACKOFF
        self._set(status=Status.RECONNECTING if reconnecting else Status.STARTING,
                  next_reconnect_at=None, monitor_active=True, qr=None)
        if not self._lock.acquire():
            raise ProfileLocked(f"another process (pid {self._lock.holder()}) holds {self._lock.path}")
        private_dir(self.config.session_dir)
        self.keeper.check_owner()
        sweep_orphans(self.profile_dir)
        clear_stale_singleton(self.profile_dir, self._hostname)
        self.keeper.before_launch(self.profile_dir)
        private_dir(self.profile_dir)
        started = time.monotonic()
        browser = Browser.launch(self.config, self.profile_dir, self.config.session_dir / "chromedriver.log")
        with self._browser_guard:
            self._browser = browser
        self._qr_shown = self._qr_accepted = self._conflict_seen = False
        self.keeper.on_launch()
        browser.driver.get(self.config.web_url)
        self.bus.publish("browser_started", seconds=round(time.monotonic() - started, 3))
        self._set(has_session=self._saved_login_on_disk())
        self._phase = Phase.WATCH
        self._watch_deadline = time.monotonic() + self.config.startup_timeout_s
        self._due = time.monotonic()

    def _watch(self) -> None:
        state = page.read_state(self._browser.driver)
        now = time.monotonic()
        self._due = now + (WATCH_INTERVAL_S if state.screen in (Screen.QR, Screen.QR_EXPIRED) else FAST_WATCH_S)
        if state.screen is Screen.CHATS:
            self._became_ready(state)
        elif state.screen is Screen.LOADING:
            if self._snapshot.status is not Status.SYNCING:
                self._watch_deadline = now + self.config.sync_timeout_s
            self._set(status=Status.SYNCING, account=state.account, qr=None)
        elif state.screen in (Screen.QR, Screen.QR_EXPIRED):
            self._on_qr_screen(state)
        elif state.screen is Screen.CONFLICT:
            self._take_over()
        elif state.screen is Screen.UNSUPPORTED:
            raise LaunchFailed("WhatsApp Web refused this browser (user agent); set WHATSAPP_USER_AGENT")
        elif state.screen is Screen.ERROR:
            raise NetworkDown(f"WhatsApp Web could not be loaded ({state.url})")
        elif self._watch_deadline is not None and now > self._watch_deadline:
            raise PageUnresponsive("no WhatsApp screen appeared in time")

    def _on_qr_screen(self, state: page.PageState) -> None:
        if state.post_logout and not state.stored_login:
            if self.keeper.expects_login() or self._snapshot.status in (Status.READY, Status.SYNCING):
                return self._logged_out(state)
        elif not self._qr_shown and not self._qr_accepted and (state.stored_login or self.keeper.expects_login()):
            return self._login_broken(state)
        self._qr_shown = True
        self._watch_deadline = None  # a QR waits for a person, for as long as it takes
        if state.screen is Screen.QR_EXPIRED and time.monotonic() - self._qr_viewed_at < QR_VIEW_WINDOW_S \
                and not state.offline:
            log.info("the QR codes expired and someone is looking: asking for new ones")
            page.click_reload(self._browser.driver)
        previous = self._snapshot.qr
        # A QR with last-wid-md still stored is a broken saved login, not an absent one.
        self._set(status=Status.QR, qr=state.qr, account=Account(), has_session=state.stored_login)
        if state.qr and state.qr != previous:
            self.bus.publish("qr", qr=state.qr)

    def _became_ready(self, state: page.PageState) -> None:
        restored = not self._qr_shown
        self._backoff.reset()
        self._restores_tried.clear()
        self._phase = Phase.READY
        self._ready_since = time.monotonic()
        self._conflict_seen = False
        self.keeper.on_ready(state.account, linked_now=not restored)  # the record first: /status shows both
        self._set(status=Status.READY, account=state.account, has_session=True, qr=None,
                  reconnect_attempts=0, next_reconnect_at=None, last_ready_at=utcnow(),
                  monitor_active=True)
        self.bus.publish("ready", restored=restored, phone=state.account.phone,
                         pushname=state.account.pushname)
        self._due = time.monotonic() + min(self.config.monitor_interval_s, self.config.backup_delay_s)

    def _probe(self) -> None:
        """Health: the page answered in time and still shows the chat list, and WhatsApp is reachable."""
        driver = self._browser.driver
        now = time.monotonic()
        if self.keeper.backup_due(now - self._ready_since):
            self.keeper.take_backup(self.profile_dir, self._snapshot.account)
        state = page.read_state(driver)
        self._due = time.monotonic() + self.config.monitor_interval_s
        if state.screen is Screen.CHATS:
            self._conflict_seen = False
            self._check_reachable()
            self.keeper.keep_owner()
            self._due = time.monotonic() + min(self.config.monitor_interval_s,
                                               max(0.0, self.keeper.seconds_to_backup(now - self._ready_since)))
        elif state.screen is Screen.CONFLICT:
            self._take_over()
        elif state.screen in (Screen.QR, Screen.QR_EXPIRED):
            self._phase = Phase.WATCH
            self._on_qr_screen(state)
        elif state.screen is Screen.LOADING:
            self._phase = Phase.WATCH
            self._watch_deadline = time.monotonic() + self.config.sync_timeout_s
            self._set(status=Status.SYNCING)
            self._due = time.monotonic()
        elif state.screen is Screen.ERROR:
            raise NetworkDown("WhatsApp Web shows the browser's error page")
        else:
            # Between screens (the page reloading after a phone logout, say): watch it for a
            # bounded while instead of judging a page caught mid-navigation.
            self._phase = Phase.WATCH
            self._watch_deadline = time.monotonic() + self.config.page_timeout_s
            self._due = time.monotonic() + FAST_WATCH_S

    def _check_reachable(self) -> None:
        """The page keeps its chats on screen while WhatsApp is unreachable: ask the server too."""
        request = urllib.request.Request(self.config.web_url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=min(5.0, self.config.page_timeout_s)) as answer:
                answer.read(0)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise NetworkDown(f"WhatsApp Web answers {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise NetworkDown(f"WhatsApp Web is unreachable: {exc}") from None

    def _take_over(self) -> None:
        if self._conflict_seen:
            return
        self._conflict_seen = True
        log.warning("WhatsApp is open in another window: taking the session back (Use here)")
        self._set(reason=Reason.CONFLICT)
        page.use_here(self._browser.driver)
        self._due = time.monotonic()

    def _logged_out(self, state: page.PageState) -> None:
        log.warning("the phone removed this device: the login is gone, offering a new QR")
        phone = self._snapshot.account.phone
        self.keeper.on_logged_out()
        self._backoff.reset()
        self._qr_shown = True
        self._phase = Phase.WATCH
        self._watch_deadline = None
        self._set(status=Status.QR, reason=Reason.LOGGED_OUT, has_session=False, qr=state.qr,
                  account=Account(), reconnect_attempts=0)
        self.bus.publish("logged_out", phone=phone)
        if state.qr:
            self.bus.publish("qr", qr=state.qr)

    def _login_broken(self, state: page.PageState) -> None:
        """A QR where the saved login should have opened: restore a backup, newest first."""
        candidate = self.keeper.next_restore(self._restores_tried)
        if candidate is None:
            log.error("the saved login is broken and no backup restores it: a new QR is needed")
            if self._restores_tried:
                self.bus.publish("restore_failed", reason=Reason.AUTH_FAILED.value)
            self._qr_accepted = True
            self._set(reason=Reason.AUTH_FAILED, last_error="the saved login did not open and no backup restored it")
            return self._on_qr_screen(state)
        self._restores_tried.add(candidate)
        log.warning("the saved login did not open (a QR was shown): restoring backup %s", candidate)
        self._set(reason=Reason.AUTH_FAILED, status=Status.STARTING, qr=None)
        self._close_browser()
        self.keeper.restore(candidate, self.profile_dir)
        self._phase = Phase.LAUNCH
        self._due = time.monotonic()

    def _fail(self, failure: Failure) -> None:
        """A failure that a relaunch with the saved login can mend: close, back off, retry."""
        self._close_browser(deadline=2.0)
        delay = self._backoff.next_delay()
        if delay is None and isinstance(failure, ProfileLocked):
            # Another server drives the account (a deploy overlapping the old dyno, which may
            # last minutes): wait for it to let go instead of giving up.
            delay = self._backoff.cap
        if delay is None:
            self._lock.release()
            self._phase, self._due = Phase.FAILED, None
            self._set(status=Status.FAILED, reason=failure.reason, last_error=str(failure),
                      next_reconnect_at=None, monitor_active=False, qr=None,
                      reconnect_attempts=self._backoff.attempts)
            log.error("giving up after %d attempts (%s: %s); POST /initialize to try again",
                      self._backoff.attempts, failure.reason.value, failure)
            self.bus.publish("failed", reason=failure.reason.value, attempts=self._backoff.attempts)
            return
        self._phase = Phase.BACKOFF
        self._due = time.monotonic() + delay
        self._set(status=Status.RECONNECTING, reason=failure.reason, last_error=str(failure), qr=None,
                  reconnect_attempts=self._backoff.attempts, monitor_active=True,
                  next_reconnect_at=utcnow() + timedelta(seconds=delay))
        log.warning("session broke (%s: %s); attempt %d of %d in %.1f s", failure.reason.value, failure,
                    self._backoff.attempts, self._backoff.max_attempts, delay)
        self.bus.publish("reconnecting", attempt=self._backoff.attempts, delay=delay,
                         reason=failure.reason.value)

    # -- commands (run on the owner thread) ---------------------------------------------------
    def _initialize(self) -> str:
        if self._phase in (Phase.IDLE, Phase.FAILED):
            self._backoff.reset()
            self._restores_tried.clear()
            self._phase, self._due = Phase.LAUNCH, time.monotonic()
            self._set(status=Status.STARTING, reconnect_attempts=0, monitor_active=True)
            return "Starting the session."
        if self._phase is Phase.BACKOFF:
            self._due = time.monotonic()
            return "Reconnecting now."
        return f"Already {self._snapshot.status.value}; nothing to do."

    def _disconnect(self) -> str:
        told_phone = False
        if self._browser is not None and self._browser.alive():
            try:
                told_phone = page.log_out(self._browser.driver, timeout=8.0)
            except Exception as exc:  # the page may be dead or hung: the login is deleted anyway
                log.warning("could not log out from the page: %r", exc)
        self._forget()
        if told_phone:
            return "Logged out: the phone no longer lists this device; the saved login is deleted."
        return ("The saved login is deleted, but the page could not log out: remove the device "
                "under Linked devices on the phone.")

    def _clear_session(self) -> str:
        self._forget()
        return "Browser closed and the saved login deleted."

    def _forget(self) -> None:
        self._close_browser(deadline=3.0)
        delete_profile(self.profile_dir)
        self.keeper.forget()
        self._lock.release()
        self._backoff.reset()
        self._phase, self._due = Phase.IDLE, None
        self._set(status=Status.STOPPED, reason=None, has_session=False, qr=None, account=Account(),
                  reconnect_attempts=0, next_reconnect_at=None, monitor_active=False, last_error=None)

    _COMMANDS = {"initialize": _initialize, "disconnect": _disconnect, "clear-session": _clear_session}

    def _shutdown(self) -> str:
        was_ready = self._phase is Phase.READY
        ready_for = time.monotonic() - self._ready_since if was_ready and self._ready_since else 0.0
        self._close_browser(deadline=CLOSE_DEADLINE_S)
        self.keeper.on_clean_shutdown(self.profile_dir, self._snapshot.account, ready_for)
        self._lock.release()
        self._phase, self._due = Phase.IDLE, None
        self._set(status=Status.STOPPED, monitor_active=False, qr=None)
        return "stopped"

    # -- helpers -----------------------------------------------------------------------------
    def _saved_login_on_disk(self) -> bool:
        # Chromium creates Local Storage for any page: the files alone do not make a login.
        return has_login(self.profile_dir) and self.keeper.expects_login()

    def _close_browser(self, deadline: float = CLOSE_DEADLINE_S) -> None:
        with self._browser_guard:
            browser, self._browser = self._browser, None
        if browser is not None:
            browser.close(deadline)

    def _kill_browser(self) -> None:
        with self._browser_guard:
            browser = self._browser
        if browser is not None:
            browser.kill()

    def _set(self, **changes) -> None:
        with self._set_guard:
            old = self._snapshot
            if "status" in changes and changes["status"] is not old.status:
                changes.setdefault("since", utcnow())
            new = old.replace(**changes)
            self._snapshot = new
        if new.status is not old.status:
            detail = f"reason: {new.reason.value}" if new.reason else "no error"
            if new.next_reconnect_at:
                detail += f"; next attempt at {new.next_reconnect_at:%H:%M:%S}"
            log.info("status %s -> %s (%s)", old.status.value, new.status.value, detail)
            self.bus.publish("status", status=new.status.value, previous=old.status.value,
                             reason=new.reason.value if new.reason else None)
