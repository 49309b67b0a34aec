"""whatsapp.remote against a real PostgreSQL server (tests/pg.py): backups, pruning, isolation
between client ids, the owner lock, and behaviour while the database is down or frozen."""
from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
import uuid

import pytest

try:
    import pg
except ImportError:  # tests/ imported as a package
    from tests import pg
from whatsapp.persistence.remote import TABLE, RemoteBackups, RemoteStore, RemoteUnavailable, lock_key, mask_url

TIMEOUT_S = 2.0


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
    """RemoteStore factory; releases every store's owner connection at teardown."""
    stores = []

    def make(client_id=None, keep=3, url=None, timeout_s=TIMEOUT_S):
        store = RemoteStore(url or server.url, client_id or f"c-{uuid.uuid4().hex[:8]}", keep, timeout_s)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.release_owner()


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


def test_put_stores_blob_manifest_and_digest(db, make_store, server):
    assert server.url.startswith("postgres://")  # the scheme Heroku hands out
    store = make_store()
    backup_id, created_at = store.put(b"profile-bytes", {"files": {"a": 1}, "v": 1}, link="15550001111")
    [(row_id, manifest, link, size, sha, data)] = rows(db, store.client_id)
    assert (row_id, manifest, link, size) == (backup_id, {"files": {"a": 1}, "v": 1}, "15550001111", 13)
    assert sha == hashlib.sha256(b"profile-bytes").hexdigest() and bytes(data) == b"profile-bytes"
    assert store.owner_status()["lastBackupAt"] is not None
    assert store.owner_status()["database"] == "ok"


def test_keep_newest_per_client_and_other_clients_untouched(db, make_store):
    mine, other = make_store(keep=2), make_store(keep=2)
    other.put(b"other-0", {"seq": 0})
    for seq in range(5):
        mine.put(b"mine-%d" % seq, {"seq": seq})
    other.put(b"other-1", {"seq": 1})
    assert [m["seq"] for _, m, *_ in rows(db, mine.client_id)] == [3, 4]
    assert [m["seq"] for _, m, *_ in rows(db, other.client_id)] == [0, 1]

    assert mine.delete_all() == 2
    assert rows(db, mine.client_id) == []
    assert [m["seq"] for _, m, *_ in rows(db, other.client_id)] == [0, 1]
    assert mine.delete_all() == 0


def test_readers_see_the_old_set_or_the_new_one(server, make_store):
    store = make_store(keep=2)
    store.put(b"0", {"seq": 0})
    store.put(b"1", {"seq": 1})
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
            store.put(b"%d" % seq, {"seq": seq})
    finally:
        stop.set()
        thread.join(10)
    assert counts == {2}  # never 3 (inserted, not yet pruned) nor 1


def test_backup_worker_stores_and_delete_all_drops_pending(db, make_store):
    store = make_store()
    backups = RemoteBackups(store, retry_first_s=0.1, retry_max_s=0.5)
    try:
        manifest = {"seq": 1}
        backups.submit_backup(b"via-worker", manifest, link="15550001111")
        manifest["seq"] = 2  # the queued copy is not affected
        assert backups.flush(timeout=10)
        assert [(m, b) for _, m, *_, b in rows(db, store.client_id)] == [({"seq": 1}, b"via-worker")]
        assert backups.delete_all() == 1 and rows(db, store.client_id) == []
        with pytest.raises(TypeError):
            backups.submit_backup(b"x", {"bad": object()})
    finally:
        assert backups.stop(timeout=5)


def test_newest_blobs_order_and_sha_check(db, make_store, caplog):
    store, other = make_store(keep=5), make_store()
    ids = [store.put(b"blob-%d" % seq, {"seq": seq})[0] for seq in range(3)]
    other.put(b"not-mine", {"seq": 99})
    found = list(store.newest_blobs())
    assert [(i, m["seq"], b) for i, _, m, b in found] == [
        (ids[2], 2, b"blob-2"), (ids[1], 1, b"blob-1"), (ids[0], 0, b"blob-0")]
    assert found[0][1] >= found[1][1] >= found[2][1]

    db.execute(f"UPDATE {TABLE} SET data = 'tampered'::bytea WHERE id = %s", (ids[1],))
    with caplog.at_level(logging.WARNING, logger="whatsapp.persistence.remote"):
        assert [m["seq"] for _, _, m, _ in store.newest_blobs()] == [2, 0]
    assert f"backup {ids[1]} of client id" in caplog.text
    assert [b for *_, b in other.newest_blobs()] == [b"not-mine"]


