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
open in this browser, its rows then on screen are history, except the last N incoming
ones of a chat opened for its badge of N; they are remembered (in memory, per browser) and
not published. So a restart, a reconnect or a re-render publishes nothing twice (the store
says so), and what came while the server or the browser was down is still unread and
opened by its badge.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime

from ..messages import IncomingMessage, MessageStore, OutgoingMessage, Status
from ..states import utcnow
from ..web import chat

log = logging.getLogger(__name__)

ACKS = {"sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ}
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
                 publish_out: Callable[[str, OutgoingMessage], None], clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.publish_in = publish_in
        self.publish_out = publish_out
        self.clock = clock
        self._history: dict[str, set[str]] = {}   # chat title -> keys of rows there when first seen

    def forget_browser(self) -> None:
        """A new browser: what was on screen before says nothing about what it will show."""
        self._history.clear()

    def opened(self, unread_before: tuple[chat.UnreadChat, ...], view: chat.OpenChat) -> None:
        """The sender opened `view` (through /send): if that chat had a badge just before, its
        last N incoming rows are new, not history."""
        counts = {each.title: each.count for each in unread_before}
        self._take(view, unread=counts.get(view.title or "", 0))

    def step(self, driver, *, open_unread: bool) -> bool:
        """One read (and at most one chat opened); True while chats with unread messages remain."""
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
        incoming = [row for row in view.rows if row.direction == "in"]
        keyed = list(zip(incoming, dedupe_keys(incoming), strict=True))
        if view.title not in self._history:
            history_rows = keyed[:len(keyed) - unread] if unread else keyed
            self._history[view.title] = {key for _, keys in history_rows for key in keys}
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
