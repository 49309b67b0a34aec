"""Incoming messages: read from the page, stored once, published once; ticks of our own.

`Receiver.step(driver)` is called by the owner thread while the session is ready, taking
turns with the sender. One step reads the page once (`chat.read_inbox`: the open chat's
rows and the chats with an unread badge) and then:

- publishes the open chat's incoming rows that are new (a message for the chat open in
  `#main` shows there at once and is marked read: it never gets a badge);
- moves our own messages forward from the ticks of the open chat's outgoing rows;
- opens one chat with an unread badge, when asked to (`open_unread`), and publishes its
  new rows. Opening a chat marks it read on the sender's phone, as it does for a person.

"New": a row whose dedupe keys (its `data-id` in both forms, and time + text + sender for a
row whose id changes) the store has not recorded for that chat. When a chat is first seen
open in this browser, the rows up to the newest one the store has recorded are history,
and the rows after it are new; in a chat the store knows nothing of, everything on screen
is history except the last N incoming rows of a chat opened for its badge of N. History is
remembered (in memory, per browser) and not published. So a restart, a reconnect or a
re-render publishes nothing twice (the store says so), and what came while the server or
the browser was down is still unread and opened by its badge.

One gap needs more: a message for the chat open in the page, arriving while the server
cannot look (killed with its browser still running, or chromedriver frozen), is shown and
marked read by the page at once: it never gets a badge. So the open chat's title is kept
on disk (`open_chat_path`), and a new browser opens that chat again first; its rows after
the newest recorded one are then published.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..messages import IncomingMessage, MessageStore, OutgoingMessage, Status
from ..persistence.files import write_atomic
from ..states import utcnow
from ..web import chat

log = logging.getLogger(__name__)

ACKS = {"sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ}
SEEN_BATCH = 90  # keys per store.seen() call (it takes at most 100)
EVENT_OF = {Status.SENT: "message_sent", Status.DELIVERED: "message_delivered", Status.READ: "message_read"}


def dedupe_keys(rows: list[chat.Row]) -> list[list[str]]:
    """Each row's keys: its `data-id` in both forms (`false_<chat>_<ID>` and the bare ID),
    and a fallback of time + sender + text for builds that change a row's id between
    renders, numbered among identical rows (two "ok" in one minute are two messages)."""
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        keys = [f"id:{row.wa_id}"]
        if "_" in row.wa_id:
            keys.append(f"id:{row.wa_id.rsplit('_', 1)[-1]}")
        shown = f"{row.time}|{row.sender}|{row.kind}|{row.text}"
        seen[shown] = seen.get(shown, 0) + 1
        keys.append(f"fb:{hashlib.sha256(shown.encode()).hexdigest()[:32]}#{seen[shown]}")
        out.append(keys)
    return out


class Receiver:
    def __init__(self, store: MessageStore, *, publish_in: Callable[[IncomingMessage], None],
                 publish_out: Callable[[str, OutgoingMessage], None], open_chat_path: Path | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.publish_in = publish_in
        self.publish_out = publish_out
        self.clock = clock
        self.open_chat_path = open_chat_path
        self._history: dict[str, set[str]] = {}   # chat title -> keys of rows there when first seen
        self._open_title: str | None = None       # the open chat, as last written to disk
        self._reopen: str | None = self._kept_open_chat()

    def forget_browser(self) -> None:
        """A new browser: what was on screen before says nothing about what it will show, and
        the chat that was open is looked at again first (see the module docstring)."""
        self._history.clear()
        self._reopen = self._open_title or self._kept_open_chat()

    def opened(self, unread_before: tuple[chat.UnreadChat, ...], view: chat.OpenChat) -> None:
        """The sender opened `view` (through /send): if that chat had a badge just before, its
        last N incoming rows are new, not history."""
        counts = {each.title: each.count for each in unread_before}
        self._take(view, unread=counts.get(view.title or "", 0))

    def step(self, driver, *, open_unread: bool) -> bool:
        """One read (and at most one chat opened); True while chats with unread messages remain."""
        if self._reopen is not None:
            title, self._reopen = self._reopen, None
            if chat.open_chat(driver, title, timeout=5.0):
                log.info("looking again at the chat %r that was open when the browser went", title)
            else:
                log.info("the chat %r that was open when the browser went is not in the list", title)
        inbox = chat.read_inbox(driver)
        self._take(inbox.open, unread=0)
        self._ticks(inbox.open)
        if not inbox.unread:
            return False
        if open_unread:
            target = inbox.unread[0]
            if chat.open_chat(driver, target.title, timeout=5.0):
                opened = chat.read_inbox(driver)
                self._take(opened.open, unread=target.count)
                self._ticks(opened.open)
                return len(opened.unread) > 0
            log.warning("could not open the chat %r with %d unread message(s)", target.title, target.count)
        return True

    def _take(self, view: chat.OpenChat, unread: int) -> None:
        if view.title is None:
            return
        self._note_open(view.title)
        incoming = [row for row in view.rows if row.direction == "in"]
        keyed = list(zip(incoming, dedupe_keys(incoming), strict=True))
        if view.title not in self._history:
            self._history[view.title] = self._first_sight(view.title, keyed, unread)
        history = self._history[view.title]
        for row, keys in keyed:
            if history.intersection(keys):
                continue
            message = self.store.add_incoming(
                view.title, keys, row.sender_digits or view.title_digits,
                row.text, "text" if row.kind == "text" else "unsupported", row.wa_id, row.time, self.clock())
            history.update(keys)  # published now, or recorded earlier: never again either way
            if message is not None:
                log.info("message received in %r (%s)", view.title, message.id)
                self.publish_in(message)

    def _first_sight(self, title: str, keyed: list[tuple[chat.Row, list[str]]], unread: int) -> set[str]:
        """The keys of the rows that are history when a chat is first seen in this browser."""
        every = [key for _, keys in keyed for key in keys]
        recorded: set[str] = set()
        for start in range(0, len(every), SEEN_BATCH):  # the store answers for so many keys at a time
            recorded |= self.store.seen(title, every[start:start + SEEN_BATCH])
        newest_known = max((i for i, (_, keys) in enumerate(keyed) if recorded.intersection(keys)), default=None)
        if newest_known is not None:
            history_rows = keyed[:newest_known + 1]
        else:
            history_rows = keyed[:len(keyed) - unread] if unread else keyed
        return {key for _, keys in history_rows for key in keys}

    def _note_open(self, title: str) -> None:
        if title == self._open_title:
            return
        self._open_title = title
        if self.open_chat_path is not None:
            try:
                write_atomic(self.open_chat_path, json.dumps({"title": title}).encode())
            except OSError as exc:
                log.warning("could not note the open chat in %s: %s", self.open_chat_path, exc)

    def _kept_open_chat(self) -> str | None:
        if self.open_chat_path is None:
            return None
        try:
            title = json.loads(self.open_chat_path.read_text()).get("title")
        except (OSError, ValueError, AttributeError):
            return None
        return title if isinstance(title, str) and title else None

    def _ticks(self, view: chat.OpenChat) -> None:
        if view.title is None:
            return
        acks = {row.wa_id: ACKS[row.ack] for row in view.rows if row.direction == "out" and row.ack in ACKS}
        if not acks:
            return
        for message in self.store.awaiting_ack(limit=200) + self.store.in_flight():
            status = acks.get(message.wa_id or "")
            if status is None or status.rank <= message.status.rank:
                continue
            updated = self.store.mark(message.id, status, self.clock())
            if updated is None:
                continue
            for step in (Status.SENT, Status.DELIVERED, Status.READ):
                if message.status.rank < step.rank <= status.rank:
                    self.publish_out(EVENT_OF[step], updated)
