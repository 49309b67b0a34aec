"""The message store: ONE suite of behaviour tests run against both backends (SQLite in
tmp_path, PostgreSQL from the session's throw-away server), then what only one backend has
(file permissions and damage; outages, frozen servers and masked passwords)."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sqlite3
import stat
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whatsapp.messages import schema
from whatsapp.messages.model import ErrorCode, IncomingMessage, InvalidRequest, Kind, Status, body_hash
from whatsapp.messages.postgres import PostgresMessageStore
from whatsapp.messages.sql import SqlStore
from whatsapp.messages.sqlite import SqliteMessageStore, default_path
from whatsapp.messages.store import (
    IdempotencyMismatch,
    InvalidCursor,
    NotCancellable,
    NotClaimable,
    NotFound,
    OutboxFull,
    StoreCorrupt,
    StoreUnavailable,
)

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
TO = "15550001111"
PG_TIMEOUT_S = 2.0
MAX = 10_000


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Backend:
    """Opens stores of one kind, each test on its own client ids; removes what they wrote."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest):
        self.kind, self.tmp_path = kind, tmp_path
        self.server = request.getfixturevalue("postgres") if kind == "postgres" else None
        if self.server is not None:
            self.server.start_server()  # a test that simulated an outage may have left it stopped
        self.stores: list[SqlStore] = []
        self.client_ids: set[str] = set()

    def open(self, client_id: str | None = None, **options) -> SqlStore:
        client_id = client_id or f"t-{uuid.uuid4().hex[:12]}"
        self.client_ids.add(client_id)
        if self.server is not None:
            store: SqlStore = PostgresMessageStore(self.server.url, client_id,
                                                   timeout_s=options.pop("timeout_s", PG_TIMEOUT_S), **options)
        else:
            store = SqliteMessageStore(default_path(self.tmp_path / "data", client_id), client_id, **options)
        self.stores.append(store)
        return store

    @contextlib.contextmanager
    def raw(self, store: SqlStore):
        """A separate connection to the store's database (autocommit), for looking inside."""
        if isinstance(store, SqliteMessageStore):
            conn = sqlite3.connect(store.path, isolation_level=None)
            try:
                yield _SqliteRaw(conn)
            finally:
                conn.close()
        else:
            with self.server.connect() as conn:
                yield _PgRaw(conn)

    def explain(self, store: SqlStore, sql: str, params: tuple) -> str:
        with self.raw(store) as raw:
            return raw.explain(sql, params)

    def close(self) -> None:
        for store in self.stores:
            store.close()
        if self.server is not None and self.server.running:
            with self.server.connect() as conn:
                for table in (schema.MESSAGES, schema.IDEMPOTENCY, schema.SEEN, schema.COUNTS):
                    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:  # created yet?
                        conn.execute(f"DELETE FROM {table} WHERE client_id = ANY(%s)", (list(self.client_ids),))


class _SqliteRaw:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def explain(self, sql: str, params: tuple) -> str:
        return "\n".join(row[-1] for row in self.rows("EXPLAIN QUERY PLAN " + sql, params))


class _PgRaw:
    def __init__(self, conn):
        self.conn = conn

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(sql.replace("?", "%s"), params).fetchall()

    def explain(self, sql: str, params: tuple) -> str:
        self.conn.execute(f"ANALYZE {schema.MESSAGES}")
        return "\n".join(row[0] for row in self.rows("EXPLAIN " + sql, params))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])
def backend(request, tmp_path):
    opened = Backend(request.param, tmp_path, request)
    yield opened
    opened.close()


@pytest.fixture
def store(backend):
    return backend.open()


def accept(store, text="hello", key=None, now=T0, to=TO, max_queued=MAX):
    return store.accept(to, text, key, body_hash(to, text), now, max_queued)


# -- accepting and idempotency ------------------------------------------------------------------


def test_accept_stores_a_queued_message_that_survives_reopening(backend, store):
    message, created = accept(store, "hi 👋\nsecond line", key="k-1")
    assert created is True
    assert message.status is Status.QUEUED and message.attempts == 0 and message.error is None
    assert message.to_json()["createdAt"] == "2026-11-22T10:00:00.000Z"
    assert message.idempotency_key == "k-1" and len(message.id) >= 16
    assert store.get(message.id) == message
    reopened = backend.open(store.client_id)
    assert reopened.get(message.id) == message
    assert reopened.next_queued() == message


def test_text_is_kept_exactly(store):
    texts = ["👨‍👩‍👧‍👦 and ✈️", "עברית\r\nالعربية\t中文", "x" * 65_536, "quote ' and \" and ?%s"]
    for text in texts:
        message, _ = accept(store, text)
        assert store.get(message.id).text == text


def test_same_key_and_body_answers_the_first_message_as_it_is_now(store):
    first, created = accept(store, key="order-42")
    assert created
    again, created = store.accept("+1 (555) 000-1111", "hello", "order-42", None, at(5), MAX)
    assert (again, created) == (first, False)
    store.claim(first.id, at(6))
    store.mark(first.id, Status.SENT, at(7), wa_id="WA1")
    again, created = accept(store, key="order-42", now=at(8))
    assert created is False and again.id == first.id and again.status is Status.SENT
    assert [m.id for m in store.list_messages("out")[0]] == [first.id]


