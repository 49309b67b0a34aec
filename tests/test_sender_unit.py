"""The sender's decisions that need no page, on a real SQLite store."""
from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from whatsapp.messages import Status
from whatsapp.messages.sqlite import SqliteMessageStore
from whatsapp.session import sender as sender_module
from whatsapp.session.sender import Sender

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class NoPage:
    """A driver that must not be touched."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the page was used ({name}) while sending had to wait")


def test_sending_waits_without_touching_the_page_while_the_disk_has_no_room(tmp_path, caplog):
    """Opening a new chat loads the page, and a page load on a full disk can come up without
    the login's keys (a QR: the soak's finding, seed 19): nothing is claimed meanwhile."""
    store = SqliteMessageStore(tmp_path / "messages.sqlite3", "test")
    message, _ = store.accept("15550002222", "hello", None, None, NOW, max_queued=10)
    room: list[str | None] = ["only 3 MiB free in /data"]
    sender = Sender(store, "http://wa.test/", ttl_s=3600, open_timeout_s=5, publish=lambda *_: None,
                    on_open=lambda *_: None, no_room=lambda: room[0], clock=lambda: NOW)
    with caplog.at_level(logging.INFO, logger=sender_module.__name__):
        assert sender.step(NoPage()) == sender_module.NO_ROOM_RECHECK_S
        assert sender.step(NoPage()) == sender_module.NO_ROOM_RECHECK_S
    assert store.get(message.id).status == Status.QUEUED and store.in_flight() == []
    assert [r.getMessage() for r in caplog.records] == ["sending waits: only 3 MiB free in /data"]  # once
    room[0] = None  # room again: the next step goes on to the page
    with caplog.at_level(logging.INFO, logger=sender_module.__name__), \
            pytest.raises(AssertionError, match="the page was used"):
        sender.step(NoPage())
    assert caplog.records[-1].getMessage() == "sending goes on: there is room on the disk again"
    store.close()
