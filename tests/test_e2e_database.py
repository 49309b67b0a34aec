"""A login that outlives the machine: backups in PostgreSQL, end to end.

gunicorn as the Procfile runs it, real Chromium, the simulator, and a real PostgreSQL server
(tests/pg.py) reached through `WHATSAPP_BACKUP_DATABASE_URL`.
"""
from __future__ import annotations

import hashlib
import shutil
import time

import pytest
from conftest import link_phone, ready_without_qr
from harness import browsers_on, wait_for

try:
    import pg
except ImportError:  # tests/ imported as a package
    from tests import pg
from whatsapp.persistence.database.store import TABLE

CLIENT_ID = "energenie-whatsapp"
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