def test_same_key_other_body_is_a_mismatch(store):
    first, _ = accept(store, "one", key="k")
    with pytest.raises(IdempotencyMismatch) as caught:
        accept(store, "two", key="k")
    assert caught.value.message.id == first.id
    with pytest.raises(IdempotencyMismatch):
        accept(store, "one", key="k", to="15550002222")
    assert store.counts(T0)["queued"] == 1


def test_keys_are_kept_24_hours_then_free_and_pruned(store):
    first, _ = accept(store, "one", key="k")
    day = 24 * 3600
    with pytest.raises(IdempotencyMismatch):
        accept(store, "two", key="k", now=at(day - 1))
    assert accept(store, "one", key="k", now=at(day - 1)) == (first, False)
    second, created = accept(store, "two", key="k", now=at(day + 1))  # expired even unpruned
    assert created and second.id != first.id
    assert accept(store, "two", key="k", now=at(day + 2)) == (second, False)
    accept(store, "three", key="other", now=at(0))
    assert store.prune(at(day + 1)) == 1  # "other"; "k" was renewed at day + 1
    assert store.prune(at(day + 1)) == 0
    assert store.get(first.id).text == "one"  # messages are kept


def test_keys_and_messages_are_per_client_id(backend):
    one, two = backend.open(), backend.open()
    a, _ = accept(one, "a", key="shared")
    b, created = accept(two, "b", key="shared")
    assert created and a.id != b.id
    with pytest.raises(NotFound):
        two.get(a.id)
    assert [m.id for m in one.list_messages("out")[0]] == [a.id]
    assert one.counts(T0)["queued"] == two.counts(T0)["queued"] == 1


def test_accept_refuses_what_could_never_be_sent(store):
    for to, text in [("123", "hi"), (TO, ""), (TO, "a\x00b")]:
        with pytest.raises(InvalidRequest):
            store.accept(to, text, None, None, T0, MAX)
    with pytest.raises(InvalidRequest):
        store.accept(TO, "hi", "has space", None, T0, MAX)
    assert store.counts(T0)["queued"] == 0


def test_outbox_full_counts_queued_and_sending(store):
    messages = [accept(store, f"m{i}", key=f"k{i}", max_queued=3)[0] for i in range(3)]
    with pytest.raises(OutboxFull):
        accept(store, "m3", max_queued=3)
    assert accept(store, "m0", key="k0", max_queued=3) == (messages[0], False)  # a repeat still answers
    store.claim(messages[0].id, at(1))
    with pytest.raises(OutboxFull):
        accept(store, "m3", max_queued=3)
    store.mark(messages[0].id, Status.SENT, at(2))
    accept(store, "m3", max_queued=3)
    store.cancel(messages[1].id, at(3))
    accept(store, "m4", max_queued=3)
    with pytest.raises(OutboxFull):
        accept(store, "m5", max_queued=3)


def test_messages_keep_the_order_they_were_accepted_in(store):
    ids = [accept(store, f"m{i}", now=at(-i))[0].id for i in range(30)]  # clock going backwards
    assert store.next_queued().id == ids[0]
    assert [m.id for m in store.list_messages("out", limit=500)[0]] == ids
    seqs = [m.seq for m in store.list_messages("out", limit=500)[0]]
    assert seqs == sorted(set(seqs))


# -- the sender -----------------------------------------------------------------------------------


def test_claim_and_marks_move_only_forward(store):
    message, _ = accept(store)
    claimed = store.claim(message.id, at(1))
    assert claimed.status is Status.SENDING and claimed.attempts == 1
    with pytest.raises(NotClaimable):
        store.claim(message.id, at(2))
    assert store.retry_claim(message.id, at(3)).attempts == 2
    assert store.in_flight() == [store.get(message.id)]
    assert store.next_queued() is None

    sent = store.mark(message.id, "sent", at(4), wa_id="WA-1")
    assert sent.status is Status.SENT and sent.sent_at == at(4) and sent.wa_id == "WA-1"
    with pytest.raises(NotClaimable):
        store.retry_claim(message.id, at(5))
    assert store.mark(message.id, Status.SENT, at(5)) is None
    assert store.mark(message.id, Status.SENT, at(5), wa_id="WA-1") is None  # nothing new
    delivered = store.mark(message.id, Status.DELIVERED, at(6))
    assert delivered.delivered_at == at(6) and delivered.sent_at == at(4)
    assert store.mark(message.id, Status.SENT, at(7)) is None  # backwards
    read = store.mark(message.id, Status.READ, at(8))
    assert (read.status, read.read_at, read.delivered_at, read.sent_at) == (Status.READ, at(8), at(6), at(4))
    assert store.mark(message.id, Status.DELIVERED, at(9)) is None
    assert store.in_flight() == []
    for bad in (Status.QUEUED, Status.SENDING, Status.FAILED, "nonsense"):
        with pytest.raises(ValueError):
            store.mark(message.id, bad, at(10))
    with pytest.raises(NotFound):
        store.mark("nope", Status.SENT, at(10))
    with pytest.raises(NotFound):
        store.claim("nope", at(10))


