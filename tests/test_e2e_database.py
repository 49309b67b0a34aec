"""A login that outlives the machine: backups in PostgreSQL, end to end.

gunicorn as the Procfile runs it, real Chromium, the simulator, and a real PostgreSQL server
(tests/pg.py) reached through `WHATSAPP_BACKUP_DATABASE_URL`, stopped, started and stalled
by the tests: a cleared login stays cleared, a fresh machine restores once the database
answers, and a slow database never tears a healthy session down.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time

import pytest
from harness import CLIENT_ID, browsers_on, link_phone, ready_without_qr, wait_for

try:
    import pg
except ImportError:  # tests/ imported as a package
    from tests import pg
from whatsapp.persistence.database.store import CLEARINGS, TABLE

OTHER_CLIENT = "another-product"


@pytest.fixture
def database(postgres):
    return postgres


@pytest.fixture
def db(database):
    """The running database, emptied of this product's rows (a test may have stopped it)."""
    database.start_server()
    with database.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"DROP TABLE IF EXISTS {CLEARINGS}")
    yield database
    database.start_server()


def rows(database, client_id: str = CLIENT_ID) -> list[tuple]:
    """(id, created_at, size, link) of the client id's backups, newest first; [] without the table."""
    with database.connect() as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0]
        if exists is None:
            return []
        return conn.execute(f"SELECT id, created_at, size, link FROM {TABLE} WHERE client_id = %s"
                            " ORDER BY created_at DESC, id DESC", (client_id,)).fetchall()


def wait_rows(database, predicate, timeout: float = 60, message: str = "database rows") -> list[tuple]:
    def check():
        found = rows(database)
        return (found,) if predicate(found) else None  # a tuple: truthy even for no rows
    return wait_for(check, timeout, interval=0.2, message=message)[0]


def env_for(sim, database, **extra) -> dict:
    return {"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_BACKUP_DATABASE_URL": database.url,
            "WHATSAPP_DATABASE_TIMEOUT_S": "3", **extra}


def outage(database) -> None:
    """Stop the database as a crash would, after making what it committed durable (the test
    server runs with synchronous_commit off: an immediate stop could lose the last rows)."""
    with database.connect() as conn:
        conn.execute("CHECKPOINT")
    database.stop_server()


def no_restore(server, message: str) -> dict:
    """The server shows a QR and restored nothing: the old login did not come back."""
    status = server.wait_status(lambda s: s["status"] == "qr", timeout=90, message=message)
    assert status["record"]["restoresFromBackup"] == 0, status["record"]
    assert "restored backup" not in server.log(), server.log()
    return status


def timed_status(server) -> tuple[dict, float]:
    started = time.monotonic()
    body = server.status()
    return body, time.monotonic() - started


def test_new_dyno_restores_from_database_and_survives_an_outage(servers, sim, db, tmp_path):
    data = tmp_path / "data"
    first = servers(env=env_for(sim, db), data_dir=data)
    link_phone(first, sim)
    stored = wait_rows(db, lambda r: len(r) >= 1, message="a backup row")
    assert stored[0][2] > 0 and stored[0][3].startswith("15550001111"), stored
    status = first.status()
    assert status["database"]["owner"] is True and status["database"]["database"] == "ok", status["database"]
    assert "***" not in db.url and pg.PASSWORD not in first.log()
    first.stop()  # the clean-shutdown backup is stored before ownership is released
    assert first.proc.returncode == 0, first.log()
    after_stop = rows(db)
    assert after_stop and after_stop[0][0] > stored[0][0], (after_stop, stored, first.log())

    # A new dyno: nothing of the data folder survives.
    shutil.rmtree(data)
    second = servers(env=env_for(sim, db, WHATSAPP_BACKUP_INTERVAL_S="2"), data_dir=data)
    ready = ready_without_qr(second)
    assert ready["record"]["restoresFromBackup"] == 1, ready["record"]
    assert ready["session"]["phone"] == "15550001111"
    assert "restoring backup" in second.log() and "before launching" in second.log(), second.log()
    assert ready["database"]["owner"] is True, ready["database"]
    assert len(sim.phone_state()["devices"]) == 1  # the same device: no new link

    # The database goes away: the session carries on, /status stays fast and names the error.
    newest_before = wait_rows(db, lambda r: r[0][0] > after_stop[0][0], message="a backup of the new dyno")[0][0]
    db.stop_server()
    status = second.wait_status(lambda s: s["database"]["database"] == "unreachable"
                                and s["database"]["backupFailures"] >= 1, timeout=60,
                                message="a database backup attempted and reported failing")
    assert status["status"] == "ready", status
    assert status["database"]["lastError"] and status["database"]["lastErrorAt"], status["database"]
    assert pg.PASSWORD not in status["database"]["lastError"]
    assert "store a backup: OperationalError" in second.log(), second.log()
    for _ in range(3):
        body, seconds = timed_status(second)
        assert body["status"] == "ready", body
        assert seconds < 2.0, seconds  # /status never waits for the database
    assert status["backups"]["count"] >= 1  # local backups go on

    # Back again: the next backup lands.
    db.start_server()
    wait_rows(db, lambda r: r and r[0][0] > newest_before, timeout=90, message="a backup after the outage")
    status = second.wait_status(lambda s: s["database"]["database"] == "ok", timeout=30, message="database ok")
    assert status["status"] == "ready"

    # The owner lock died with the database's connections: the server notices and takes it
    # back, so a newcomer with the same client id still finds the account driven.
    status = second.wait_status(lambda s: s["database"]["owner"] is True and s["database"]["ownerLostAt"],
                                timeout=60, message="ownership noticed lost and taken back")
    assert status["status"] == "ready", status
    newcomer = servers(env=env_for(sim, db), data_dir=tmp_path / "newcomer")
    locked = newcomer.wait_status(lambda s: s["reason"] == "profile_locked", timeout=60,
                                  message="the newcomer locked out")
    assert locked["database"]["holderPid"] == status["database"]["ownerPid"], (locked, status)
    assert not browsers_on(newcomer.data_dir)
    newcomer.stop()
    assert second.status()["status"] == "ready"

    # disconnect removes this client id's rows, never another's.
    with db.connect() as conn:
        conn.execute(f"INSERT INTO {TABLE} (client_id, link, manifest, data, size, sha256)"
                     " VALUES (%s, NULL, '{}'::jsonb, %s, 3, %s)",
                     (OTHER_CLIENT, b"abc", hashlib.sha256(b"abc").hexdigest()))
    code, body = second.post("/api/whatsapp/disconnect", timeout=60)
    assert code == 200, body
    assert second.status()["status"] == "stopped"
    wait_rows(db, lambda r: r == [], timeout=30, message="no rows of this client id")
    others = rows(db, OTHER_CLIENT)
    assert len(others) == 1 and others[0][2] == 3, others
    assert len(sim.phone_state()["devices"]) == 0  # disconnect logged the device out


