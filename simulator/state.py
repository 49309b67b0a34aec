"""The simulator's state: the phone's linked devices, each open page's QR round, faults,
and (in `chats`, a `chats.Conversations` sharing this lock) the account's conversations.

Contract:
- One lock guards everything. `changed` (a Condition on that lock) is notified whenever
  something an open page could see changes, and `version` counts those changes; a page's
  live connection waits for `version` to pass the one it last saw (`poll`).
- QR codes belong to pages. A page that polls gets a round: the first code lives
  `qr_first_ttl` seconds, later ones `qr_ttl`; after `qr_max` codes the round is over (the
  page shows the reload button) until the page asks for a new round. Rotation is lazy but
  exact: `_advance` issues every code that is due whenever anyone looks, and a waiting poll
  wakes when its page's code expires. Pages that stop polling are forgotten after a few
  seconds (their codes then answer 410 when scanned).
- Devices: linking creates `<phone>:<n>@c.us` with a random secret (the browser keeps the
  same secret in IndexedDB); n grows for the life of the process, even across `reset`.
- Time is `time.monotonic()`; ISO timestamps are for display only.
- A linked page's poll that passes `mseq` (the last conversation change it has seen) also
  gets what changed in the conversations since (`Conversations.updates_locked`).
- Redesign (`set_redesign`, a test control): WhatsApp shipped a build whose markup has none
  of the documented markers. Every snapshot carries `redesign`; a page showing the new
  layout polls with `watch` (no QR round, no device: it only waits for the flag to change).
  Nothing else changes: devices, codes and conversations stay as they are.
"""

import collections
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import codes
from .chats import Conversations
from .options import Options, SimError

WID_RE = re.compile(r"^(\d{5,20}):(\d{1,9})@c\.us$")
PAGE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

@dataclass
class Code:
    payload: str
    page_id: str
    issued_at: float
    expires_at: float


@dataclass
class Page:
    id: str
    last_seen: float
    codes: list = field(default_factory=list)  # this round's codes, oldest first
    round_over: bool = False
    device: int | None = None  # set when one of its codes was scanned
    polling: int = 0  # live connections now waiting


@dataclass
class Device:
    id: int
    wid: str
    linked_at: str
    secret: str
    noise: str

    def public(self) -> dict:
        return {"id": self.id, "wid": self.wid, "linked_at": self.linked_at}