def test_a_skipped_step_sets_the_earlier_times(store):
    message, _ = accept(store)
    store.claim(message.id, at(1))
    read = store.mark(message.id, Status.READ, at(2))
    assert read.sent_at == read.delivered_at == read.read_at == at(2)
    other, _ = accept(store, "two")
    store.claim(other.id, at(3))
    delivered = store.mark(other.id, Status.DELIVERED, at(4), wa_id="W")
    assert (delivered.sent_at, delivered.delivered_at, delivered.read_at) == (at(4), at(4), None)


def test_a_changed_wa_id_is_recorded(store):
    message, _ = accept(store)
    store.claim(message.id, at(1))
    assert store.mark(message.id, "sent", at(2), wa_id="true_15550001111@c.us_X").wa_id == "true_15550001111@c.us_X"
    assert store.mark(message.id, Status.SENT, at(3), wa_id="X").wa_id == "X"  # the page's newer form
    assert store.get(message.id).sent_at == at(2)


def test_fail_only_from_queued_or_sending(store):
    queued, _ = accept(store, "a")
    failed = store.fail(queued.id, ErrorCode.NOT_ON_WHATSAPP, "The number is not on WhatsApp", at(1))
    assert failed.status is Status.FAILED and failed.failed_at == at(1)
    assert failed.to_json()["error"] == {"code": "not_on_whatsapp", "message": "The number is not on WhatsApp"}
    assert store.fail(queued.id, "expired", "again", at(2)) is None  # fails once, first error kept
    assert store.get(queued.id).error.code == "not_on_whatsapp"
    assert store.mark(queued.id, Status.SENT, at(3), wa_id="W") is None  # failed is terminal
    sending, _ = accept(store, "b")
    store.claim(sending.id, at(4))
    assert store.fail(sending.id, "some_new_code", "newer failure", at(5)).error.code == "some_new_code"
    sent, _ = accept(store, "c")
    store.claim(sent.id, at(6))
    store.mark(sent.id, Status.SENT, at(7))
    assert store.fail(sent.id, ErrorCode.EXPIRED, "too late", at(8)) is None
    assert store.get(sent.id).status is Status.SENT
    with pytest.raises(NotFound):
        store.fail("nope", ErrorCode.EXPIRED, "x", at(9))


def test_cancel_only_while_queued(store):
    message, _ = accept(store)
    cancelled = store.cancel(message.id, at(1))
    assert cancelled.status is Status.FAILED and cancelled.error.code == "cancelled"
    with pytest.raises(NotCancellable):
        store.cancel(message.id, at(2))
    with pytest.raises(NotClaimable):
        store.claim(message.id, at(2))  # the sender lost the race: it must not send it
    sending, _ = accept(store, "b")
    store.claim(sending.id, at(3))
    with pytest.raises(NotCancellable) as caught:
        store.cancel(sending.id, at(4))
    assert caught.value.message.status is Status.SENDING
    assert store.get(sending.id).status is Status.SENDING
    with pytest.raises(NotFound):
        store.cancel("nope", at(5))


def test_fail_queued_fails_queued_and_sending_only(backend, store):
    bystander = backend.open()
    accept(bystander, "someone else's")
    a, b, c = (accept(store, t)[0] for t in "abc")
    store.claim(b.id, at(1))
    store.claim(c.id, at(1))
    store.mark(c.id, Status.SENT, at(2))
    failed = store.fail_queued(ErrorCode.LOGGED_OUT, "logged out before it was sent", at(3))
    assert [m.id for m in failed] == [a.id, b.id]
    assert all(m.status is Status.FAILED and m.error.code == "logged_out" and m.failed_at == at(3)
               for m in failed)
    assert store.get(c.id).status is Status.SENT
    assert store.fail_queued(ErrorCode.LOGGED_OUT, "again", at(4)) == []
    assert store.counts(at(4)) == {"queued": 0, "sending": 0, "oldestQueuedAgeS": None}
    assert bystander.counts(at(4))["queued"] == 1


def test_expire_fails_only_old_queued_messages(store):
    old, older_sending, new = accept(store, "old", now=at(0))[0], accept(store, "s", now=at(1))[0], \
        accept(store, "new", now=at(100))[0]
    store.claim(older_sending.id, at(2))
    expired = store.expire(accepted_before=at(50), now=at(200))
    assert [m.id for m in expired] == [old.id]
    assert expired[0].error.code == "expired" and expired[0].failed_at == at(200)
    assert store.get(older_sending.id).status is Status.SENDING  # may be on its way
    assert store.get(new.id).status is Status.QUEUED
    assert store.expire(at(50), at(201)) == []


def test_awaiting_ack_lists_sent_and_delivered_with_a_wa_id_newest_first(store):
    ids = []
    for i, final in enumerate([Status.SENT, Status.DELIVERED, Status.READ, Status.SENT, Status.DELIVERED]):
        message, _ = accept(store, f"m{i}")
        store.claim(message.id, at(i))
        store.mark(message.id, final, at(i), wa_id=f"W{i}")
        ids.append(message.id)
    no_wa_id, _ = accept(store, "no id")
    store.claim(no_wa_id.id, at(9))
    store.mark(no_wa_id.id, Status.SENT, at(9))
    assert [m.id for m in store.awaiting_ack()] == [ids[4], ids[3], ids[1], ids[0]]
    assert [m.id for m in store.awaiting_ack(limit=2)] == [ids[4], ids[3]]


