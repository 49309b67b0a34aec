"""The rules while a browser runs but the session is not ready: the QR, the loading screen,
a broken login restored from a backup, a phone logout, another window (see `machine`)."""
from __future__ import annotations

from ..failures import NetworkDown, PageUnresponsive, UnrecognizedPage, UnsupportedBrowser
from ..states import Account, Reason, Status
from ..web.page import PageState, Screen
from . import steps as S
from .machine_base import FAST_WATCH_S, SETTLE_WAIT_S, WATCH_INTERVAL_S, MachineBase, Phase


class Watching(MachineBase):
    def _on_launched(self, seconds: float, has_session: bool) -> None:
        self._qr_shown = self._qr_accepted = self._conflict_seen = False
        self._deadline, self._deadline_s = self._now + self.timing.startup_timeout_s, self.timing.startup_timeout_s
        self._owner_due = self._now + self.timing.monitor_interval_s  # just checked by the launch
        self._read_wait = SETTLE_WAIT_S
        self._enter(Phase.WATCH, 0)
        self._update(has_session=has_session)
        self._do(S.Publish("browser_started", {"seconds": round(seconds, 3)}))

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
