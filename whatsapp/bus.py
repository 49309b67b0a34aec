"""Session events and the small synchronous bus that hands them to subscribers.

The session's owner thread publishes; subscribers (webhooks, the SSE stream, metrics)
must only enqueue or count: a subscriber that blocks would stall the browser's owner.

Event names (the `event` field of webhooks and the SSE stream):

| name              | data                                                             |
|-------------------|------------------------------------------------------------------|
| `status`          | `status`, `previous`, `reason` (on every status change)          |
| `qr`              | `qr` (the payload now shown; again on every rotation)            |
| `ready`           | `restored` (true when no QR was needed), `phone`, `pushname`     |
| `logged_out`      | `phone` (the phone removed this device)                          |
| `failed`          | `reason`, `attempts` (reconnect attempts used up)                |
| `reconnecting`    | `attempt`, `delay`, `reason`                                     |
| `browser_started` | `seconds` (launch time)                                          |
| `backup_created`  | `name`, `size`, `seconds`                                        |
| `backup_restored` | `name`, `source` (`local` or `database`)                         |
| `restore_failed`  | `reason` (no backup restored a broken login)                     |
| `message_sent`, `_delivered`, `_read`, `_failed` | the outgoing message object (contract 5) |
| `message_received` | the incoming message object                                     |
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from .states import iso, utcnow

log = logging.getLogger(__name__)

BACKLOG = 200  # events kept for a first subscriber that comes late (a start is a few dozen)


@dataclasses.dataclass(frozen=True)
class Event:
    name: str
    data: dict
    seq: int
    at: datetime = dataclasses.field(default_factory=utcnow)

    def to_json(self) -> dict:
        return {"event": self.name, "seq": self.seq, "timestamp": iso(self.at), "data": self.data}


Subscriber = Callable[[Event], None]


class Bus:
    def __init__(self, client_id: str = ""):
        self.client_id = client_id
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        # Published before the first subscriber: kept for it (None once it came).
        self._backlog: list[Event] | None = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber. The first one also gets, at once and in order, what was published
        before anyone subscribed (the session may start before the notifier exists)."""
        with self._lock:
            backlog, self._backlog = (self._backlog, None) if self._backlog is not None else ([], None)
            self._subscribers.append(subscriber)
        for event in backlog:
            self._deliver(subscriber, event)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def publish(self, name: str, /, **data) -> Event:
        with self._lock:
            event = Event(name, {"clientId": self.client_id, **data}, next(self._seq))
            subscribers = list(self._subscribers)
            if self._backlog is not None and not subscribers and len(self._backlog) < BACKLOG:
                self._backlog.append(event)
        for subscriber in subscribers:
            self._deliver(subscriber, event)
        return event

    @staticmethod
    def _deliver(subscriber: Subscriber, event: Event) -> None:
        try:
            subscriber(event)
        except Exception:  # a broken subscriber must never stop the session
            log.exception("event subscriber %r failed on %s", subscriber, event.name)