def test_counts_follow_every_transition(store):
    assert store.counts(T0) == {"queued": 0, "sending": 0, "oldestQueuedAgeS": None}
    a, _ = accept(store, "a", now=at(0))
    accept(store, "b", now=at(10))
    assert store.counts(at(12.5)) == {"queued": 2, "sending": 0, "oldestQueuedAgeS": 12.5}
    store.claim(a.id, at(13))
    assert store.counts(at(13)) == {"queued": 1, "sending": 1, "oldestQueuedAgeS": 13.0}
    store.mark(a.id, Status.READ, at(14))
    assert store.counts(at(15)) == {"queued": 1, "sending": 0, "oldestQueuedAgeS": 5.0}
    assert store.counts(at(-100))["oldestQueuedAgeS"] == 0  # a clock set back: never negative


def test_the_waiting_counter_agrees_with_the_rows_after_random_work(backend, store):
    rng = random.Random(7)
    live: list[str] = []
    for step in range(300):
        choice = rng.random()
        if choice < 0.4 or not live:
            key = rng.choice([None, f"k{rng.randrange(20)}"])  # some repeats
            live.append(accept(store, key or f"m{step}", key=key, now=at(step))[0].id)
            continue
        target = rng.choice(live)
        operation = rng.choice(["claim", "retry", "mark", "fail", "cancel", "expire", "logout"])
        with contextlib.suppress(NotClaimable, NotCancellable, IdempotencyMismatch):
            if operation == "claim":
                store.claim(target, at(step))
            elif operation == "retry":
                store.retry_claim(target, at(step))
            elif operation == "mark":
                store.mark(target, rng.choice([Status.SENT, Status.DELIVERED, Status.READ]), at(step))
            elif operation == "fail":
                store.fail(target, "not_on_whatsapp", "x", at(step))
            elif operation == "cancel":
                store.cancel(target, at(step))
            elif operation == "expire" and rng.random() < 0.1:
                store.expire(at(step - 50), at(step))
            elif operation == "logout" and rng.random() < 0.05:
                store.fail_queued("logged_out", "x", at(step))
    counts = store.counts(at(1000))
    with backend.raw(store) as raw:
        real = dict(raw.rows(f"SELECT status, count(*) FROM {schema.MESSAGES} WHERE client_id = ?"
                             " GROUP BY status", (store.client_id,)))
    assert (counts["queued"], counts["sending"]) == (real.get("queued", 0), real.get("sending", 0))
    assert counts["queued"] + counts["sending"] > 0  # the walk left some waiting


# -- listing ------------------------------------------------------------------------------------


def test_pages_follow_cursors_and_filters(store):
    out = [accept(store, f"m{i}")[0] for i in range(7)]
    store.claim(out[2].id, at(1))
    store.cancel(out[4].id, at(1))
    incoming = [store.add_incoming("Chat", [f"k{i}"], "15550002222", f"in {i}", Kind.TEXT, None, None, at(2))
                for i in range(3)]

    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_messages("out", limit=3, after=cursor)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert [m.id for m in seen] == [m.id for m in out] and pages == 3
    page, cursor = store.list_messages("out", limit=7)
    assert len(page) == 7 and cursor is None  # an exact fit has no empty next page

    assert [m.id for m in store.list_messages("out", status="queued")[0]] == \
        [m.id for i, m in enumerate(out) if i not in (2, 4)]
    assert [m.id for m in store.list_messages("out", status=Status.SENDING)[0]] == [out[2].id]
    failed, _ = store.list_messages("out", status="failed")
    assert [m.id for m in failed] == [out[4].id]
    page, cursor = store.list_messages("in", limit=2)
    assert [m.id for m in page] == [m.id for m in incoming[:2]] and cursor
    assert [m.id for m in store.list_messages("in", after=cursor)[0]] == [incoming[2].id]
    assert all(isinstance(m, IncomingMessage) for m in store.list_messages("in")[0])
    assert store.get(incoming[0].id) == incoming[0]


@pytest.mark.parametrize("arguments, error", [
    ({"direction": "sideways"}, ValueError), ({"direction": "in", "status": "queued"}, ValueError),
    ({"direction": "out", "status": "lost"}, ValueError), ({"direction": "out", "limit": 0}, ValueError),
    ({"direction": "out", "limit": 501}, ValueError), ({"direction": "out", "limit": True}, ValueError),
    ({"direction": "out", "after": "garbage"}, InvalidCursor), ({"direction": "out", "after": ""}, InvalidCursor),
    ({"direction": "out", "after": "bTEuMQ=="}, InvalidCursor),  # right content, not our spelling
    ({"direction": "out", "after": "bTEuLTE"}, InvalidCursor),  # "m1.-1"
])
def test_bad_list_arguments_are_refused(store, arguments, error):
    with pytest.raises(error):
        store.list_messages(**arguments)


def test_invalid_cursor_is_a_value_error_for_the_api(store):
    assert issubclass(InvalidCursor, ValueError)
    accept(store)
    accept(store, "two")
    _, cursor = store.list_messages("out", limit=1)
    assert len(cursor) < 40 and cursor.isascii()