def test_owner_lock_is_exclusive_per_client_id(db, make_store):
    client = f"c-{uuid.uuid4().hex[:8]}"
    first, second, elsewhere = make_store(client), make_store(client), make_store()
    assert first.acquire_owner() is True
    assert first.acquire_owner() is True  # idempotent
    assert second.acquire_owner() is False
    assert elsewhere.acquire_owner() is True  # other client ids do not contend

    owner_pid = first.owner_status()["ownerPid"]
    status = second.owner_status()
    assert status["owner"] is False
    assert status["holderPid"] == owner_pid
    assert status["holderApplication"] == "whatsapp-session"
    assert db.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                      (owner_pid,)).fetchone() == ("whatsapp-session",)

    first.release_owner()
    assert first.owner_status()["owner"] is False
    assert second.check_owner() is True  # a waiting server takes over on its next check
    assert second.owner_status()["owner"] is True
    assert first.check_owner() is False  # released: no longer wants it

    # The owner's connection dies (a DB restart, a network cut): the lock goes with it.
    db.execute("SELECT pg_terminate_backend(%s)", (second.owner_status()["ownerPid"],))
    assert second.check_owner() is False
    status = second.owner_status()
    assert status["owner"] is False and status["ownerLostAt"] is not None
    assert first.acquire_owner() is True
    assert second.check_owner() is False and second.owner_status()["holderPid"] == first.owner_status()["ownerPid"]
    first.release_owner()
    assert second.check_owner() is True


def test_lock_key_is_stable_and_url_is_masked():
    assert lock_key("whatsapp-session:energenie-whatsapp") == lock_key("whatsapp-session:energenie-whatsapp")
    assert -2**63 <= lock_key("x") < 2**63 and lock_key("a") != lock_key("b")
    assert mask_url("postgres://u:p%40ss@host:5432/db?sslmode=require") == "postgres://u:***@host:5432/db?sslmode=require"
    assert mask_url("postgresql://host/db?password=pw&x=1") == "postgresql://host/db?password=***&x=1"
    with pytest.raises(ValueError):
        RemoteStore("mysql://h/db", "x", 3, 1)
    with pytest.raises(ValueError):
        RemoteStore("postgres://h/db", "../x", 3, 1)


def test_database_down_then_back(server, make_store, caplog):
    caplog.set_level(logging.DEBUG)
    owner = make_store()
    assert owner.acquire_owner() is True
    backups = RemoteBackups(owner, retry_first_s=0.2, retry_max_s=1.0)
    try:
        server.stop_server()

        started = time.monotonic()
        backups.submit_backup(b"older", {"seq": 1})
        backups.submit_backup(b"newest", {"seq": 2}, link="15550001111")
        assert time.monotonic() - started < 0.5  # queued, not sent
        status = wait_until(lambda: (s := backups.status())["backupFailures"] and s, 4 * TIMEOUT_S,
                            "the failed put to show in status")
        assert status["database"] == "unreachable" and "store a backup" in status["lastError"]
        assert status["backupPending"] is True

        # Start-time calls raise the one exception type within the bound.
        fresh = make_store(owner.client_id)
        for call in (fresh.newest_blobs, fresh.acquire_owner, fresh.delete_all):
            started = time.monotonic()
            with pytest.raises(RemoteUnavailable):
                call()
            assert time.monotonic() - started < 4 * TIMEOUT_S
        assert owner.check_owner() is False  # the owner connection died with the server
        assert owner.owner_status()["ownerLostAt"] is not None

        server.start_server()
        assert backups.flush(timeout=20), "the pending backup did not land after the database came back"
        assert [(m["seq"], b) for _, _, m, b in owner.newest_blobs()] == [(2, b"newest")]  # older superseded
        assert backups.status()["backupFailures"] == 0
        assert owner.check_owner() is True  # owns again
    finally:
        server.start_server()
        assert backups.stop(timeout=5) is True
    assert pg.PASSWORD not in caplog.text
    assert "postgres:***@127.0.0.1" in caplog.text


def test_frozen_database_never_blocks_caller_or_stop():
    """A server that accepts TCP but never answers (frozen, or a black hole): every wait is bounded."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accepted: connections hang in the startup handshake
        url = f"postgres://u:pw@127.0.0.1:{listener.getsockname()[1]}/db"
        store = RemoteStore(url, "frozen", 3, 1.0)
        started = time.monotonic()
        with pytest.raises(RemoteUnavailable):
            store.acquire_owner()
        assert time.monotonic() - started < 4.0

        backups = RemoteBackups(store, retry_first_s=0.1, retry_max_s=0.2)
        backups.submit_backup(b"x", {})
        wait_until(lambda: backups.status()["backupInFlight"], 5, "the put to start")
        started = time.monotonic()
        backups.stop(timeout=0.3)
        assert time.monotonic() - started < 2.0
    # Listener closed: the stuck connection is reset and the worker ends.
    assert backups.stop(timeout=10) is True
