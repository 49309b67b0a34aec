"""The receiver's judgement of what is new, on a real SQLite store and rows as the page gives them."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from whatsapp.messages.sqlite import SqliteMessageStore
from whatsapp.session.receiver import Receiver, dedupe_keys
from whatsapp.web.chat import OpenChat, Row

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def row(n: int, text: str | None = None) -> Row:
    return Row(wa_id=f"3A{n:018X}", direction="in", kind="text", text=text or f"message {n}",
               pre=f"[12:{n % 60:02d}, 01/12/2026] Priya: ", time=f"12:{n % 60:02d}, 01/12/2026",
               sender="Priya", sender_digits=None, ack=None)


@pytest.fixture
def store(tmp_path):
    opened = SqliteMessageStore(tmp_path / "m.sqlite3", "test")
    yield opened
    opened.close()


def receiver(store, published):
    return Receiver(store, publish_in=published.append, publish_out=lambda *_: None, clock=lambda: NOW)


def test_rows_after_the_newest_recorded_one_are_new_and_a_long_chat_is_fine(store):
    published = []
    rows = [row(n) for n in range(70)]  # more keys than the store takes in one question
    for r, keys in zip(rows[:40], dedupe_keys(rows[:40]), strict=True):
        store.add_incoming("Priya", keys, None, r.text, "text", r.wa_id, r.time, NOW)
    receiver(store, published)._take(OpenChat("Priya", None, tuple(rows)), unread=0)
    assert [m.text for m in published] == [f"message {n}" for n in range(40, 70)]


def test_a_chat_never_seen_is_history_but_for_its_badge(store):
    published = []
    rows = [row(n) for n in range(10)]
    receiver(store, published)._take(OpenChat("Priya", None, tuple(rows)), unread=3)
    assert [m.text for m in published] == ["message 7", "message 8", "message 9"]


def test_two_identical_messages_in_one_minute_are_two(store):
    published = []
    same = [row(1, "ok"), row(2, "ok")]
    same[1] = Row(**{**same[1].__dict__, "time": same[0].time, "pre": same[0].pre})
    receiver(store, published)._take(OpenChat("Priya", None, tuple(same)), unread=2)
    assert [m.text for m in published] == ["ok", "ok"]