# -- incoming -----------------------------------------------------------------------------------


def test_incoming_is_recorded_once_whichever_key_matches(store):
    first = store.add_incoming("Alice", ["true_15550002222@c.us_3EB0", "3EB0", "t|hi|15550002222"],
                               "15550002222", "hi", Kind.TEXT, "3EB0", "[12:19, 10/05/2026]", at(1))
    assert first.to_json() == {"id": first.id, "direction": "in", "from": "15550002222", "chat": "Alice",
                               "text": "hi", "waId": "3EB0", "timestamp": "[12:19, 10/05/2026]",
                               "receivedAt": "2026-11-22T10:00:01.000Z", "kind": "text"}
    assert store.add_incoming("Alice", ["3EB0"], None, "hi", "text", None, None, at(2)) is None
    assert store.add_incoming("Alice", ["new-form", "t|hi|15550002222"], None, "hi", "text", None, None,
                              at(3)) is None
    assert store.seen("Alice", ["3EB0", "new-form", "t|hi|15550002222", "x"]) == {"3EB0", "t|hi|15550002222"}
    # The same key in another chat is another message.
    other = store.add_incoming("Bob", ["3EB0"], None, None, Kind.UNSUPPORTED, None, None, at(4))
    assert other.text is None and other.kind is Kind.UNSUPPORTED
    assert [m.id for m in store.list_messages("in")[0]] == [first.id, other.id]
    assert store.add_incoming("Carol", ["a", "a"], None, "dup keys", "text", None, None, at(5))


def test_incoming_text_is_made_storable_and_keys_checked(store):
    message = store.add_incoming("Chat \ud800", ["k\x00"], "1\ud8001", "a\x00b\udfff", Kind.TEXT, None, None, at(1))
    assert message.text == "a\ufffdb\ufffd" and message.chat == "Chat \ufffd"
    assert store.get(message.id) == message
    assert store.seen("Chat \ud800", ["k\x00"]) == {"k\ufffd"}
    for keys in ([], "a-string", [""], [1], ["k"] * 101):
        with pytest.raises(ValueError):
            store.add_incoming("Chat", keys, None, "x", Kind.TEXT, None, None, at(2))
    with pytest.raises(ValueError):
        store.add_incoming("", ["k"], None, "x", Kind.TEXT, None, None, at(2))
    with pytest.raises(ValueError):
        store.add_incoming("Chat", ["k"], None, "x", "sticker", None, None, at(2))


def test_racing_incoming_adds_publish_once(backend, store):
    twin = backend.open(store.client_id)  # a second store object: another connection
    results, barrier = [], threading.Barrier(10)

    def add(i):
        barrier.wait()
        results.append((twin if i % 2 else store).add_incoming(
            "Race", [f"key-{i % 3}", "shared"], None, "x", Kind.TEXT, None, None, at(1)))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 10
    assert len([r for r in results if r is not None]) == 1
    assert len(store.list_messages("in")[0]) == 1
    assert store.seen("Race", ["key-0", "key-1", "key-2", "shared"]) >= {"shared"}


# -- concurrency and scale ----------------------------------------------------------------------


def test_concurrent_accepts_lose_nothing_and_duplicate_nothing(store):
    per_thread, threads_n = 15, 20
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def worker(n):
        barrier.wait()
        mine = []
        try:
            for i in range(per_thread):
                mine.append(accept(store, f"t{n}-{i}", key=f"t{n}-{i}"))
            mine.append(accept(store, "everyone", key="shared"))  # all threads, one message
        except BaseException as exc:
            errors.append(exc)
        results[n] = mine

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    shared = [r[-1] for r in results.values()]
    assert len({m.id for m, _ in shared}) == 1 and [c for _, c in shared].count(True) == 1
    created = [m for r in results.values() for m, c in r if c]
    assert len(created) == threads_n * per_thread + 1
    stored = []
    cursor = None
    while True:
        page, cursor = store.list_messages("out", limit=500, after=cursor)
        stored += page
        if cursor is None:
            break
    assert sorted(m.id for m in stored) == sorted(m.id for m in created)
    assert [m.seq for m in stored] == sorted({m.seq for m in stored})
    for n, mine in results.items():  # each thread's own messages in its own order
        positions = [m.seq for m, _ in mine[:-1]]
        assert positions == sorted(positions), n
    assert store.counts(T0)["queued"] == threads_n * per_thread + 1


def _bulk_queue(backend, store, n):
    """n queued rows written straight into the table (the triggers keep the counter)."""
    store.check()  # the tables exist
    rows = [(store.client_id, uuid.uuid4().hex, TO, f"bulk {i}", 1_700_000_000_000 + i) for i in range(n)]
    sql = (f"INSERT INTO {schema.MESSAGES} (client_id, id, direction, status, to_number, text, created_ms)"
           " VALUES (?, ?, 'out', 'queued', ?, ?, ?)")
    with backend.raw(store) as raw:
        if isinstance(raw, _SqliteRaw):
            raw.conn.execute("BEGIN")
            raw.conn.executemany(sql, rows)
            raw.conn.execute("COMMIT")
        else:
            with raw.conn.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)


