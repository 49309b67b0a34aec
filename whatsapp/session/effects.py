"""How each of the state machine's actions touches the world: the browser, the disk, the keeper.

`Effects.run(action)` is called on the owner thread only. An action with an outcome returns
the event that carries it; a failure of the browser, the page or the network is classified
(`failures.classify`) and returned as `Broke`, never raised. Anything else that escapes is a
bug of ours and propagates to the owner, which logs it as one.

`kill_browser()` and `in_driver_call` are the only members other threads may use: a stop
that the owner does not pick up because a driver call hangs kills the browser, so that the
call fails at once.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import urllib3.exceptions
from selenium.common.exceptions import WebDriverException

from ..bus import Bus
from ..config import Config
from ..failures import Failure, LaunchFailed, ProfileLocked, classify
from ..messages import IncomingMessage, MessageStore, OutgoingMessage, StoreUnavailable
from ..persistence.backups import BackupError
from ..persistence.files import room_for_chromium
from ..persistence.keeper import Keeper
from ..persistence.profile import ProfileLock, has_login, private_dir
from ..states import utcnow
from ..web import evidence, page
from ..web.browser import Browser
from ..web.processes import clear_stale_singleton, sweep_orphans
from . import steps as S
from .receiver import Receiver
from .sender import Sender

log = logging.getLogger(__name__)

REACHABILITY_TIMEOUT_S = 5.0
STORE_RETRY_S = 5.0     # the message store did not answer: the next send step waits this long
LOG_OUT_S = 8.0
# What a driver call may raise when the browser side fails (runtime.md's table); anything
# else from a driver call is a bug.
DRIVER_ERRORS = (WebDriverException, urllib3.exceptions.HTTPError, OSError)


class Effects:
    def __init__(self, config: Config, keeper: Keeper, bus: Bus | None = None, store: MessageStore | None = None,
                 on_page_change: Callable[[], None] = lambda: None,
                 on_settled: Callable[[], None] = lambda: None):
        self.config = config
        self.on_settled = on_settled  # see `_launch_steps`
        self.on_page_change = on_page_change  # called (another thread) when the page tells of a change
        self.keeper = keeper
        self.bus = bus or Bus(config.client_id)
        self.store = store
        self.receiver = self.sender = None
        if store is not None:
            self.receiver = Receiver(store, publish_in=self._published_in, publish_out=self.publish,
                                     open_chat_path=config.session_dir / f"session-{config.client_id}.open-chat.json")
            self.sender = Sender(store, config.web_url, ttl_s=config.message_ttl_s,
                                 open_timeout_s=min(60.0, config.page_timeout_s + 15.0),
                                 publish=self.publish, on_open=self.receiver.opened,
                                 no_room=lambda: room_for_chromium(config.session_dir))
        self._store_down = False
        profile = config.profile_dir
        self.profile_dir = profile.resolve() if profile.is_absolute() else profile.absolute()
        self._lock = ProfileLock(config.lock_path)
        self._hostname = socket.gethostname()
        self._browser: Browser | None = None
        self._guard = threading.Lock()  # only around swapping and killing the browser handle
        self.in_driver_call = False
        self.killed = False             # the browser was killed from outside since its launch

    # -- for other threads ---------------------------------------------------------------------
    def kill_browser(self) -> None:
        with self._guard:
            browser = self._browser
            if browser is not None:
                self.killed = True
        if browser is not None:
            browser.kill()

    # -- setup -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        private_dir(self.config.session_dir)  # owner-only from the first moment

    def saved_login(self) -> bool:
        # Chromium creates Local Storage for any page: the files alone do not make a login.
        return has_login(self.profile_dir) and self.keeper.expects_login()

    # -- dispatch ----------------------------------------------------------------------------------
    def run(self, action: S.Action) -> S.Event | None:
        handler: Callable = getattr(self, "_" + type(action).__name__.lower())
        return handler(action)

    @contextlib.contextmanager
    def _driver(self) -> Iterator[Browser]:
        """Marks a driver call (see `kill_browser`); raises BrokenBrowser when none runs."""
        browser = self._browser
        if browser is None:
            raise _NoBrowser()
        self.in_driver_call = True
        try:
            yield browser
        finally:
            self.in_driver_call = False

    def _outcome(self, work: Callable[[], S.Event]) -> S.Event:
        """`work()`, with the world's failures turned into `Broke` (bugs propagate)."""
        try:
            return work()
        except Failure as failure:
            return S.Broke(failure)
        except _NoBrowser:
            return S.Broke(classify(ConnectionError("no browser is running")))
        except DRIVER_ERRORS as exc:
            return S.Broke(classify(exc))

    # -- actions with an outcome -------------------------------------------------------------------
    def _launch(self, _: S.Launch) -> S.Event:
        return self._outcome(self._launch_steps)

    def _launch_steps(self) -> S.Event:
        if not self._lock.acquire():
            raise ProfileLocked(f"another process (pid {self._lock.holder()}) holds {self._lock.path}")
        private_dir(self.config.session_dir)
        self.keeper.check_owner()
        sweep_orphans(self.profile_dir)
        clear_stale_singleton(self.profile_dir, self._hostname)
        # No room: a transient failure (the reconnect schedule, then WHATSAPP_FAILED_RETRY_S).
        if (no_room := room_for_chromium(self.config.session_dir)) is not None:
            raise LaunchFailed(no_room)
        self.keeper.before_launch(self.profile_dir)
        private_dir(self.profile_dir)
        # When the worker may import the app (gunicorn's post_fork waits, Session.wait_settled):
        # with no login the QR follows the page load at once and is of no use until the app
        # serves it, so as soon as Chromium's start is asked; with one, the owner settles once
        # the launch is over, and the import runs while the page syncs its chats.
        login = self.saved_login()  # read once: the launch and the page load do not change it
        starting = self.on_settled if not login else (lambda: None)
        started = time.monotonic()
        browser = Browser.launch(self.config, self.profile_dir, self.config.session_dir / "chromedriver.log",
                                 starting=starting)
        with self._guard:
            self._browser, self.killed = browser, False
        if self.receiver is not None:
            self.receiver.forget_browser()
        self.keeper.on_launch()
        if self.receiver is not None and self.config.receive:
            browser.watch_page(self.on_page_change)  # no driver call; before the page, so its observer comes with it
        with self._driver() as running:
            running.driver.get(self.config.web_url)
        return S.Launched(seconds=time.monotonic() - started, has_session=login)

    def _readpage(self, action: S.ReadPage) -> S.Event:
        def work() -> S.Event:
            with self._driver() as browser:
                state = page.read_state(browser.driver, wait_s=action.wait_s)
            browser.bound_log()
            if action.check_owner:
                self.keeper.keep_owner()
            return S.PageRead(state)
        return self._outcome(work)

    def _probe(self, _: S.Probe) -> S.Event:
        def work() -> S.Event:
            with self._driver() as browser:
                state = page.read_state(browser.driver)
            browser.bound_log()
            reachable = None
            if state.screen is page.Screen.CHATS:
                reachable = self._reachable()
                self.keeper.keep_owner()
            return S.Probed(state, reachable)
        return self._outcome(work)

    def _sendnext(self, _: S.SendNext) -> S.Event:
        sender = self.sender
        if sender is None:
            return S.Sent(more=False)

        def work() -> S.Event:
            with self._driver() as browser:
                wait = sender.step(browser.driver)
            return S.Sent(more=wait is not None, wait_s=wait or 0.0)
        return self._with_store(work, S.Sent(more=True, wait_s=STORE_RETRY_S))

    def _readincoming(self, action: S.ReadIncoming) -> S.Event:
        receiver = self.receiver
        if receiver is None:
            return S.Received(unread=False)

        def work() -> S.Event:
            with self._driver() as browser:
                return S.Received(unread=receiver.step(browser.driver, open_unread=action.open_unread))
        return self._with_store(work, S.Received(unread=False))

    def _with_store(self, work: Callable[[], S.Event], meanwhile: S.Event) -> S.Event:
        """A messaging step; the store being unreachable is not the browser's failure: the
        step is skipped (and tried again at its next turn), said once per outage."""
        try:
            outcome = self._outcome(work)
        except StoreUnavailable as exc:
            if not self._store_down:
                log.error("the message store is unavailable; sending and receiving wait for it: %s", exc)
            self._store_down = True
            return meanwhile
        if self._store_down:
            log.info("the message store answers again")
            self._store_down = False
        return outcome

    # -- messages' events ------------------------------------------------------------------------
    def publish(self, name: str, message: OutgoingMessage) -> None:
        self.bus.publish(name, **message.to_json())

    def _published_in(self, message: IncomingMessage) -> None:
        self.bus.publish("message_received", **message.to_json())

    def fail_waiting(self, why: str) -> None:
        """A logout: what is still queued must not go out from the next account linked."""
        if self.store is None:
            return
        try:
            failed = self.store.fail_queued("logged_out", why, utcnow())
        except StoreUnavailable as exc:
            log.error("could not fail the queued messages (%s): they stay queued: %s", why, exc)
            return
        for message in failed:
            self.publish("message_failed", message)

    def _restorenext(self, action: S.RestoreNext) -> S.Event:
        """Newest backup not tried yet; the browser is closed only once there is one."""
        tried = set(action.tried)
        closed = False
        while (name := self.keeper.next_restore(tried)) is not None:
            tried.add(name)
            if not closed:
                log.warning("the saved login did not open (a QR was shown): restoring backup %s", name)
                self._close(S.Close(3.0))
                closed = True
            try:
                self.keeper.restore(name, self.profile_dir)
            except BackupError as exc:
                log.warning("backup %s did not restore: %s", name, exc)
                continue
            return S.Restored(frozenset(tried), name, browser_closed=True)
        if closed or self._browser is None:
            log.error("the saved login is broken and no backup restores it: a new QR is needed")
        return S.Restored(frozenset(tried), None, browser_closed=closed)

    def _logoutpage(self, _: S.LogOutPage) -> S.Event:
        browser = self._browser
        if browser is None or not browser.alive():
            return S.PageLoggedOut(told_phone=False)
        try:
            with self._driver() as running:
                return S.PageLoggedOut(told_phone=page.log_out(running.driver, timeout=LOG_OUT_S))
        except DRIVER_ERRORS as exc:  # dead or hung: the login is deleted anyway
            log.warning("could not log out from the page: %r", exc)
            return S.PageLoggedOut(told_phone=False)

    def _checkreachable(self, _: S.CheckReachable) -> S.Event:
        return S.Reachability(self._reachable())

    def _reachable(self) -> bool:
        """The page keeps its chats on screen while WhatsApp is unreachable: ask the server too."""
        request = urllib.request.Request(self.config.web_url, method="HEAD")
        try:
            timeout = min(REACHABILITY_TIMEOUT_S, self.config.page_timeout_s)
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read(0)
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (OSError, ValueError) as exc:
            log.info("WhatsApp Web did not answer: %s", exc)
            return False
        return True

    def screenshot(self) -> bytes | None:
        """A PNG of what the browser shows now (one bounded driver call), or None."""
        try:
            with self._driver() as browser:
                return browser.driver.get_screenshot_as_png()
        except (_NoBrowser, *DRIVER_ERRORS) as exc:
            log.info("no screenshot: %r", exc)
            return None

    # -- actions without an outcome ------------------------------------------------------------
    def _saveevidence(self, _: S.SaveEvidence) -> None:
        folder = self.config.session_dir / "unrecognized"
        try:
            with self._driver() as browser:
                path = evidence.save(browser.driver, folder)
        except (_NoBrowser, *DRIVER_ERRORS) as exc:
            log.warning("the page is not one WhatsApp Web is known to show, and no screenshot could "
                        "be taken: %r", exc)
            return
        log.error("the page is not one WhatsApp Web is known to show (a new build?): screenshot %s, "
                  "outline %s; compare it with whatsapp/web/locators.py", path, path.with_suffix(".json"))

    def _clickreload(self, _: S.ClickReload) -> None:
        log.info("the QR codes expired and someone is looking: asking for new ones")
        self._try_on_page(page.click_reload)

    def _usehere(self, _: S.UseHere) -> None:
        self._try_on_page(page.use_here)

    def _try_on_page(self, click: Callable) -> None:
        # A failure here is seen by the next read of the page, which judges it.
        try:
            with self._driver() as browser:
                click(browser.driver)
        except (_NoBrowser, *DRIVER_ERRORS) as exc:
            log.info("%s did not go through: %r", click.__name__, exc)

    def _close(self, action: S.Close) -> None:
        with self._guard:
            browser, self._browser = self._browser, None
        if browser is not None:
            browser.close(action.deadline)

    def _releaselock(self, _: S.ReleaseLock) -> None:
        self._lock.release()

    def _markready(self, action: S.MarkReady) -> None:
        self.keeper.on_ready(action.account, linked_now=action.linked_now)

    def _backup(self, action: S.Backup) -> None:
        self.keeper.take_backup(self.profile_dir, action.account)

    def _forgetlogin(self, _: S.ForgetLogin) -> None:
        self.keeper.on_logged_out()
        self.fail_waiting("The phone logged this device out before the message was sent.")

    def _deletelogin(self, _: S.DeleteLogin) -> None:
        # The profile folder is deleted only by the process that holds (or can take) its
        # lock: another server waiting on this folder must not pull it from under the owner,
        # which learns of the clearing and deletes it itself.
        self.keeper.forget(self.profile_dir, own_profile=self._lock.acquire())
        self.fail_waiting("The session was disconnected before the message was sent.")

    def _cleanshutdown(self, action: S.CleanShutdown) -> None:
        if self.killed:
            # A killed browser may not have written its storage: neither a backup of it nor
            # a clean-shutdown mark would be true.
            log.warning("the browser had to be killed: no shutdown backup, no clean-shutdown mark")
            return
        self.keeper.on_clean_shutdown(self.profile_dir, action.account, action.ready_for)


class _NoBrowser(Exception):
    """A driver action ran with no browser (closed meanwhile): the browser is gone."""

