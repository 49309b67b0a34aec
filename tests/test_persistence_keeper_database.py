"""The keeper with its database strategy against a real PostgreSQL server, stopped and started
by the tests (no browser): a login cleared while the database is down stays cleared (on
this machine, on a fresh one, after a kill -9 mid-clearing, and when another server was
asked), a fresh machine keeps asking the database, and nothing is restored from the
database without its lock."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from profiles import WID, make_profile

from whatsapp.bus import Bus
from whatsapp.config import Config
from whatsapp.failures import ProfileLocked
from whatsapp.persistence.database.connection import Database, DatabaseUnavailable
from whatsapp.persistence.database.ownership import Ownership
from whatsapp.persistence.database.store import TABLE
from whatsapp.persistence.keeper import Keeper
from whatsapp.persistence.profile import has_login
from whatsapp.states import Account

ACCOUNT = Account(wid=WID, phone="15550001111")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def database(postgres):
    postgres.start_server()  # a test may have left it stopped
    yield postgres
    postgres.start_server()


@pytest.fixture
def client_id():
    return f"c-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_keeper(database, client_id, tmp_path):
    keepers = []

    def make(data: Path | None = None, url: str | None = None) -> Keeper:
        config = Config(session_dir=data or tmp_path / "data", client_id=client_id, backup_delay_s=0.0,
                        database_url=url or database.url, database_url_source="WHATSAPP_DATABASE_URL",
                        database_timeout_s=2.0)
        keeper = Keeper(config, Bus(client_id))
        keeper.start()
        keepers.append(keeper)
        return keeper

    yield make
    for keeper in keepers:
        keeper.stop(4)


def outage(database) -> None:
    """Stop the database as a crash would, after making what it committed durable (the test
    server runs with synchronous_commit off, so an immediate stop could lose the last rows)."""
    with database.connect() as conn:
        conn.execute("CHECKPOINT")
    database.stop_server()


def rows(database, client_id) -> list[tuple]:
    with database.connect() as conn:
        if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0] is None:
            return []
        return conn.execute(f"SELECT id, link FROM {TABLE} WHERE client_id = %s", (client_id,)).fetchall()


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)  # polling interval of a bounded wait
    return value


def linked_with_backup(keeper: Keeper, database) -> Keeper:
    make_profile(keeper.config.session_dir, name=keeper.config.profile_dir.name)
    keeper.check_owner()
    keeper.before_launch(keeper.config.profile_dir)
    keeper.on_ready(ACCOUNT, linked_now=True)
    keeper.take_backup(keeper.config.profile_dir, ACCOUNT)
    wait_for(lambda: rows(database, keeper.config.client_id), 20, "the backup in the database")
    return keeper


def restores_nothing(keeper: Keeper) -> bool:
    """A launch of `keeper` finds no login and restores none; then it stops (lets go)."""
    keeper.check_owner()
    keeper.before_launch(keeper.config.profile_dir)
    nothing = not has_login(keeper.config.profile_dir) and keeper.record.current.restores_from_backup == 0
    keeper.stop(4)
    return nothing


def clear_during_an_outage(make_keeper, database, data: Path) -> Keeper:
    """A linked keeper with a backup in the database, cleared while the database is down."""
    linked_with_backup(make_keeper(data), database).stop(4)  # released: the next one may own it
    keeper = make_keeper(data)
    keeper.check_owner()
    outage(database)
    started = time.monotonic()
    keeper.forget(keeper.config.profile_dir)
    assert time.monotonic() - started < 6.0  # disconnect still answers within its deadline
    assert keeper.status()["database"]["clearingsPending"] == 1
    return keeper


def test_a_login_cleared_while_the_database_is_down_stays_cleared(make_keeper, database, client_id, tmp_path):
    """Issue 21: the failed database delete was only logged, and the next start or a fresh
    dyno restored the old login from the database."""
    keeper = clear_during_an_outage(make_keeper, database, tmp_path / "data")
    database.start_server()
    # The clearing lands by itself once the database answers (the background retry).
    wait_for(lambda: not rows(database, client_id), 30, "the cleared backups deleted in the database")
    wait_for(lambda: keeper.status()["database"]["clearingsPending"] == 0, 10, "the clearing stored")
    keeper.stop(4)
    assert restores_nothing(make_keeper(tmp_path / "data"))
    assert restores_nothing(make_keeper(tmp_path / "fresh-dyno"))


def test_a_restart_before_the_clearing_landed_restores_nothing(make_keeper, database, client_id, tmp_path):
    keeper = clear_during_an_outage(make_keeper, database, tmp_path / "data")
    keeper.stop(4)  # the database still down: the clearing stays on disk
    database.start_server()
    restarted = make_keeper(tmp_path / "data")  # sends it again at start...
    assert restores_nothing(restarted)  # ...and, landed or not yet, restores nothing
    wait_for(lambda: not rows(database, client_id), 30, "the cleared backups deleted in the database")
    assert restores_nothing(make_keeper(tmp_path / "fresh-dyno"))


def test_a_kill_between_deleting_the_profile_and_the_backups(make_keeper, database, client_id, tmp_path):
    """Issue 21: kill -9 of a real process in the middle of a clearing, with the database up."""
    data = tmp_path / "data"
    first = linked_with_backup(make_keeper(data), database)
    first.stop(4)
    script = textwrap.dedent(f"""
        import os, signal, shutil, sys
        from pathlib import Path
        sys.path[:0] = [{str(ROOT)!r}]
        from whatsapp.bus import Bus
        from whatsapp.config import Config
        from whatsapp.persistence import keeper as K
        def delete_then_die(profile):
            shutil.rmtree(profile)
            os.kill(os.getpid(), signal.SIGKILL)
        K.delete_profile = delete_then_die
        config = Config(session_dir=Path({str(data)!r}), client_id={client_id!r},
                        database_url={database.url!r}, database_timeout_s=2.0)
        keeper = K.Keeper(config, Bus())
        keeper.start()
        keeper.check_owner()
        keeper.forget(config.profile_dir)
        print("not killed")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stdout + done.stderr
    assert not (data / f"session-{client_id}").exists()
    assert rows(database, client_id)  # killed before the database heard of it
    restarted = make_keeper(data)  # the next start sends the clearing left on disk
    assert restores_nothing(restarted)
    wait_for(lambda: not rows(database, client_id), 30, "the backups deleted in the database")
    assert restores_nothing(make_keeper(tmp_path / "fresh-dyno"))


