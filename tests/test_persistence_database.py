"""persistence.database against a real PostgreSQL server (tests/pg.py): backup rows, pruning,
isolation between client ids, clearings, the owner lock (and this server's own stalled
connection told from a rival), the uploader, and behaviour while the database is down or
frozen."""
from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pg
import pytest

from whatsapp.persistence.clearings import Clearing
from whatsapp.persistence.database.connection import Database, DatabaseUnavailable, lock_key, mask_url
from whatsapp.persistence.database.ownership import Check, Ownership
from whatsapp.persistence.database.store import CLEARINGS, TABLE, DatabaseStore
from whatsapp.persistence.database.uploader import Uploader

TIMEOUT_S = 2.0
LINK = "15550001111:3@c.us"


@pytest.fixture
def server(postgres):
    return postgres


@pytest.fixture
def db(server):
    server.start_server()  # a test that simulated an outage may have left it stopped
    with server.connect() as conn:
        yield conn


@pytest.fixture
def make_store(server):
    def make(client_id=None, keep=3, url=None, timeout_s=TIMEOUT_S):
        return DatabaseStore(Database(url or server.url, timeout_s), client_id or f"c-{uuid.uuid4().hex[:8]}", keep)
    return make


@pytest.fixture
def make_owner(server):
    """Ownership factory; releases every lock at teardown."""
    owners = []

    def make(client_id, timeout_s=TIMEOUT_S):
        owner = Ownership(Database(server.url, timeout_s), client_id)
        owners.append(owner)
        return owner

    yield make
    for owner in owners:
        owner.release()