def test_ten_thousand_waiting_are_counted_from_indexes(backend, store):
    _bulk_queue(backend, store, MAX - 1)
    assert store.counts(T0)["queued"] == MAX - 1
    accept(store, "the last one that fits")
    with pytest.raises(OutboxFull):
        accept(store, "one too many")
    assert store.counts(T0)["queued"] == MAX

    cid = store.client_id
    plans = {name: backend.explain(store, sql, params) for name, sql, params in [
        ("outbox size", schema.ACCEPT_CHECK, (cid, cid, "k", 0)),
        ("counters", schema.COUNTS_OF, (cid,)),
        ("oldest", schema.OLDEST_OF_STATUS, (cid, "queued")),
        ("next queued", schema.FIRST_OF_STATUS, (cid, "queued", 1)),
        ("a page", schema.page_query(False), (cid, "out", 0, 101)),
        ("a status page", schema.page_query(True), (cid, "queued", 0, 101)),
        ("one message", f"SELECT 1 FROM {schema.MESSAGES} WHERE {schema.WHERE_ONE}", (cid, "x")),
    ]}
    for name, plan in plans.items():
        # No full scan and no sort of the messages: SQLite's "SCAN <table>" (with or without
        # a covering index), PostgreSQL's "Seq Scan"; "TEMP B-TREE" / "Sort" for sorting.
        for bad in (f"SCAN {schema.MESSAGES}", f"Seq Scan on {schema.MESSAGES}", "TEMP B-TREE", "Sort"):
            assert bad not in plan, (name, plan)
    for name in ("outbox size", "counters"):  # read from the counter, never counted
        assert schema.MESSAGES not in plans[name], (name, plans[name])


# -- backend-specific ---------------------------------------------------------------------------


def test_sqlite_file_and_folder_are_owner_only(tmp_path):
    path = tmp_path / "fresh" / "messages-c.sqlite3"
    store = SqliteMessageStore(path, "c")
    try:
        accept(store)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(Path(f"{path}{suffix}").stat().st_mode) == 0o600, suffix
        journal, synchronous = (store._conn.execute(f"PRAGMA {p}").fetchone()[0]
                                for p in ("journal_mode", "synchronous"))
        assert (journal, synchronous) == ("wal", 2)  # 2: FULL, a commit is fsynced
    finally:
        store.close()
    os.chmod(path, 0o644)
    SqliteMessageStore(path, "c").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert default_path(tmp_path, "energenie-whatsapp") == tmp_path / "messages-energenie-whatsapp.sqlite3"


def _damaged(path: Path, damage: str) -> None:
    if damage == "garbage":
        path.write_bytes(b"this is not a database, but someone's accepted messages might be" * 100)
    else:
        store = SqliteMessageStore(path, "c")
        for i in range(300):
            accept(store, f"message {i} " + "x" * 500)
        store.close()
        data = bytearray(path.read_bytes())
        data[4096 * 3:4096 * 3 + 600] = os.urandom(600)  # a page in the middle of the table
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbage", "truncated page"])
def test_a_damaged_sqlite_file_is_named_and_left_alone(tmp_path, damage):
    path = tmp_path / "messages-c.sqlite3"
    _damaged(path, damage)
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt) as caught:
        SqliteMessageStore(path, "c")
    assert str(path) in str(caught.value) and "damaged" in str(caught.value)
    assert isinstance(caught.value, StoreUnavailable)
    assert path.read_bytes() == before


def test_a_sqlite_store_opened_soon_is_waited_for_by_calls(tmp_path):
    """A server's start: the store opens on a thread of its own (the integrity check reads
    the whole file). A call made while the open cannot finish (here another process holds
    the write lock the open needs) waits for it instead of failing, then works; `then` runs."""
    path = tmp_path / "messages-c.sqlite3"
    first = SqliteMessageStore(path, "c")
    kept, _ = accept(first, "from before")
    first.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    store = SqliteMessageStore(path, "c", busy_timeout_s=20, open_now=False)
    opened, answered = threading.Event(), threading.Event()
    got: list = []
    try:
        opening = store.open_soon(then=opened.set)
        caller = threading.Thread(target=lambda: (got.append(store.get(kept.id)), answered.set()))
        caller.start()
        assert not answered.wait(0.5) and not opened.is_set()  # both held up by the open
        other.execute("ROLLBACK")
        assert answered.wait(15) and opened.wait(15)
        assert got == [kept]
        opening.join(10)
        caller.join(10)
        assert not opening.is_alive() and not caller.is_alive()
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated page"])
def test_a_damaged_sqlite_file_opened_soon_is_logged_once_and_refused_for_good(tmp_path, damage, caplog):
    """The check beside the launch finds the damage: one error line naming the file, every
    call then refuses with StoreCorrupt without opening the file again, and it is never written."""
    path = tmp_path / "messages-c.sqlite3"
    _damaged(path, damage)
    before = path.read_bytes()
    store = SqliteMessageStore(path, "c", open_now=False)
    opened = threading.Event()
    with caplog.at_level(logging.ERROR, logger="whatsapp.messages.store"):
        store.open_soon(then=opened.set)
        assert opened.wait(10)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "until it is repaired" in errors[0] and str(path) in errors[0], errors
    for _ in range(2):
        with pytest.raises(StoreCorrupt, match="damaged"):
            accept(store, "after the damage")
    assert store._conn is None  # not opened again
    store.close()
    assert path.read_bytes() == before