def test_a_clearing_asked_of_a_server_that_is_not_the_owner(make_keeper, database, client_id, tmp_path):
    """Issue 21: clear-session landing on the server that waits (a deploy overlapping the old
    one): it must end the login the owner runs, and the owner must learn of it."""
    owner = linked_with_backup(make_keeper(tmp_path / "old-dyno"), database)
    waiting = make_keeper(tmp_path / "new-dyno")
    with pytest.raises(ProfileLocked):
        waiting.check_owner()
    waiting.forget(waiting.config.profile_dir)
    assert not rows(database, client_id)
    assert not owner.cleared_elsewhere()
    owner.keep_owner()
    assert owner.cleared_elsewhere()
    owner.take_backup(owner.config.profile_dir, ACCOUNT)  # too late to save it
    owner.on_clean_shutdown(owner.config.profile_dir, ACCOUNT, ready_for=100)
    assert owner.status()["database"]["backupPending"] is False and not rows(database, client_id)
    owner.stop(4)
    assert restores_nothing(make_keeper(tmp_path / "old-dyno"))  # its own restart deletes the login
    assert restores_nothing(make_keeper(tmp_path / "fresh-dyno"))


def test_a_fresh_machine_keeps_asking_the_database(make_keeper, database, client_id, tmp_path):
    """Issue 21: a fresh machine that found the database down at the first start never asked
    it again (restore_unresolved tells the session to keep asking while a QR is shown)."""
    linked_with_backup(make_keeper(tmp_path / "old"), database).stop(4)
    outage(database)
    fresh = make_keeper(tmp_path / "fresh")
    fresh.check_owner()  # no login here: launches (a QR) without the lock
    fresh.before_launch(fresh.config.profile_dir)
    assert not has_login(fresh.config.profile_dir)
    assert fresh.restore_unresolved()
    assert fresh.next_restore(set()) is None and fresh.restore_unresolved()
    database.start_server()
    tried: set[str] = set()
    name = fresh.next_restore(tried)
    assert name and tried and not fresh.restore_unresolved()
    fresh.restore(name, fresh.config.profile_dir)
    assert has_login(fresh.config.profile_dir)
    assert fresh.status()["database"]["owner"] is True
    assert fresh.record.current.login_source == "database"


def test_nothing_is_restored_from_the_database_without_its_lock(make_keeper, database, client_id, tmp_path,
                                                                monkeypatch):
    """Issue 21: when taking the lock failed or was slow, the server started without it and
    still restored from the database (two browsers on one account during a slow deploy)."""
    linked_with_backup(make_keeper(tmp_path / "old"), database).stop(4)
    fresh = make_keeper(tmp_path / "fresh")

    def slow_lock(self):
        raise DatabaseUnavailable("take the owner lock: no answer from the database within 2.0 s")

    monkeypatch.setattr(Ownership, "acquire", slow_lock)
    fresh.check_owner()  # no login here: may launch (a QR) ...
    fresh.before_launch(fresh.config.profile_dir)
    assert not has_login(fresh.config.profile_dir)  # ... but restores nothing from the database
    assert fresh.next_restore(set()) is None and fresh.restore_unresolved()
    monkeypatch.undo()

    # A rival holding the lock: nothing either.
    rival = Ownership(Database(database.url, 2.0), client_id)
    assert rival.acquire()
    try:
        assert fresh.next_restore(set()) is None and not has_login(fresh.config.profile_dir)
    finally:
        rival.release()
    assert fresh.next_restore(set()) is not None


def test_a_login_from_the_database_waits_for_the_database(make_keeper, database, client_id, tmp_path):
    """check_owner with the database unreachable: a login linked here launches; one restored
    from the database may run elsewhere and waits (ProfileLocked)."""
    closed = f"postgres://u:pw@127.0.0.1:{_closed_port()}/db"
    linked_here = linked_with_backup(make_keeper(tmp_path / "here"), database)
    linked_here.stop(4)
    fresh = make_keeper(tmp_path / "fresh")
    fresh.check_owner()
    fresh.before_launch(fresh.config.profile_dir)
    assert fresh.record.current.login_source == "database"
    fresh.stop(4)

    make_keeper(tmp_path / "here", url=closed).check_owner()  # linked here: launches
    with pytest.raises(ProfileLocked, match="came from it"):
        make_keeper(tmp_path / "fresh", url=closed).check_owner()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
