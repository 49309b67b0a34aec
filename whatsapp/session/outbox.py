"""What the owner thread knows of the outbox without asking the store each time.

`/status` and `/metrics` read `status()`: counts kept from the last count (by the owner
after each send step and once per burst of accepts), never a query of their own, with the
oldest message's age running on from then; an accept or a cancel adjusts them at once
(`adjust`, no I/O), so that the answer to a POST is not held up by a second transaction.
`waiting` tells the machine whether there is anything to send (set by an accept, cleared
when a send step finds nothing left). `housekeeping()` expires messages queued past
WHATSAPP_MESSAGE_TTL_S (in any status: they may have waited for a session that never came
back) and prunes old idempotency keys, once a minute.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from ..messages import MessageStore, OutgoingMessage, StoreUnavailable
from ..states import utcnow

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 60.0


class Outbox:
    def __init__(self, store: MessageStore | None, ttl_s: float, publish: Callable[[str, OutgoingMessage], None]):
        self.store = store
        self.ttl = timedelta(seconds=ttl_s)
        self.publish = publish
        self.waiting = False
        # monotonic: the next housekeeping; the first is made due once the store has opened
        # (`start`), so that nothing of the owner's waits for the store before the launch.
        self.housekeeping_at = time.monotonic() + HOUSEKEEPING_S
        self._counts: dict = {"queued": 0, "sending": 0, "oldestQueuedAgeS": None}
        self._counted_at = time.monotonic()

    def status(self) -> dict:
        """`{"queued", "sending", "oldestQueuedAgeS"}` (no I/O)."""
        counts, counted_at = self._counts, self._counted_at
        age = counts.get("oldestQueuedAgeS")
        return {"queued": counts.get("queued", 0), "sending": counts.get("sending", 0),
                "oldestQueuedAgeS": None if age is None else round(age + time.monotonic() - counted_at, 3)}

    def adjust(self, queued: int) -> None:
        """A message was queued (+1) or cancelled (-1) just now: the counts until the next count."""
        counts = dict(self._counts)
        counts["queued"] = max(0, int(counts.get("queued") or 0) + queued)
        if counts.get("oldestQueuedAgeS") is None and counts["queued"]:
            counts["oldestQueuedAgeS"], self._counted_at = 0.0, time.monotonic()
        self._counts = counts

    def count(self) -> None:
        """Count again (any thread); the last counts stay when the store does not answer."""
        if self.store is None:
            return
        try:
            self._counts, self._counted_at = self.store.counts(utcnow()), time.monotonic()
        except StoreUnavailable:
            pass  # the store's trouble is logged where it matters (the API, the sender)

    def start(self, opened: Callable[[], None]) -> threading.Thread | None:
        """At the session's start: open the store beside the browser's launch
        (`MessageStore.open_soon`, on a thread of its own, returned), then count what is left
        from before (queued, or sending at a crash: `waiting`), make the first housekeeping
        due, and call `opened()` (also when the open failed: calls then fail as usual).
        Until then nothing of the owner's waits for the store."""
        if self.store is None:
            return None

        def done() -> None:
            self.count()
            if self._counts.get("queued") or self._counts.get("sending"):
                self.waiting = True
            self.housekeeping_at = 0.0
            opened()

        return self.store.open_soon(then=done)

    def housekeeping(self) -> None:
        self.housekeeping_at = time.monotonic() + HOUSEKEEPING_S
        if self.store is None:
            return
        now = utcnow()
        try:
            expired = self.store.expire(now - self.ttl, now)
            self.store.prune(now)
        except StoreUnavailable as exc:
            log.warning("message housekeeping skipped: %s", exc)
            return
        for message in expired:
            self.publish("message_failed", message)
        if expired:
            log.warning("%d queued message(s) expired (WHATSAPP_MESSAGE_TTL_S)", len(expired))
        self.count()