def test_sqlite_locked_by_another_process_is_unavailable_then_fine(tmp_path):
    path = tmp_path / "messages-c.sqlite3"
    store = SqliteMessageStore(path, "c", busy_timeout_s=0.3)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked by another process"):
            accept(store)
        assert time.monotonic() - started < 3
        other.execute("ROLLBACK")
        accept(store)
    finally:
        other.close()
        store.close()


def test_sqlite_disk_full_is_unavailable_with_a_clear_message_and_loses_nothing(tmp_path):
    store = SqliteMessageStore(tmp_path / "messages-c.sqlite3", "c")
    try:
        kept = [accept(store, f"before {i}")[0] for i in range(3)]
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages + 8}")  # a disk with 32 KiB left
        with pytest.raises(StoreUnavailable, match="is full") as caught:
            for i in range(100):
                accept(store, f"big {i} " + "x" * 20_000)
        assert str(tmp_path) in str(caught.value)
        assert [store.get(m.id) for m in kept] == kept
        store._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        accept(store, "after")
    finally:
        store.close()


def test_a_closed_store_is_unavailable(backend, store):
    accept(store)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreUnavailable, match="closed"):
        accept(store)


@pytest.fixture
def pg_backend(request, tmp_path):
    opened = Backend("postgres", tmp_path, request)
    yield opened
    opened.close()


@pytest.fixture
def pg_store(pg_backend):
    return pg_backend.open()


def _password():
    import pg

    return pg.PASSWORD


@pytest.mark.e2e
def test_postgres_stopped_is_unavailable_quickly_then_works_again(pg_backend, pg_store, caplog):
    caplog.set_level(logging.DEBUG)
    first, _ = accept(pg_store, "before")
    pg_store.counts(T0)  # a second pooled connection may exist now
    pg_backend.server.stop_server()
    try:
        for call in (lambda: accept(pg_store, "during"), lambda: pg_store.get(first.id), lambda: pg_store.counts(T0),
                     pg_store.next_queued):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                call()
            assert time.monotonic() - started < PG_TIMEOUT_S + 1.0
            assert _password() not in str(caught.value) and "***" in str(caught.value)
            assert caught.value.__cause__ is None  # the driver's text may hold the password
    finally:
        pg_backend.server.start_server()
    _, created = accept(pg_store, "after", key="after")
    assert created and pg_store.get(first.id) == first
    assert [m.text for m in pg_store.list_messages("out")[0]] == ["before", "after"]
    assert _password() not in caplog.text


@pytest.mark.e2e
def test_postgres_frozen_is_bounded_and_recovers(pg_backend, pg_store):
    """SIGSTOP of the whole server (postmaster and backends): a pooled connection's read
    hangs, new connections hang in the handshake; every call still returns in time."""
    accept(pg_store, "warm up")
    postmaster = psutil.Process(int((pg_backend.server.data_dir / "postmaster.pid").read_text().split()[0]))
    frozen = [postmaster, *postmaster.children(recursive=True)]  # backends have their own sessions
    for process in frozen:
        process.suspend()
    try:
        for n in range(3):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"no answer|busy|timeout"):
                accept(pg_store, f"frozen {n}", key=f"frozen-{n}")
            assert time.monotonic() - started < PG_TIMEOUT_S + 1.0
    finally:
        for process in frozen:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
    deadline = time.monotonic() + 30
    while True:  # the abandoned calls finish and hand their connections back
        try:
            accept(pg_store, "after")
            break
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.1)  # polling interval of a bounded wait
    # A call that timed out may still have committed: a retry with its key tells.
    for n in range(3):
        message, _ = accept(pg_store, f"frozen {n}", key=f"frozen-{n}")
        assert pg_store.get(message.id).text == f"frozen {n}"


@pytest.mark.e2e
def test_postgres_black_hole_is_bounded():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accepted: connections hang in the startup handshake
        url = f"postgres://u:hunter2@127.0.0.1:{listener.getsockname()[1]}/db"
        store = PostgresMessageStore(url, "black-hole", timeout_s=0.5, pool_size=2)
        try:
            for _ in range(4):  # more calls than pool slots: waits for a slot are bounded too
                started = time.monotonic()
                with pytest.raises(StoreUnavailable) as caught:
                    store.check()
                assert time.monotonic() - started < 1.5
                assert "hunter2" not in str(caught.value)
        finally:
            store.close()


@pytest.mark.e2e
def test_postgres_schema_created_once_by_racing_servers(pg_backend):
    name = f"msgs_{uuid.uuid4().hex[:8]}"
    with pg_backend.server.connect() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = pg_backend.server.url.rsplit("/", 1)[0] + "/" + name
    stores = [PostgresMessageStore(url, f"c{i}", timeout_s=10) for i in range(6)]
    try:
        errors, barrier = [], threading.Barrier(len(stores))

        def start(store):
            barrier.wait()
            try:
                accept(store, "first")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert all(s.counts(T0)["queued"] == 1 for s in stores)
    finally:
        for store in stores:
            store.close()
        with pg_backend.server.connect() as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_postgres_url_checked_and_shown_masked():
    with pytest.raises(ValueError):
        PostgresMessageStore("mysql://u:p@h/db", "c")
    with pytest.raises(ValueError):
        PostgresMessageStore("postgres://u:p@h/db", "bad/id")
    store = PostgresMessageStore("postgres://u:s3cret@db.example:5432/x?password=other", "c")
    assert "s3cret" not in repr(store) and "other" not in store.safe_url
    store.close()


