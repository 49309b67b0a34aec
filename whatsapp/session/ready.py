"""The rules of a ready page: the health probe on time, sends and reads of incoming
messages taking turns between probes, backups only after a probe saw the chats."""
from __future__ import annotations

from ..failures import NetworkDown, UnsupportedBrowser
from ..states import Status
from ..web.page import PageState, Screen
from . import steps as S
from .machine_base import FAST_WATCH_S, RECHECK_S, UNREACHABLE_LIMIT, MachineBase, Phase


class Ready(MachineBase):
    def _became_ready(self, page: PageState) -> None:
        restored = not self._qr_shown
        self.backoff.reset()
        self._tried = frozenset()
        self._conflict_seen = False
        self._unreachable = 0
        self.ready_since = self._now
        self.phase = Phase.READY
        self._probe_at = self._now + min(self.timing.monitor_interval_s, max(0.0, self._facts.backup_in))
        self._send_at = self._receive_at = self._read_at = self._now
        self._ready_due()
        # The record first, so that /status shows both together.
        self._do(S.MarkReady(page.account, linked_now=not restored))
        self._update(status=Status.READY, account=page.account, has_session=True, qr=None,
                     reconnect_attempts=0, next_reconnect_at=None, last_ready_at=self._facts.wall,
                     monitor_active=True)
        self._do(S.Publish("ready", {"restored": restored, "phone": page.account.phone,
                                     "pushname": page.account.pushname}))

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