class SimState:
    PAGE_FORGET_S = 5.0  # a page not polling for this long is gone
    CODES_KEPT = 10_000  # remembered payloads, so that old codes answer 410, not 404

    def __init__(self, options: Options | None = None):
        self.options = options or Options()
        self.changed = threading.Condition(threading.Lock())
        self.version = 1
        self._pages: dict[str, Page] = {}
        self._codes: collections.OrderedDict[str, Code] = collections.OrderedDict()
        self._issued = 0
        self._devices: dict[int, Device] = {}
        self._next_device = 2
        self._outage_until = 0.0
        self._flaky = 0
        self._conflict = 0
        self._redesign = False
        self._stopping = False
        self.chats = Conversations(self.options, self.changed, self._bump)

    # -- internals (lock held) ------------------------------------------------------

    def _bump(self):
        self.version += 1
        self.changed.notify_all()

    def _issue(self, page: Page, start: float, ttl: float):
        code = Code(codes.new_payload(self.options.platform), page.id, start, start + ttl)
        page.codes.append(code)
        self._codes[code.payload] = code
        while len(self._codes) > self.CODES_KEPT:
            self._codes.popitem(last=False)
        self._issued += 1

    def _new_round(self, page: Page, now: float):
        page.codes, page.round_over = [], False
        self._issue(page, now, self.options.qr_first_ttl)
        self._bump()

    def _page(self, page_id: str, now: float) -> Page:
        page = self._pages.get(page_id)
        if page is None:
            page = self._pages[page_id] = Page(page_id, now)
        page.last_seen = now
        if page.device is not None and page.device not in self._devices:
            page.device, page.codes = None, []  # unlinked before the page learned it was linked
        if page.device is None and not page.codes:
            self._new_round(page, now)
        return page

    def _advance(self, now: float):
        """Forget gone pages, issue every code that is due, end rounds that are over."""
        changed = False
        for page in list(self._pages.values()):
            if page.polling == 0 and now - page.last_seen > self.PAGE_FORGET_S:
                del self._pages[page.id]
                continue
            if page.device is not None or page.round_over or not page.codes:
                continue
            while page.codes[-1].expires_at <= now and len(page.codes) < self.options.qr_max:
                self._issue(page, page.codes[-1].expires_at, self.options.qr_ttl)
                changed = True
            if page.codes[-1].expires_at <= now:
                page.round_over = changed = True
        if changed:
            self._bump()

    def _live_code(self, page: Page, now: float) -> Code | None:
        if page.device is None and not page.round_over and page.codes:
            code = page.codes[-1]
            if code.expires_at > now:
                return code
        return None

    def _outage(self, now: float) -> bool:
        return now < self._outage_until

    # -- the web side (what a page asks over HTTP) -----------------------------------

    def outage_active(self) -> bool:
        return self._outage(time.monotonic())

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def redesign(self) -> bool:
        return self._redesign

    def poll(self, page_id: str, device: int | None, since: int, timeout: float,
             mseq: int | None = None, watch: bool = False) -> dict | None:
        """Wait until `version` passes `since` (or `timeout`), then return what the page
        should show. None when an outage begins or the server stops: the caller drops the
        connection. `device` set means a linked page asking about its device (and, with
        `mseq`, about conversation changes after it). `watch` means a page showing the
        redesigned layout: it only learns `version` and `redesign`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            page = None
            try:
                while True:
                    now = time.monotonic()
                    if self._stopping or self._outage(now):
                        return None
                    if device is None and not watch:
                        if page is None:
                            page = self._page(page_id, now)
                            page.polling += 1
                        else:
                            page = self._page(page_id, now)  # re-touch (may start a round)
                    self._advance(now)
                    behind = mseq is not None and device is not None and self.chats.seq > mseq
                    if self.version > since or now >= deadline or behind:
                        if watch:
                            return {"version": self.version, "redesign": self._redesign}
                        return self._snapshot(page, device, now, mseq)
                    wake = deadline
                    if page is not None and self._live_code(page, now):
                        wake = min(wake, page.codes[-1].expires_at)
                    self.changed.wait(max(0.005, wake - now))
            finally:
                if page is not None:
                    page.polling -= 1
                    page.last_seen = time.monotonic()

    def _snapshot(self, page: Page | None, device: int | None, now: float, mseq: int | None) -> dict:
        snap: dict[str, object] = {"version": self.version, "redesign": self._redesign}
        if page is None:
            snap["device"] = {"id": device, "linked": device in self._devices}
            snap["conflict"] = self._conflict
            if mseq is not None and device in self._devices:
                snap.update(self.chats.updates_locked(mseq))
        elif page.device is not None:
            dev = self._devices[page.device]
            snap["linked"] = {
                "wid": dev.wid, "device": dev.id, "secret": dev.secret, "noise": dev.noise,
                "pushname": self.options.pushname, "platform": self.options.platform,
                "conflict": self._conflict, "sync_seconds": self.options.sync_seconds,
            }
        else:
            snap["qr"] = {"payload": page.codes[-1].payload, "expired": page.round_over}
        return snap

    def reload_qr(self, page_id: str):
        """The page's reload button: start a new round of codes."""
        with self.changed:
            now = time.monotonic()
            page = self._page(page_id, now)
            self._advance(now)
            if page.device is None and page.round_over:
                self._new_round(page, now)

    def login_check(self, wid: str, secret: str | None) -> dict:
        """What a page with a stored login learns on load: status `ok` (with the device),
        `unlinked` (the login is gone: clear it), `mismatch` (key material missing or
        wrong: not logged in, keep storage). Raises 503 `temporary` while flaky."""
        with self.changed:
            if self._flaky > 0:
                self._flaky -= 1
                raise SimError(503, "temporary", "Temporary authentication error, try again.")
            match = WID_RE.match(wid)
            dev = self._devices.get(int(match[2])) if match else None
            if dev is None or dev.wid != wid:
                return {"status": "unlinked"}
            if not secret or not hmac.compare_digest(secret.encode(), dev.secret.encode()):
                return {"status": "mismatch"}
            return {"status": "ok", "device": dev.id, "conflict": self._conflict,
                    "sync_seconds": self.options.sync_seconds}

    def require_device(self, device: int | None):
        """401 unless `device` is linked now: only a linked page may read or send messages."""
        with self.changed:
            if device is None or device not in self._devices:
                raise SimError(401, "unlinked", "This device is not linked.")

    def web_logout(self, wid: str, secret: str | None) -> bool:
        """The page's own "Log out": removes its device when the secret matches."""
        with self.changed:
            match = WID_RE.match(wid)
            dev = self._devices.get(int(match[2])) if match else None
            if dev is None or not secret or not hmac.compare_digest(secret.encode(), dev.secret.encode()):
                return False
            del self._devices[dev.id]
            self._bump()
            return True

    # -- the phone side ----------------------------------------------------------------

    def key_material(self) -> list[str]:
        """Every secret a linked browser holds (device secrets, WANoiseInfo's keys): for
        tests that check none of it ever reaches a log. Not served over HTTP."""
        found = []
        with self.changed:
            for dev in self._devices.values():
                found.append(dev.secret)
                for pair in json.loads(dev.noise).values():
                    found.extend(pair.values())
        return found

    def phone_state(self) -> dict:
        with self.changed:
            now = time.monotonic()
            self._advance(now)
            live = [c for c in (self._live_code(p, now) for p in self._pages.values()) if c]
            qr = max(live, key=lambda c: c.issued_at).payload if live else None
            return {
                "qr": qr,
                "qr_issued": self._issued,
                "devices": [d.public() for d in self._devices.values()],
                "outage": self._outage(now),
                "outage_remaining": round(max(0.0, self._outage_until - now), 3),
                "flaky": self._flaky,
                "redesign": self._redesign,
                "pages": len(self._pages),
            }

    def scan(self, payload: str) -> dict:
        """Link a device as the phone does after reading `payload`; 404 never shown, 410
        rotated out (or its round over, or its page gone or already linked)."""
        with self.changed:
            now = time.monotonic()
            self._advance(now)
            code = self._codes.get(payload)
            if code is None:
                raise SimError(404, "unknown_qr", "This QR code was never shown.")
            page = self._pages.get(code.page_id)
            if page is None or self._live_code(page, now) is not code:
                raise SimError(410, "qr_expired", "This QR code has rotated out; scan the one shown now.")
            dev_id, self._next_device = self._next_device, self._next_device + 1
            dev = Device(dev_id, f"{self.options.phone}:{dev_id}@c.us",
                         datetime.now(UTC).isoformat(timespec="seconds"),
                         codes.new_secret(), codes.noise_info())
            self._devices[dev_id] = dev
            page.device = dev_id
            self._bump()
            return dev.public()

    def phone_logout(self, device: int | None = None) -> list[int]:
        """Remove one device (404 if unknown) or, with None, every device."""
        with self.changed:
            if device is None:
                removed = list(self._devices)
            elif device in self._devices:
                removed = [device]
            else:
                raise SimError(404, "unknown_device", f"No linked device {device}.")
            for dev_id in removed:
                del self._devices[dev_id]
            self._bump()
            return removed

    def set_outage(self, seconds: float):
        with self.changed:
            self._outage_until = time.monotonic() + seconds if seconds > 0 else 0.0
            self._bump()

    def set_flaky(self, count: int):
        with self.changed:
            self._flaky = count

    def conflict(self):
        with self.changed:
            self._conflict += 1
            self._bump()

    def set_redesign(self, on: bool):
        """WhatsApp ships (or rolls back) a build with none of the documented markers: open
        pages switch layout through their live connection, pages loaded later start in it."""
        with self.changed:
            self._redesign = on
            self._bump()

    def reset(self, messages: bool = False):
        """Forget every device, end any outage, flakiness and redesign. Conversations are
        the server's and stay, unless `messages` (then back to the demo chats)."""
        with self.changed:
            self._devices.clear()
            self._outage_until, self._flaky, self._redesign = 0.0, 0, False
            self._bump()
        if messages:
            self.chats.reset()

    def stop(self):
        """Make every waiting poll return now, and later ones at once."""
        with self.changed:
            self._stopping = True
            self.changed.notify_all()
