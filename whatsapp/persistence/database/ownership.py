"""One owner per client id: a session-level advisory lock in PostgreSQL.

The lock (`lock_key('whatsapp-session:' + client_id)`) is held by one long-lived connection
and dies with it (crash, database restart), so a dead owner never blocks a successor.

A call that passes its bound is abandoned, but its connection lives on until the stalled
statement ends, and it may still hold the lock (or have just taken it). Seen from a fresh
connection that looks exactly like another server holding it. So every backend this process
opens for the lock is remembered by (pid, start time), and a holder that is one of ours is
ended with `pg_terminate_backend` and the lock taken again: a slow database never reads as a
rival, and never tears a healthy session down. Only a holder that is not ours is a rival.

`acquire()` raises `DatabaseUnavailable`; `check()` and `release()` never raise (they run
periodically and at shutdown); `status()` never touches the network.
"""
from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from ...states import iso, utcnow
from .connection import Database, DatabaseUnavailable, NoAnswer, lock_key

log = logging.getLogger(__name__)
T = TypeVar("T")

# A bigint advisory lock shows in pg_locks as classid = high 32 bits, objid = low, objsubid = 1.
_HOLDER = ("SELECT l.pid, a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l"
           " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
           " AND l.granted AND l.objsubid = 1 AND l.classid::bigint = %s AND l.objid::bigint = %s"
           " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
_ME = "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
_MINE_KEPT = 64


class Check(enum.Enum):
    OWNED = "owned"              # the lock is ours, the connection answered
    RIVAL = "rival"              # another server holds it (the database answered)
    UNREACHABLE = "unreachable"  # the database did not answer: nothing is known
    RECOVERING = "recovering"    # our own stalled connection holds it; being ended
    NOT_WANTED = "not_wanted"    # released: this process does not want it


class Ownership:
    """The owner lock of one client id. Thread-safe (one operation at a time)."""

    def __init__(self, db: Database, client_id: str):
        self.db = db
        self.client_id = client_id
        self._key = lock_key("whatsapp-session:" + client_id)
        self._mutex = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._want = False
        # Every backend opened for the lock, the newest _MINE_KEPT (a dict keeps their order).
        self._mine: dict[tuple[int, datetime | None], None] = {}
        self._state_lock = threading.Lock()  # never held across network calls
        self._state: dict[str, Any] = {"owner": False, "ownerPid": None, "holderPid": None,
                                       "holderApplication": None, "holderAddress": None,
                                       "holderSince": None, "ownerLostAt": None}

    @property
    def owned(self) -> bool:
        return self._conn is not None

    def acquire(self) -> bool:
        """Try, without waiting, to own the client id. False: a rival holds it (`status()`
        names it; later `check()` calls keep trying). Raises `DatabaseUnavailable`."""
        with self._mutex:
            self._want = True
            return self._acquire_locked() is Check.OWNED

    def check(self, probe: Callable[[psycopg.Connection], T] | None = None) -> tuple[Check, T | None]:
        """Bounded, for a periodic caller: is the lock still ours? `probe(conn)` runs on the
        owner connection in the same call (the liveness check) and its result is returned
        with OWNED. Lost: taken back at once when nobody else holds it."""
        with self._mutex:
            if not self._want:
                return Check.NOT_WANTED, None
            conn = self._conn
            if conn is not None:
                def alive() -> T | None:
                    conn.execute("SELECT 1").fetchone()
                    return probe(conn) if probe else None
                try:
                    return Check.OWNED, self.db.call("check the owner connection", alive, on_abandon=conn.close)
                except NoAnswer:
                    pass  # still busy in the abandoned thread, which closes it when done
                except DatabaseUnavailable:
                    conn.close()
                self._conn = None
                self._note(owner=False, ownerPid=None, ownerLostAt=iso(utcnow()))
                log.error("lost the owner connection of client id %r to the backup database; taking "
                          "the lock again", self.client_id)
            try:
                state = self._acquire_locked()
            except DatabaseUnavailable:
                return Check.UNREACHABLE, None
            if state is not Check.OWNED or probe is None or self._conn is None:
                return state, None
            owner = self._conn
            try:
                return Check.OWNED, self.db.call("check the owner connection", lambda: probe(owner),
                                                 on_abandon=owner.close)
            except DatabaseUnavailable:
                return Check.OWNED, None  # owned; the next check finds out about the connection

    def release(self) -> None:
        """Give ownership up (idempotent, bounded, never raises): unlock, then close."""
        with self._mutex:
            self._want = False
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                self.db.call("release the owner lock",
                             lambda: conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,)),
                             on_abandon=conn.close)
            except NoAnswer:
                pass  # closed when the abandoned thread ends; the lock goes with the connection
            except DatabaseUnavailable:
                conn.close()
            else:
                conn.close()
            self._note(owner=False, ownerPid=None)
            log.info("released ownership of client id %r", self.client_id)

    def status(self) -> dict[str, Any]:
        """A snapshot for /status; no network call. Times are ISO 8601 UTC or None."""
        with self._state_lock:
            return dict(self._state)

    # -- internals ------------------------------------------------------------------------
    def _acquire_locked(self) -> Check:
        if self._conn is not None:
            return Check.OWNED
        state, stalled = self._attempt()
        if stalled is not None and self._end(stalled):
            state, _ = self._attempt()  # our old backend has just gone: once more
        return state

    def _attempt(self) -> tuple[Check, int | None]:
        """One try for the lock; with RECOVERING, the pid of our own backend that holds it."""
        opened: list[psycopg.Connection] = []
        unsigned = self._key & 0xFFFFFFFFFFFFFFFF

        def attempt() -> tuple[bool, Any]:
            conn = self.db.connect()
            opened.append(conn)
            try:
                pid, started = conn.execute(_ME).fetchone() or (conn.info.backend_pid, None)
                self._remember((pid, started))  # before the lock: an abandoned attempt may take it
                if conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()[0]:  # type: ignore[index]
                    return True, pid
                holder = conn.execute(_HOLDER, (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
            except BaseException:
                conn.close()
                raise
            conn.close()
            return False, holder

        # An abandoned attempt may have taken the lock: closing its connection gives it back.
        got, detail = self.db.call("take the owner lock", attempt, on_abandon=lambda: [_close(c) for c in opened])
        if got:
            self._conn = opened[0]
            self._note(owner=True, ownerPid=detail, holderPid=None, holderApplication=None,
                       holderAddress=None, holderSince=None)
            log.info("this server now owns client id %r (database backend pid %s)", self.client_id, detail)
            return Check.OWNED, None
        pid, application, address, since = detail or (None, None, None, None)
        if pid is None:
            return Check.RECOVERING, None  # let go between the two statements: try again later
        if (pid, since) in self._mine:
            log.warning("the owner lock of client id %r is held by this server's own stalled connection "
                        "(backend pid %s), not by another server: ending it", self.client_id, pid)
            return Check.RECOVERING, pid
        with self._state_lock:
            news = self._state["holderPid"] != pid
            self._state.update(owner=False, ownerPid=None, holderPid=pid, holderApplication=application,
                               holderAddress=address, holderSince=iso(since))
        if news:
            log.warning("client id %r is owned by another server (backend pid %s, %s from %s); "
                        "not driving the account until it lets go", self.client_id, pid, application, address)
        return Check.RIVAL, None

    def _end(self, pid: int) -> bool:
        """End our own stalled backend `pid`, waiting (bounded) until it has gone; True if it has."""
        wait_ms = int(self.db.timeout_s * 500)

        def run() -> bool:
            with self.db.connect() as conn:
                row = conn.execute("SELECT pg_terminate_backend(%s, %s)", (pid, wait_ms)).fetchone()
            return bool(row and row[0])

        try:
            return self.db.call("end a stalled connection of ours", run)
        except DatabaseUnavailable:
            return False

    def _remember(self, backend: tuple[int, datetime | None]) -> None:
        with self._state_lock:
            self._mine[backend] = None
            while len(self._mine) > _MINE_KEPT:
                del self._mine[next(iter(self._mine))]

    def _note(self, **fields: Any) -> None:
        with self._state_lock:
            self._state.update(fields)


def _close(conn: psycopg.Connection) -> bool:
    conn.close()
    return True