def wait_until(condition, timeout: float, what: str):
    """Poll `condition()` until truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(0.05)  # polling interval of a bounded wait
    return value


def rows(db, client_id):
    return db.execute(f"SELECT id, manifest, link, size, sha256, data FROM {TABLE}"
                      " WHERE client_id = %s ORDER BY id", (client_id,)).fetchall()


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def test_put_stores_blob_manifest_and_digest(db, make_store, server):
    assert server.url.startswith("postgres://")  # the scheme Heroku hands out
    store = make_store()
    taken = ago(1)
    backup_id = store.put(b"profile-bytes", {"files": {"a": 1}, "v": 1}, link="15550001111", taken_at=taken)
    [(row_id, manifest, link, size, sha, data)] = rows(db, store.client_id)
    assert (row_id, manifest, link, size) == (backup_id, {"files": {"a": 1}, "v": 1}, "15550001111", 13)
    assert sha == hashlib.sha256(b"profile-bytes").hexdigest() and bytes(data) == b"profile-bytes"
    assert store.last_backup_at == taken and store.rows()[0].taken_at == taken
    assert store.db.health()["database"] == "ok"


def test_keep_newest_per_client_and_other_clients_untouched(db, make_store):
    mine, other = make_store(keep=2), make_store(keep=2)
    other.put(b"other-0", {"seq": 0}, None)
    for seq in range(5):
        mine.put(b"mine-%d" % seq, {"seq": seq}, None)
    other.put(b"other-1", {"seq": 1}, None)
    assert [m["seq"] for _, m, *_ in rows(db, mine.client_id)] == [3, 4]
    assert [m["seq"] for _, m, *_ in rows(db, other.client_id)] == [0, 1]

    # A clearing removes this client id's rows, never another's.
    assert mine.land(Clearing.new(None, "disconnected")) == 2
    assert rows(db, mine.client_id) == []
    assert [m["seq"] for _, m, *_ in rows(db, other.client_id)] == [0, 1]
    assert mine.land(Clearing.new(None, "disconnected")) == 0


def test_readers_see_the_old_set_or_the_new_one(server, make_store):
    store = make_store(keep=2)
    store.put(b"0", {"seq": 0}, None)
    store.put(b"1", {"seq": 1}, None)
    counts, stop = set(), threading.Event()

    def reader():
        with server.connect() as conn:
            while not stop.is_set():
                counts.add(conn.execute(f"SELECT count(*) FROM {TABLE} WHERE client_id = %s",
                                        (store.client_id,)).fetchone()[0])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for seq in range(2, 30):
            store.put(b"%d" % seq, {"seq": seq}, None)
    finally:
        stop.set()
        thread.join(10)
    assert counts == {2}  # never 3 (inserted, not yet pruned) nor 1


def test_a_clearing_ends_every_login_linked_before_it(db, make_store):
    store = make_store(keep=10)
    linked = ago(3600)
    store.put(b"a backup", {}, LINK, ago(60), login_since=linked)
    clearing = Clearing.new(None, "disconnected", at=ago(20))  # asked where the link is unknown
    late = store.put(b"taken later by a server still running it", {}, LINK, ago(10), login_since=linked)
    assert late is not None  # the clearing has not landed yet
    store.put(b"no login time, taken before", {}, "15550001111:1@c.us", ago(30))
    legacy_after = store.put(b"no login time, taken after", {}, "15550001111:1@c.us", ago(5))
    assert store.land(clearing) == 3  # both of that login, whenever taken; the old one by its time
    assert [r.id for r in store.rows()] == [legacy_after]
    assert store.land(clearing) == 0  # idempotent
    assert [c.id for c in store.clearings()] == [clearing.id]
    # Refused from now on: any backup of a login linked before it.
    assert store.put(b"late upload", {}, LINK, ago(1), login_since=linked) is None
    assert store.put(b"no login time, taken before", {}, None, ago(25)) is None
    # A clearing naming a link also ends the backups of it that do not know their login time.
    assert store.land(Clearing.new("15550001111:1@c.us", "logged_out", at=ago(4))) == 1
    assert store.put(b"no login time, that link", {}, "15550001111:1@c.us", ago(1)) is None
    # A login linked after the clearings is untouched, even with a wid seen before.
    fresh = store.put(b"linked again", {}, LINK, ago(1), login_since=ago(2))
    assert fresh is not None and [r.id for r in store.rows()] == [fresh]
    assert store.rows()[0].login_since is not None
    assert db.execute(f"SELECT count(*) FROM {CLEARINGS} WHERE client_id = %s",
                      (store.client_id,)).fetchone()[0] == 2


def test_uploader_stores_and_a_clearing_drops_the_pending_backup(db, make_store):
    store = make_store()
    landed = []
    uploader = Uploader(store, landed.extend, retry_first_s=0.1, retry_max_s=0.5)
    try:
        manifest = {"seq": 1}
        uploader.submit_backup(b"via-worker", manifest, link="15550001111", taken_at=ago(1))
        manifest["seq"] = 2  # the queued copy is not affected
        assert uploader.flush(timeout=10)
        assert [(m, b) for _, m, *_, b in rows(db, store.client_id)] == [({"seq": 1}, b"via-worker")]
        clearing = Clearing.new("15550001111", "disconnected")
        uploader.submit_clearing(clearing)
        assert uploader.flush(timeout=10)
        assert rows(db, store.client_id) == [] and [c.id for c in landed] == [clearing.id]
        with pytest.raises(TypeError):
            uploader.submit_backup(b"x", {"bad": object()}, None)
    finally:
        assert uploader.stop(timeout=5)


def test_newest_blobs_order_and_sha_check(db, make_store, caplog):
    store, other = make_store(keep=5), make_store()
    ids = [store.put(b"blob-%d" % seq, {"seq": seq}, None) for seq in range(3)]
    other.put(b"not-mine", {"seq": 99}, None)
    found = list(store.newest_blobs())
    assert [(r.id, r.manifest["seq"], b) for r, b in found] == [
        (ids[2], 2, b"blob-2"), (ids[1], 1, b"blob-1"), (ids[0], 0, b"blob-0")]
    assert found[0][0].created_at >= found[1][0].created_at >= found[2][0].created_at

    db.execute(f"UPDATE {TABLE} SET data = 'tampered'::bytea WHERE id = %s", (ids[1],))
    with caplog.at_level(logging.WARNING, logger="whatsapp.persistence.database.store"):
        assert [r.manifest["seq"] for r, _ in store.newest_blobs()] == [2, 0]
    assert f"backup {ids[1]} of client id" in caplog.text
    assert [b for _, b in other.newest_blobs()] == [b"not-mine"]


def test_owner_lock_is_exclusive_per_client_id(db, make_owner):
    client = f"c-{uuid.uuid4().hex[:8]}"
    first, second, elsewhere = make_owner(client), make_owner(client), make_owner(f"c-{uuid.uuid4().hex[:8]}")
    assert first.acquire() is True
    assert first.acquire() is True  # idempotent
    assert second.acquire() is False
    assert elsewhere.acquire() is True  # other client ids do not contend

    owner_pid = first.status()["ownerPid"]
    status = second.status()
    assert status["owner"] is False
    assert status["holderPid"] == owner_pid
    assert status["holderApplication"] == "whatsapp-session"
    assert db.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                      (owner_pid,)).fetchone() == ("whatsapp-session",)
    assert second.check() == (Check.RIVAL, None)

    first.release()
    assert first.status()["owner"] is False
    assert second.check()[0] is Check.OWNED  # a waiting server takes over on its next check
    assert second.status()["owner"] is True
    assert first.check()[0] is Check.NOT_WANTED  # released: no longer wants it

    # The owner's connection dies (a DB restart, a network cut): the lock goes with it, and
    # the next check notices and takes it back at once when nobody else has it.
    db.execute("SELECT pg_terminate_backend(%s, 5000)", (second.status()["ownerPid"],))
    assert second.check()[0] is Check.OWNED
    assert second.status()["ownerLostAt"] is not None
    # ... and when another server took it meanwhile, that one is a rival.
    db.execute("SELECT pg_terminate_backend(%s, 5000)", (second.status()["ownerPid"],))
    assert first.acquire() is True
    assert second.check()[0] is Check.RIVAL
    assert second.status()["holderPid"] == first.status()["ownerPid"]
    first.release()
    assert second.check()[0] is Check.OWNED


def test_a_stalled_owner_connection_is_not_a_rival(db, make_owner):
    """Issue 21: a database stall a little over the timeout was read as "another server took
    over" while this server's own abandoned connection still held the lock, tearing a healthy
    session down. The stall here is the owner's backend stopped (SIGSTOP) for a while."""
    owner = make_owner(f"c-{uuid.uuid4().hex[:8]}", timeout_s=1.0)
    assert owner.acquire() is True
    stalled = owner.status()["ownerPid"]
    os.kill(stalled, signal.SIGSTOP)
    try:
        started = time.monotonic()
        state, _ = owner.check()
        assert state is not Check.RIVAL, owner.status()
        assert time.monotonic() - started < 8.0
        assert owner.status()["holderPid"] in (None, stalled)
    finally:
        os.kill(stalled, signal.SIGCONT)
    # Once the stalled backend can act on the termination, the lock is ours again.
    wait_until(lambda: owner.check()[0] is Check.OWNED, 15, "the lock taken back")
    assert owner.status()["ownerPid"] != stalled
    assert not db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (stalled,)).fetchall()