def test_second_server_waits_for_the_database_owner(servers, sim, db, tmp_path):
    old = servers(env=env_for(sim, db), data_dir=tmp_path / "old")
    link_phone(old, sim)
    wait_rows(db, lambda r: len(r) >= 1, message="a backup row")
    owner = old.status()["database"]
    assert owner["owner"] is True and owner["ownerPid"], owner

    # A deploy overlapping the old dyno: same client id and database, another data folder.
    new = servers(env=env_for(sim, db), data_dir=tmp_path / "new")
    locked = new.wait_status(lambda s: s["reason"] == "profile_locked", timeout=60,
                             message="profile_locked")
    assert locked["status"] in ("reconnecting", "starting"), locked
    assert locked["database"]["owner"] is False, locked["database"]
    assert locked["database"]["holderPid"] == owner["ownerPid"], (locked["database"], owner)
    assert not browsers_on(new.data_dir)  # one browser in total
    assert browsers_on(old.data_dir)
    # It keeps waiting for the owner rather than giving up (the overlap may last minutes).
    tries = locked["maxReconnectAttempts"] + 2
    wait_for(lambda: new.log().count("session broke (profile_locked") >= tries, timeout=60,
             message=f"{tries} launch attempts refused for profile_locked")
    still = new.status()
    assert still["status"] == "reconnecting" and still["reason"] == "profile_locked", still
    assert not browsers_on(new.data_dir)

    old.stop()  # its clean-shutdown backup lands, then it lets go
    assert old.proc.returncode == 0, old.log()
    ready = ready_without_qr(new, timeout=90)
    assert ready["database"]["owner"] is True, ready["database"]
    assert ready["record"]["restoresFromBackup"] == 1, ready["record"]
    assert not browsers_on(old.data_dir)
    assert len(sim.phone_state()["devices"]) == 1


def test_a_login_cleared_during_a_database_outage_stays_cleared(servers, sim, db, tmp_path):
    """Issue 21: with the database unreachable, clear-session deleted the local login, logged
    the failed database delete and answered success; the next start and a fresh dyno then
    restored the old login from the database."""
    data = tmp_path / "data"
    first = servers(env=env_for(sim, db), data_dir=data)
    link_phone(first, sim)
    wait_rows(db, lambda r: len(r) >= 1, message="a backup row")
    outage(db)
    code, body = first.post("/api/whatsapp/clear-session", timeout=60)
    assert code == 200 and body["success"] is True, body
    status = first.status()
    assert status["status"] == "stopped" and status["backups"]["count"] == 0, status
    assert status["database"]["clearingsPending"] == 1, status["database"]
    assert (data / f"session-{CLIENT_ID}.clearings.json").exists()

    db.start_server()  # the clearing lands by itself, retried in the background
    wait_rows(db, lambda r: r == [], timeout=90, message="the cleared backups deleted in the database")
    first.wait_status(lambda s: s["database"]["clearingsPending"] == 0, timeout=30, message="the clearing stored")
    first.stop()

    restarted = servers(env=env_for(sim, db), data_dir=data)
    no_restore(restarted, "a QR after the restart")
    restarted.stop()  # it owns the client id while it runs
    no_restore(servers(env=env_for(sim, db), data_dir=tmp_path / "fresh-dyno"), "a QR on a fresh dyno")