# -- plumbing without a database --------------------------------------------------------------


@given(st.text(max_size=60))
def test_cursors_round_trip_and_nothing_else_decodes(text):
    from whatsapp.messages.rows import decode_cursor, encode_cursor

    try:
        seq = decode_cursor(text)
    except InvalidCursor:
        return
    assert encode_cursor(seq) == text


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_every_sequence_number_has_a_cursor(seq):
    from whatsapp.messages.rows import decode_cursor, encode_cursor

    assert decode_cursor(encode_cursor(seq)) == seq


class _Conn:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_pool_caps_connections_reuses_newest_and_bounds_waits():
    from whatsapp.messages.bounded import NoAnswer, Pool, PoolClosed

    made: list[_Conn] = []
    pool: Pool[_Conn] = Pool(lambda seconds_left: made.append(_Conn()) or made[-1], size=2)
    a, reused_a = pool.get(time.monotonic() + 1)
    b, _ = pool.get(time.monotonic() + 1)
    assert not reused_a and len(made) == 2
    started = time.monotonic()
    with pytest.raises(NoAnswer, match="busy"):
        pool.get(time.monotonic() + 0.2)
    assert 0.15 < time.monotonic() - started < 2
    pool.put(a)
    pool.put(b)
    assert pool.get(time.monotonic() + 1) == (b, True)  # the newest idle one
    pool.discard(b)
    assert b.closed
    assert pool.discard_idle() == 1 and a.closed
    c, reused = pool.get(time.monotonic() + 1)
    assert not reused and len(made) == 3
    pool.close()
    with pytest.raises(PoolClosed):
        pool.get(time.monotonic() + 1)
    pool.put(c)
    assert c.closed  # given back after close: closed, not kept


def test_pool_frees_the_slot_of_a_failed_connect():
    from whatsapp.messages.bounded import Pool

    def refuse(seconds_left):
        raise OSError("refused")

    pool: Pool[_Conn] = Pool(refuse, size=1)
    for _ in range(3):
        with pytest.raises(OSError):
            pool.get(time.monotonic() + 0.5)


def test_run_bounded_returns_raises_or_gives_up_in_time():
    from whatsapp.messages.bounded import NoAnswer, run_bounded

    assert run_bounded(lambda: 42, 1, "t") == 42
    with pytest.raises(ZeroDivisionError):
        run_bounded(lambda: 1 / 0, 1, "t")
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(NoAnswer):
        run_bounded(lambda: release.wait(30), 0.2, "t")
    assert time.monotonic() - started < 2
    release.set()


# -- what the sender asks after a crash --------------------------------------------------------

def test_a_waid_is_noted_on_a_sending_message_only(store):
    message, _ = accept(store)
    assert store.note_wa_id(message.id, "3EB0AAAA") is None, "queued: not typed yet"
    store.claim(message.id, T0)
    noted = store.note_wa_id(message.id, "3EB0AAAA")
    assert noted is not None and noted.wa_id == "3EB0AAAA" and noted.status is Status.SENDING
    store.mark(message.id, Status.SENT, T0)
    assert store.note_wa_id(message.id, "3EB0BBBB") is None, "sent: its waId is settled"
    assert store.get(message.id).wa_id == "3EB0AAAA"


def test_the_waids_given_in_a_chat_since_a_time(store):
    old, _ = accept(store, "old", now=T0)
    new, _ = accept(store, "new", now=T0 + timedelta(minutes=5))
    other, _ = accept(store, "other", to="15550002222", now=T0 + timedelta(minutes=5))
    for message, wa_id in ((old, "W-OLD"), (new, "W-NEW"), (other, "W-OTHER")):
        store.claim(message.id, T0)
        store.mark(message.id, Status.SENT, T0, wa_id=wa_id)
    assert store.wa_ids_to(TO, since=T0 + timedelta(minutes=1)) == {"W-NEW"}
    assert store.wa_ids_to(TO, since=T0) == {"W-OLD", "W-NEW"}


def test_a_sqlite_store_not_opened_at_start_opens_at_a_later_use(tmp_path, monkeypatch):
    """`open_now=False` (the server started where the file could not be opened): each use
    tries again, StoreUnavailable meanwhile; once the cause is gone it works, and after
    `close()` it stays closed."""
    from whatsapp.messages import StoreUnavailable
    from whatsapp.messages import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "REOPEN_EVERY_S", 0.0)
    blocker = tmp_path / "data"
    blocker.write_text("a file where the folder should be")
    store = sqlite_module.SqliteMessageStore(blocker / "messages.sqlite3", "test", open_now=False)
    with pytest.raises(StoreUnavailable, match="cannot create"):
        store.check()
    blocker.unlink()
    store.check()  # opened now
    message, created = store.accept("15550002222", "hello", None, None, datetime.now(UTC), max_queued=10)
    assert created and message.text == "hello"
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.check()
