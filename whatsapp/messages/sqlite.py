"""The message store in one SQLite file, `<data dir>/messages-<client id>.sqlite3` (the default).

Durability: WAL journal with `synchronous=FULL`, so a COMMIT returns only after the WAL is
fsynced; a process killed at any point leaves the last committed state. One connection,
used under a lock: every operation is a few index lookups, far shorter than the wait a
second connection would add in SQLite's own locking, and `BEGIN IMMEDIATE` with a busy
timeout covers another process opening the same file (the owner-only profile lock
normally prevents that). The file and its WAL are owner-only (0o600).

A server makes its store with `open_now=False` and opens it beside the browser's launch
(`MessageStore.open_soon`): the integrity check at the open reads the whole file. A store
that could not be opened (a full disk, a folder not writable yet) is tried again at every
call (at most once a second), StoreUnavailable meanwhile, so that the server accepts once
the cause is gone, without a restart. A damaged file is not tried again: every call raises
StoreCorrupt (a person must look; the file is never written).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from . import schema
from .rows import Rows
from .sql import SqlStore, Tx, recount
from .store import StoreCorrupt, StoreFull, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
_MIN_VERSION = (3, 35, 0)  # RETURNING
_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
REOPEN_EVERY_S = 1.0


def default_path(data_dir: str | os.PathLike[str], client_id: str) -> Path:
    """Where the contract puts the store: `<dir>/messages-<client id>.sqlite3`."""
    return Path(data_dir) / f"messages-{client_id}.sqlite3"


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        cursor = self._conn.execute(sql, params)
        return Rows(cursor.fetchall(), cursor.rowcount)

    def lock(self) -> None:
        pass  # BEGIN IMMEDIATE already holds SQLite's write lock, and one connection our lock


class SqliteMessageStore(SqlStore):
    """The store in the SQLite file `path`, opened (and created, owner-only, with its folder)
    now. Raises StoreCorrupt naming the file when it is not a sound SQLite database (it is
    never replaced: it holds accepted messages), StoreUnavailable when it cannot be opened.
    `busy_timeout_s` bounds the wait for another process's write lock and for our own."""

    def __init__(self, path: str | os.PathLike[str], client_id: str, *, busy_timeout_s: float = 5.0,
                 open_now: bool = True):
        super().__init__(client_id)
        if sqlite3.sqlite_version_info < _MIN_VERSION:
            raise StoreUnavailable(f"SQLite {sqlite3.sqlite_version} is too old for the message "
                                   "store (3.35 or newer needed)")
        if not busy_timeout_s > 0:
            raise ValueError("busy_timeout_s must be greater than 0")
        self.path, self.busy_timeout_s = Path(path), float(busy_timeout_s)
        self._lock = threading.Lock()
        self._closed = False
        self._open_error: str | None = None
        self._next_open = 0.0
        self._corrupt: str | None = None  # why the file cannot be used: it is not opened again
        self._conn: sqlite3.Connection | None = self._open() if open_now else None

    def __repr__(self) -> str:
        return f"SqliteMessageStore({str(self.path)!r}, {self.client_id!r})"

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Create it owner-only before SQLite does (SQLite would use the umask); SQLite
            # gives its -wal and -shm files the database file's permissions.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            if os.stat(self.path).st_mode & 0o077:
                os.chmod(self.path, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the message store {self.path}: {exc}") from exc
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)  # shared under self._lock
        except sqlite3.Error as exc:
            raise self._mapped("open", exc) or StoreUnavailable(f"open: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                log.warning("message store %s: journal mode %s instead of WAL (the file system may "
                            "not support it); still durable, but slower", self.path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise StoreCorrupt(self._corrupt_text("; ".join(problems[:3])))
            conn.execute("BEGIN IMMEDIATE")
            for statement in schema.ddl("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER") \
                    + schema.SQLITE_TRIGGERS:
                conn.execute(statement)
            recount(_SqliteTx(conn), self.client_id)
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error) and (error := self._mapped("open", exc)):
                raise error from exc
            raise
        log.info("message store: %s (client id %r)", self.path, self.client_id)
        return conn

    def _corrupt_text(self, detail: str) -> str:
        return (f"the message store {self.path} is damaged ({detail}); it was left as it is, "
                "since it may hold accepted messages: move it away to start with an empty one, "
                "or repair it with the sqlite3 tool's .recover")

    def _mapped(self, what: str, exc: sqlite3.Error) -> StoreUnavailable | None:
        """The store error for a database failure, or None for a bug (wrong SQL, constraint)."""
        name = getattr(exc, "sqlite_errorname", "")
        if name in _CORRUPT or type(exc) is sqlite3.DatabaseError:
            return StoreCorrupt(self._corrupt_text(str(exc)))
        if not isinstance(exc, sqlite3.OperationalError):
            return None
        if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
            return StoreUnavailable(f"{what}: the message store {self.path} is locked by another "
                                    f"process (waited {self.busy_timeout_s:g} s)")
        if name == "SQLITE_FULL":
            return StoreFull(f"{what}: the disk holding the message store {self.path} is full")
        return StoreUnavailable(f"{what}: message store {self.path}: {exc}")

    def _transaction(self, what: str, fn: Callable[[Tx], T]) -> T:
        if not self._lock.acquire(timeout=self.busy_timeout_s):
            raise StoreUnavailable(f"{what}: the message store {self.path} stayed busy for "
                                   f"{self.busy_timeout_s:g} s")
        try:
            conn = self._conn or self._reopen(what)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(_SqliteTx(conn))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                error = self._mapped(what, exc)
                if error is None:
                    raise
                raise error from exc
            return result
        finally:
            self._lock.release()

    def _reopen(self, what: str) -> sqlite3.Connection:
        """Open a store made with `open_now=False` (under the lock); StoreUnavailable until it
        opens, StoreCorrupt for good once the file was found damaged."""
        if self._closed:
            raise StoreUnavailable(f"{what}: the message store {self.path} is closed")
        if self._corrupt is not None:
            raise StoreCorrupt(self._corrupt)
        if time.monotonic() < self._next_open:
            raise StoreUnavailable(f"{what}: the message store could not be opened: {self._open_error}")
        try:
            self._conn = self._open()
        except StoreCorrupt as exc:
            self._corrupt = str(exc)
            raise
        except StoreUnavailable as exc:
            self._open_error, self._next_open = str(exc), time.monotonic() + REOPEN_EVERY_S
            raise
        return self._conn

    def check(self) -> None:
        self._transaction("check the store", lambda tx: tx.execute("SELECT 1").fetchone())

    def close(self) -> None:
        with self._lock:
            conn, self._conn, self._closed = self._conn, None, True
        if conn is not None:
            conn.close()  # the last connection: SQLite checkpoints the WAL into the file

