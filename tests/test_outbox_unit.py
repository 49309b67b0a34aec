"""What the owner keeps of the outbox's counts, on a real SQLite store."""
from __future__ import annotations

import threading
from datetime import UTC, datetime

from whatsapp.messages.sqlite import SqliteMessageStore
from whatsapp.session.outbox import Outbox

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_accepts_and_cancels_adjust_the_counts_at_once_and_a_count_makes_them_exact(tmp_path):
    """An accept answers without a second transaction: it adjusts the kept counts; the owner's
    next count (once per burst of accepts) replaces them with the store's."""
    store = SqliteMessageStore(tmp_path / "messages.sqlite3", "test")
    outbox = Outbox(store, ttl_s=3600, publish=lambda *_: None)
    opened: list[bool] = []
    opening = outbox.start(opened=lambda: opened.append(True))
    assert opening is not None
    opening.join(timeout=10)
    assert not opening.is_alive() and opened == [True] and not outbox.waiting  # nothing from before
    assert outbox.housekeeping_at == 0.0  # due now that the store answers
    assert outbox.status() == {"queued": 0, "sending": 0, "oldestQueuedAgeS": None}
    ids = [store.accept("15550002222", f"m{n}", None, None, NOW, max_queued=10)[0].id for n in range(3)]
    for _ in ids:
        outbox.adjust(+1)
    kept = outbox.status()
    assert kept["queued"] == 3 and kept["oldestQueuedAgeS"] is not None and kept["oldestQueuedAgeS"] >= 0
    store.cancel(ids[0], NOW)
    outbox.adjust(-1)
    assert outbox.status()["queued"] == 2
    outbox.adjust(-5)  # never below zero, whatever the order of adjustments
    assert outbox.status()["queued"] == 0
    outbox.count()
    assert outbox.status()["queued"] == 2 and outbox.status()["sending"] == 0
    store.close()


def test_messages_left_from_before_are_counted_once_the_store_opens(tmp_path):
    """A restart: the store opens beside the launch (not before it); once it has, what waits
    from before (queued, and sending at a crash) is counted and the owner is told."""
    path = tmp_path / "messages.sqlite3"
    first = SqliteMessageStore(path, "test")
    ids = [first.accept("15550002222", f"m{n}", None, None, NOW, max_queued=10)[0].id for n in range(2)]
    first.claim(ids[0], NOW)  # sending when the server died
    first.close()
    store = SqliteMessageStore(path, "test", open_now=False)
    outbox = Outbox(store, ttl_s=3600, publish=lambda *_: None)
    opened = threading.Event()
    outbox.start(opened=opened.set)
    try:
        assert opened.wait(10)
        assert outbox.waiting
        assert {k: outbox.status()[k] for k in ("queued", "sending")} == {"queued": 1, "sending": 1}
    finally:
        store.close()
