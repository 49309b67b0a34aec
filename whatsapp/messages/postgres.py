"""The message store in PostgreSQL, for hosts whose disk does not survive a restart.

Tables `whatsapp_messages`, `whatsapp_idempotency`, `whatsapp_seen` (see `schema`), created
if missing; every row carries `client_id`, so client ids (and other products) can share a
database. A COMMIT has returned before a message is reported accepted.

Connections: a small pool (default 4), because an accept is five short statements and
connecting (TCP + TLS + SCRAM) would cost more than all of them. Writers of one client id
are serialised by a transaction-level advisory lock, so the outbox count is exact and
sequence order is commit order.

Every call is bounded by `timeout_s`: libpq's connect_timeout, the session's
statement_timeout and lock_timeout, and the whole call runs in a daemon thread the caller
stops waiting for at the bound, which also holds against a frozen server. Failures raise
StoreUnavailable with the URL's password masked. A pooled connection found dead (the
server restarted) is replaced and the call retried once, but only when the failure came
before COMMIT was sent: after that the outcome is unknown and the caller must hear it.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg

from . import schema
from .bounded import NoAnswer, Pool, PoolClosed, lock_key, mask_url, run_bounded
from .rows import Rows
from .sql import SqlStore, Tx, recount
from .store import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
APPLICATION_NAME = "whatsapp-messages"
_SCHEMA_LOCK = lock_key("whatsapp-messages-schema")
# Errors of the database or the way to it; anything else (bad SQL, a constraint) is a bug.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.InternalError)


@functools.lru_cache(maxsize=1024)
def _pg(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (the shared SQL has no literal ? or %)."""
    return sql.replace("?", "%s")


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any], key: int):
        self._conn, self._key = conn, key

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        cursor = self._conn.execute(_pg(sql), params)
        return Rows(cursor.fetchall() if cursor.description is not None else [], cursor.rowcount)

    def lock(self) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))


class PostgresMessageStore(SqlStore):
    """The store of `client_id` in the database at `url` (postgres:// or postgresql://).

    Nothing is contacted here: the schema is created on the first call (or `check()`), so a
    server that starts while the database is down accepts messages once it is back."""

    def __init__(self, url: str, client_id: str, *, timeout_s: float = 5.0, pool_size: int = 4):
        super().__init__(client_id)
        if urlsplit(url).scheme not in ("postgres", "postgresql"):
            raise ValueError("url: expected a postgres:// or postgresql:// URL")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be greater than 0")
        self._url, self.timeout_s = url, float(timeout_s)
        self.safe_url = mask_url(url)
        password = urlsplit(url).password
        self._secrets = sorted({s for s in (password, unquote(password or "")) if s}, key=len, reverse=True)
        self._key = lock_key("whatsapp-messages:" + client_id)
        self._pool: Pool[psycopg.Connection[Any]] = Pool(self._connect, pool_size)
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"PostgresMessageStore({self.safe_url!r}, {self.client_id!r})"

    def _connect(self, seconds_left: float) -> psycopg.Connection[Any]:
        # libpq counts whole seconds, at least 2; the thread bound is exact anyway.
        wait = max(2, math.ceil(min(seconds_left, self.timeout_s)))
        ms = str(math.ceil(self.timeout_s * 1000))
        # A client that dies inside a transaction must not hold the accept lock for long.
        idle_ms = str(max(5000, 2 * int(ms)))
        conn = psycopg.connect(self._url, connect_timeout=wait, application_name=APPLICATION_NAME,
                               autocommit=False, prepare_threshold=None, keepalives=1, keepalives_idle=wait,
                               keepalives_interval=wait, keepalives_count=3)
        try:
            # Set with a query rather than the `options` startup parameter, which
            # connection poolers (PgBouncer) reject. synchronous_commit: an accepted message
            # must survive a database crash, whatever the server's default says.
            conn.execute("SELECT set_config('statement_timeout', %s, false),"
                         " set_config('lock_timeout', %s, false),"
                         " set_config('idle_in_transaction_session_timeout', %s, false),"
                         " set_config('synchronous_commit', 'on', false)", (ms, ms, idle_ms))
            conn.commit()
            self._ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables if missing (once per store object), then rebuild the counters."""
        with self._schema_lock:
            if self._schema_ready:
                return
            # The DDL runs in one transaction, so its last object existing means all do.
            # Skipped when present: CREATE INDEX IF NOT EXISTS still locks the table.
            present = conn.execute("SELECT to_regclass(%s) IS NOT NULL AND EXISTS (SELECT 1 FROM"
                                   " pg_trigger WHERE tgname = %s)",
                                   (schema.COUNTS, schema.MESSAGES + "_count")).fetchone()
            if not (present and present[0]):
                # Two servers starting together would race CREATE ... IF NOT EXISTS into a
                # unique violation on the catalog; serialise them.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in schema.ddl("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BIGINT") \
                        + schema.POSTGRES_TRIGGERS:
                    conn.execute(statement)
            conn.commit()
            # Separately: the writers' lock first and no table lock held, as every writer
            # takes them (holding the DDL's locks while waiting for it would deadlock).
            tx = _PgTx(conn, self._key)
            tx.lock()
            recount(tx, self.client_id)
            conn.commit()
            self._schema_ready = True
            log.info("message store: PostgreSQL %s (client id %r)", self.safe_url, self.client_id)

    def _transaction(self, what: str, fn: Callable[[Tx], T]) -> T:
        deadline = time.monotonic() + self.timeout_s
        try:
            return run_bounded(lambda: self._attempts(fn, deadline), self.timeout_s, "messages-db")
        except NoAnswer as exc:
            error = f"{what}: no answer from the database {self.safe_url}: {exc}"
        except PoolClosed as exc:
            error = f"{what}: the message store is closed ({exc})"
        except _UNAVAILABLE as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            error = f"{what}: database {self.safe_url}: {type(exc).__name__}: {self._scrub(first_line)}"
        raise StoreUnavailable(error) from None  # the cause's text may hold the password

    def _attempts(self, fn: Callable[[Tx], T], deadline: float) -> T:
        """Runs in the bounded thread: one try, and a second on a fresh connection when a
        pooled one turns out dead before anything was committed."""
        while True:
            conn, reused = self._pool.get(deadline)
            committing = False
            try:
                result = fn(_PgTx(conn, self._key))
                committing = True
                conn.commit()
            except BaseException as exc:
                if self._give_back(conn):
                    raise
                dead_before_commit = reused and not committing and isinstance(exc, _UNAVAILABLE)
                if not dead_before_commit or time.monotonic() >= deadline:
                    raise
                log.info("a pooled database connection had died (%s); retrying on a new one",
                         type(exc).__name__)
                self._pool.discard_idle()
                continue
            self._pool.put(conn)
            return result

    def _give_back(self, conn: psycopg.Connection[Any]) -> bool:
        """After a failed call: roll back and pool `conn` (True), or drop it if it is broken."""
        if not (conn.closed or conn.broken):
            try:
                conn.rollback()
                self._pool.put(conn)
                return True
            except _UNAVAILABLE:
                pass  # broken after all
        self._pool.discard(conn)
        return False

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def check(self) -> None:
        self._transaction("check the store", lambda tx: tx.execute("SELECT 1").fetchone())

    def close(self) -> None:
        self._pool.close()