def test_lock_key_is_stable_and_url_is_masked():
    assert lock_key("whatsapp-session:energenie-whatsapp") == lock_key("whatsapp-session:energenie-whatsapp")
    assert -2**63 <= lock_key("x") < 2**63 and lock_key("a") != lock_key("b")
    assert mask_url("postgres://u:p%40ss@host:5432/db?sslmode=require") == "postgres://u:***@host:5432/db?sslmode=require"
    assert mask_url("postgresql://host/db?password=pw&x=1") == "postgresql://host/db?password=***&x=1"
    with pytest.raises(ValueError):
        Database("mysql://h/db", 1)
    with pytest.raises(ValueError):
        DatabaseStore(Database("postgres://h/db", 1), "../x", 3)


def test_database_down_then_back(server, make_store, make_owner, caplog):
    caplog.set_level(logging.DEBUG)
    store = make_store()
    owner = make_owner(store.client_id)
    assert owner.acquire() is True
    uploader = Uploader(store, lambda landed: None, retry_first_s=0.2, retry_max_s=1.0)
    try:
        server.stop_server()

        started = time.monotonic()
        uploader.submit_backup(b"older", {"seq": 1}, None)
        uploader.submit_backup(b"newest", {"seq": 2}, link="15550001111")
        assert time.monotonic() - started < 0.5  # queued, not sent
        status = wait_until(lambda: (s := uploader.status())["backupFailures"] and s, 4 * TIMEOUT_S,
                            "the failed put to show in status")
        health = store.db.health()
        assert health["database"] == "unreachable" and "store a backup" in health["lastError"]
        assert status["backupPending"] is True

        # Start-time calls raise the one exception type within the bound.
        fresh, fresh_owner = make_store(store.client_id), make_owner(store.client_id)
        for call in (fresh.rows, fresh_owner.acquire, lambda: fresh.land(Clearing.new(None, "x"))):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                call()
            assert time.monotonic() - started < 4 * TIMEOUT_S
        assert owner.check()[0] is Check.UNREACHABLE  # the owner connection died with the server
        assert owner.status()["ownerLostAt"] is not None

        server.start_server()
        assert uploader.flush(timeout=20), "the pending backup did not land after the database came back"
        assert [(r.manifest["seq"], b) for r, b in store.newest_blobs()] == [(2, b"newest")]  # older superseded
        assert uploader.status()["backupFailures"] == 0
        assert owner.check()[0] is Check.OWNED  # owns again
    finally:
        server.start_server()
        assert uploader.stop(timeout=5) is True
    assert pg.PASSWORD not in caplog.text
    assert "postgres:***@127.0.0.1" in caplog.text


def test_frozen_database_never_blocks_caller_or_stop():
    """A server that accepts TCP but never answers (frozen, or a black hole): every wait is bounded."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accepted: connections hang in the startup handshake
        url = f"postgres://u:pw@127.0.0.1:{listener.getsockname()[1]}/db"
        owner = Ownership(Database(url, 1.0), "frozen")
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            owner.acquire()
        assert time.monotonic() - started < 4.0

        uploader = Uploader(DatabaseStore(Database(url, 1.0), "frozen", 3), lambda landed: None,
                            retry_first_s=0.1, retry_max_s=0.2)
        uploader.submit_backup(b"x", {}, None)
        wait_until(lambda: uploader.status()["backupInFlight"], 5, "the put to start")
        started = time.monotonic()
        uploader.stop(timeout=0.3)
        assert time.monotonic() - started < 2.0
    # Listener closed: the stuck connection is reset and the worker ends.
    assert uploader.stop(timeout=10) is True
