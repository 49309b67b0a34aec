"""Sending the outbox, one message per step, exactly once whatever dies in between.

`Sender.step(driver)` is called by the owner thread while the session is ready, when the
state machine says it is time (in order, `WHATSAPP_SEND_INTERVAL_S` apart, between health
probes). One step handles one message:

1. A message still `sending` from before (the browser, chromedriver or the server died, a
   send timed out, or it was typed while offline) is looked for in its chat first: the row
   with its waId, else an outgoing row with its text written since it was accepted. Found:
   it is not typed again (on the clock it is WhatsApp's to send; with a tick it is sent).
   Not found: it is typed again, counted as another attempt.
2. Else the oldest queued message is claimed (queued -> sending, durably) and typed: in the
   chat already open, or through the `/send?phone=&text=` URL. The invalid-number dialog
   fails it with `not_on_whatsapp`. The new outgoing row confirms it: its `data-id` is the
   waId; a tick makes it `sent`, the clock leaves it `sending` with its waId (typed offline:
   it goes out when the connection is back, and is never typed twice).

A send whose row never shows is ambiguous and stays `sending`: the next step looks before
typing again. Browser failures propagate (the machine reconnects); the message stays where
the store says, and step 1 picks it up after the reconnect.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ..failures import PageUnresponsive
from ..messages import MessageStore, NotClaimable, OutgoingMessage, Status
from ..states import utcnow
from ..web import chat
from .clock import written_since

log = logging.getLogger(__name__)

CONFIRM_S = 10.0        # typed -> the outgoing row appears (with the clock or a tick)
TICK_S = 5.0            # the row appeared on the clock -> the first tick, before moving on
CLOCK_RECHECK_S = 60.0  # a message left on the clock is looked at again in its chat after this
NO_ROOM_RECHECK_S = 2.0  # no room on the disk for a page load: how often sending looks again
ACKS = {"sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ}

Publish = Callable[[str, OutgoingMessage], None]


class Sender:
    def __init__(self, store: MessageStore, web_url: str, *, ttl_s: float, open_timeout_s: float,
                 publish: Publish, on_open: Callable[[tuple[chat.UnreadChat, ...], chat.OpenChat], None],
                 no_room: Callable[[], str | None] = lambda: None, clock: Callable[[], datetime] = utcnow):
        """`on_open(unread_before, view)` is told of every chat this opens (the receiver must
        know which of its rows were unread: opening a chat marks them read). `no_room()` says
        why the disk has no room for a page load, or None: sending waits meanwhile, since
        opening a new chat loads the page (`files.room_for_chromium`)."""
        self.store = store
        self.on_open = on_open
        self.web_url = web_url
        self.ttl = timedelta(seconds=ttl_s)
        self.open_timeout_s = open_timeout_s
        self.publish = publish
        self.clock = clock
        self.no_room = no_room
        self._held: str | None = None  # why sending waited at the last step
        self._clocked: dict[str, float] = {}  # message id -> when it was last seen on the clock

    def step(self, driver) -> float | None:
        """Handle one message. Returns when to look again: 0 (more to do now), seconds (only
        messages on the clock are left, or no room on the disk for a page load: look again
        then), or None (nothing left)."""
        held = self.no_room()
        if bool(held) != bool(self._held):  # logged when it begins and ends, not at every look
            if held:
                log.warning("sending waits: %s", held)
            else:
                log.info("sending goes on: there is room on the disk again")
        self._held = held
        if held:
            return NO_ROOM_RECHECK_S
        clocked = []
        for waiting in self.store.in_flight():
            if not self._on_the_clock(waiting):
                self._resolve(driver, waiting)
                return 0.0
            clocked.append(CLOCK_RECHECK_S - (time.monotonic() - self._clocked[waiting.id]))
        message = self.store.next_queued()
        if message is None:
            return max(0.0, min(clocked)) if clocked else None
        now = self.clock()
        if message.created_at < now - self.ttl:
            failed = self.store.fail(message.id, "expired", "It waited longer than WHATSAPP_MESSAGE_TTL_S.", now)
            if failed is not None:
                self.publish("message_failed", failed)
            return 0.0
        try:
            claimed = self.store.claim(message.id, now)
        except NotClaimable:
            return 0.0  # cancelled or expired meanwhile
        self._type(driver, claimed)
        return 0.0

    # -- a message from before ----------------------------------------------------------------
    def _on_the_clock(self, message: OutgoingMessage) -> bool:
        """Typed and seen on the clock lately: WhatsApp sends it when it can (its tick comes
        through the receiver while its chat is open); never typed again. Later, or after a
        restart, it is looked at in its chat (`_resolve`), which finds it by its waId."""
        clocked = self._clocked.get(message.id)
        return message.wa_id is not None and clocked is not None and time.monotonic() - clocked < CLOCK_RECHECK_S

    def _resolve(self, driver, message: OutgoingMessage) -> None:
        if not self._open(driver, message, ""):
            return
        inbox = chat.read_inbox(driver)
        row = self._find(inbox.open.rows, message)
        if row is not None:
            log.info("message %s was already in its chat (waId %s, %s): not typed again",
                     message.id, row.wa_id, row.ack)
            self._confirmed(message, row)
            return
        log.info("message %s is not in its chat: typing it again (attempt %d)", message.id, message.attempts + 1)
        try:
            again = self.store.retry_claim(message.id, self.clock())
        except NotClaimable:
            return
        self._type(driver, again, opened=True)

    def _find(self, rows, message: OutgoingMessage) -> chat.Row | None:
        outgoing = [row for row in rows if row.direction == "out"]
        if message.wa_id:
            for row in outgoing:
                if row.wa_id == message.wa_id:
                    return row
        taken = self.store.wa_ids_to(message.to, since=message.created_at - timedelta(minutes=1))
        for row in reversed(outgoing):  # the newest first: ours came last
            if row.text == message.text and row.wa_id not in taken and written_since(row.time, message.created_at):
                return row
        return None

    # -- typing -------------------------------------------------------------------------------
    def _open(self, driver, message: OutgoingMessage, text: str) -> bool:
        """The message's chat open (with `text` in the box); False when the number is not on WhatsApp."""
        inbox = chat.read_inbox(driver)
        if inbox.open.title_digits == message.to and not text:
            return True
        outcome = chat.open_by_url(driver, self.web_url, message.to, text, self.open_timeout_s)
        if outcome == "ready":
            self.on_open(inbox.unread, chat.read_inbox(driver).open)
        if outcome == "invalid":
            chat.dismiss_dialog(driver)
            failed = self.store.fail(message.id, "not_on_whatsapp",
                                     f"{message.to} is not on WhatsApp (the page said the number is invalid).",
                                     self.clock())
            if failed is not None:
                log.warning("message %s: %s is not on WhatsApp", message.id, message.to)
                self.publish("message_failed", failed)
            return False
        if outcome == "timeout":
            raise PageUnresponsive(f"the chat with {message.to} did not open within {self.open_timeout_s:g} s")
        return True

    def _type(self, driver, message: OutgoingMessage, opened: bool = False) -> None:
        inbox = chat.read_inbox(driver)
        if opened or inbox.open.title_digits == message.to:
            typed = chat.type_text(driver, message.text)
        else:
            if not self._open(driver, message, message.text):
                return
            typed = True  # the /send URL put the text in the box
            inbox = chat.read_inbox(driver)
        if not typed:
            raise PageUnresponsive("the compose box did not take the text")
        known = {row.wa_id for row in inbox.open.rows}
        chat.press_send(driver)
        row = chat.wait_outgoing(driver, message.text, known, CONFIRM_S)
        if row is None:
            # Ambiguous: it may have gone out. The next step looks before typing it again.
            log.warning("message %s: no outgoing row within %g s; it will be looked for before any retry",
                        message.id, CONFIRM_S)
            return
        if row.ack == "pending":
            row = chat.wait_ack(driver, row.wa_id, TICK_S) or row
        self._confirmed(message, row)

    def _confirmed(self, message: OutgoingMessage, row: chat.Row) -> None:
        now = self.clock()
        status = ACKS.get(row.ack or "")
        if status is None:  # on the clock: WhatsApp has it and sends it when it can
            self.store.note_wa_id(message.id, row.wa_id)
            self._clocked[message.id] = time.monotonic()
            log.info("message %s typed but on the clock (offline?): WhatsApp sends it when it can", message.id)
            return
        self._clocked.pop(message.id, None)
        updated = self.store.mark(message.id, status, now, wa_id=row.wa_id)
        if updated is not None:
            self.publish("message_sent", updated)
            if status in (Status.DELIVERED, Status.READ):
                self.publish("message_delivered", updated)
            if status is Status.READ:
                self.publish("message_read", updated)