def test_clear_session_on_the_server_that_waits_ends_the_owners_login(servers, sim, db, tmp_path):
    """Issue 21: clear-session answered by the server that is not the owner (a deploy
    overlapping the old dyno) must end the login the owner runs, and the owner learns of it."""
    old = servers(env=env_for(sim, db), data_dir=tmp_path / "old")
    link_phone(old, sim)
    wait_rows(db, lambda r: len(r) >= 1, message="a backup row")
    new = servers(env=env_for(sim, db), data_dir=tmp_path / "new")
    new.wait_status(lambda s: s["reason"] == "profile_locked", timeout=60, message="the new server waiting")
    code, body = new.post("/api/whatsapp/clear-session", timeout=60)
    assert code == 200 and body["success"] is True, body
    wait_rows(db, lambda r: r == [], timeout=30, message="the owner's backups deleted in the database")
    # The owner learns of it at its next ownership check and ends the login there too.
    ended = old.wait_status(lambda s: s["status"] == "stopped", timeout=60,
                            message="the owner ending the cleared login")
    assert ended["session"]["hasSession"] is False and ended["backups"]["count"] == 0, ended
    assert "cleared by another server or process" in old.log(), old.log()
    assert not browsers_on(old.data_dir)
    new.stop()
    old.stop()
    assert rows(db) == []
    kept = [p for p in (tmp_path / "old" / "backups" / CLIENT_ID).iterdir() if not p.name.startswith(".")]
    assert kept == [], kept
    again = servers(env=env_for(sim, db), data_dir=tmp_path / "old")
    no_restore(again, "a QR where the cleared login was")


def test_a_fresh_machine_restores_once_the_database_answers(servers, sim, db, tmp_path):
    """Issue 21: a fresh machine that found the database down at its first start showed a
    QR and, since Chromium had written Local Storage for that QR page, never asked the
    database again. Both ways back are shown: the next start, and the same run."""
    first = servers(env=env_for(sim, db), data_dir=tmp_path / "first")
    link_phone(first, sim)
    wait_rows(db, lambda r: len(r) >= 1, message="a backup row")
    first.stop()
    outage(db)

    restarted = servers(env=env_for(sim, db), data_dir=tmp_path / "restarted")
    restarted.wait_status(lambda s: s["status"] == "qr", timeout=60, message="a QR while the database is down")
    restarted.stop()
    db.start_server()
    again = servers(env=env_for(sim, db), data_dir=tmp_path / "restarted")
    ready = ready_without_qr(again)
    assert ready["record"]["restoresFromBackup"] == 1, ready["record"]
    assert ready["record"]["loginSource"] == "database"
    again.stop()

    # The same run: the QR shown during the outage gives way to the backup once the
    # database answers (asked every 30 s while a never-linked QR is shown).
    outage(db)
    waiting = servers(env=env_for(sim, db), data_dir=tmp_path / "waiting")
    waiting.wait_status(lambda s: s["status"] == "qr", timeout=60, message="a QR while the database is down")
    db.start_server()
    ready = waiting.wait_status(lambda s: s["status"] == "ready", timeout=120,
                                message="ready from the database backup, without a scan")
    assert ready["record"]["restoresFromBackup"] == 1, ready["record"]
    assert len(sim.phone_state()["devices"]) == 1  # the same device: nobody linked a new one


def test_a_database_stall_never_tears_down_a_ready_session(servers, sim, db, tmp_path):
    """Issue 21: a stall a little over the database timeout was read as "another server took
    over" (this server's own abandoned connection still held the lock): the browser was
    closed. Here the owner connection's backend is stopped for timeout + 2 s."""
    server = servers(env=env_for(sim, db), data_dir=tmp_path / "data")
    link_phone(server, sim)
    owner = server.wait_status(lambda s: s["database"]["owner"], timeout=30, message="the owner lock")["database"]
    stalled, statuses = owner["ownerPid"], []
    os.kill(stalled, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # sampling /status through the stall
            statuses.append(server.status())
            time.sleep(0.2)  # sampling interval, not synchronisation
    finally:
        os.kill(stalled, signal.SIGCONT)
    back = server.wait_status(lambda s: s["database"]["owner"] and s["database"]["ownerPid"] != stalled,
                              timeout=60, message="the lock taken back from the stalled connection")
    statuses.append(back)
    assert {s["status"] for s in statuses} == {"ready"}, [(s["status"], s["reason"]) for s in statuses]
    assert not any(s["reason"] == "profile_locked" for s in statuses)
    assert "this server's own stalled connection" in server.log(), server.log()
    assert "status ready -> " not in server.log(), server.log()
