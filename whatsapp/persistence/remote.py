"""Backups of the login in PostgreSQL, and one owner per client id, for hosts whose files vanish.

The product's own table, created if missing (several products or client ids may share a
database, so every statement filters by `client_id`):

    whatsapp_session_backups(id bigserial primary key, client_id text not null,
        created_at timestamptz not null default now(), link text, manifest jsonb not null,
        data bytea not null, size bigint not null, sha256 text not null)
    index whatsapp_session_backups_client_created (client_id, created_at desc, id desc)

Blobs are opaque here (`whatsapp.archive.pack/unpack` make and check them); this module stores
bytes + manifest and checks only the stored size and sha256.

Ownership: a session-level advisory lock on `lock_key('whatsapp-session:' + client_id)` held
by one long-lived connection. It dies with that connection (crash, DB restart), so a dead
owner never blocks a successor; `check_owner()` notices the loss.

Every call is bounded: `timeout_s` for connecting and small statements, plus size / 1 MiB/s
for moving a blob. Calls run in a short-lived daemon thread and the caller stops waiting at
the bound even when the network hangs in a way no libpq timeout catches (a frozen server);
any database problem is raised as `RemoteUnavailable`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterator, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg.types.json import Jsonb

from ..config import CLIENT_ID_RE

log = logging.getLogger(__name__)
T = TypeVar("T")

TABLE = "whatsapp_session_backups"
APPLICATION_NAME = "whatsapp-session"
_MIN_TRANSFER_RATE = 1024 * 1024  # bytes/s granted to moving a blob, on top of timeout_s
_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id bigserial PRIMARY KEY, client_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(), link text, manifest jsonb NOT NULL,
        data bytea NOT NULL, size bigint NOT NULL, sha256 text NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_client_created ON {TABLE} (client_id, created_at DESC, id DESC)",
)
# Pruning keeps the newest `keep`; (created_at, id) breaks ties between same-instant rows.
_PRUNE = (f"DELETE FROM {TABLE} WHERE client_id = %(c)s AND id NOT IN (SELECT id FROM {TABLE}"
          f" WHERE client_id = %(c)s ORDER BY created_at DESC, id DESC LIMIT %(keep)s)")
# A bigint advisory lock shows in pg_locks as classid = high 32 bits, objid = low, objsubid = 1.
_HOLDER = ("SELECT l.pid, a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l"
           " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
           " AND l.granted AND l.objsubid = 1 AND l.classid::bigint = %s AND l.objid::bigint = %s"
           " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


class RemoteUnavailable(Exception):
    """The backup database could not be reached, or did not answer within the bound."""


class _NoAnswer(RemoteUnavailable):
    """The bound passed while the call was still running; its connection is still in use."""


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for `name`: the first 8 bytes of its sha256.

    Stable across processes, hosts and releases (Python's `hash()` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def mask_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _run_bounded(fn: Callable[[], T], timeout: float, name: str,
                 on_abandon: Callable[[], object] | None = None) -> T:
    """`fn()` in a daemon thread; its result or exception, or `_NoAnswer` after `timeout`.

    On a timeout the thread runs on (no safe way to interrupt libpq) and, when it ends,
    calls `on_abandon` to close what it was using."""
    lock, done, box = threading.Lock(), threading.Event(), {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiting caller, re-raised there
            box["error"] = exc
        with lock:
            box["done"] = True
            abandoned = box.get("abandoned", False)
        done.set()
        if abandoned and on_abandon is not None:
            try:
                on_abandon()
            except psycopg.Error:
                pass  # closing a broken connection: nothing left to do

    threading.Thread(target=run, name=name, daemon=True).start()
    done.wait(timeout)
    with lock:
        if not box.get("done"):
            box["abandoned"] = True
            raise _NoAnswer(f"no answer from the database within {timeout:.1f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class RemoteStore:
    """Backups of one client id in PostgreSQL, and the owner lock of that client id.

    Thread-safe. `owner_status()` never touches the network; everything else is bounded
    (module docstring) and raises `RemoteUnavailable`, except `check_owner()`/`release_owner()`
    which report instead of raising because they run periodically and at shutdown."""

    def __init__(self, url: str, client_id: str, keep: int, timeout_s: float):
        if urlsplit(url).scheme not in ("postgres", "postgresql"):
            raise ValueError("url: expected a postgres:// or postgresql:// URL")
        if not CLIENT_ID_RE.fullmatch(client_id):
            raise ValueError(f"client_id: must match {CLIENT_ID_RE.pattern}")
        if int(keep) < 1 or not timeout_s > 0:
            raise ValueError("keep must be at least 1 and timeout_s greater than 0")
        self._url, self.client_id, self.keep, self.timeout_s = url, client_id, int(keep), float(timeout_s)
        self.safe_url = mask_url(url)
        password = urlsplit(url).password
        self._secrets = [s for s in {password, unquote(password or "")} if s]
        self._owner_key = lock_key("whatsapp-session:" + client_id)
        # A different key: puts take it per transaction, while this process may hold the owner lock.
        self._put_key = lock_key("whatsapp-session-backups:" + client_id)
        self._owner_mutex = threading.Lock()  # one owner operation at a time
        self._owner_conn: psycopg.Connection | None = None
        self._want_owner = False
        self._table_ready = False
        self._state_lock = threading.Lock()  # never held across network calls: status stays fast
        self._state = {"database": "unknown", "owner": False, "ownerPid": None, "holderPid": None,
                       "holderApplication": None, "holderAddress": None, "holderSince": None,
                       "ownerLostAt": None, "lastError": None, "lastErrorAt": None, "lastBackupAt": None}
        log.info("backup database %s for client id %r (keep %d, timeout %g s)",
                 self.safe_url, client_id, self.keep, self.timeout_s)

    def __repr__(self) -> str:
        return f"RemoteStore({self.safe_url!r}, {self.client_id!r})"

    # -- plumbing ---------------------------------------------------------------------------
    def _connect(self, statement_s: float | None = None) -> psycopg.Connection:
        # statement_timeout/lock_timeout are set with a query rather than the `options`
        # startup parameter, which connection poolers (PgBouncer) reject.
        ms = str(math.ceil(1000 * (statement_s or self.timeout_s)))
        idle = max(1, math.ceil(self.timeout_s))
        conn = psycopg.connect(self._url, connect_timeout=idle, application_name=APPLICATION_NAME,
                               autocommit=True, keepalives=1, keepalives_idle=idle,
                               keepalives_interval=idle, keepalives_count=3)
        try:
            conn.execute("SELECT set_config('statement_timeout', %s, false),"
                         " set_config('lock_timeout', %s, false)", (ms, ms))
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_table(self, conn: psycopg.Connection) -> None:
        if self._table_ready:
            return
        with conn.transaction():
            # Two servers starting together would race CREATE ... IF NOT EXISTS into a
            # unique violation on the catalog; serialise them.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("whatsapp-session-schema"),))
            for statement in _SCHEMA:
                conn.execute(statement)
        self._table_ready = True

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _note(self, **fields) -> None:
        with self._state_lock:
            self._state.update(fields)

    def _call(self, what: str, fn: Callable[[], T], timeout: float | None = None,
              on_abandon: Callable[[], object] | None = None) -> T:
        """Run `fn` bounded; record the database as ok/unreachable; map failures to RemoteUnavailable."""
        try:
            value = _run_bounded(fn, timeout or self.timeout_s, f"remote-{what}", on_abandon)
        except _NoAnswer as exc:
            error, kind = f"{what}: {exc}", _NoAnswer
        except psycopg.Error as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            error, kind = f"{what}: {type(exc).__name__}: {self._scrub(first_line)}", RemoteUnavailable
        else:
            self._note(database="ok")
            return value
        self._note(database="unreachable", lastError=error, lastErrorAt=_iso(_now()))
        log.warning("backup database %s: %s", self.safe_url, error)
        raise kind(error)

    def _transfer_s(self, size: int) -> float:
        return self.timeout_s + size / _MIN_TRANSFER_RATE

    # -- backups ----------------------------------------------------------------------------
    def put(self, blob: bytes, manifest: dict, link: str | None = None) -> tuple[int, datetime]:
        """Store one backup and prune this client id to its newest `keep`, in ONE transaction:
        readers see the old set or the new one. Returns (id, created_at)."""
        blob = bytes(blob)
        digest, seconds = hashlib.sha256(blob).hexdigest(), self._transfer_s(len(blob))

        def run():
            with self._connect(seconds) as conn:
                self._ensure_table(conn)
                with conn.transaction():
                    # Serialises puts and delete_all of this client id, so `keep` holds exactly.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._put_key,))
                    row = conn.execute(
                        f"INSERT INTO {TABLE} (client_id, link, manifest, data, size, sha256)"
                        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, created_at",
                        (self.client_id, link, Jsonb(manifest), blob, len(blob), digest)).fetchone()
                    pruned = conn.execute(_PRUNE, {"c": self.client_id, "keep": self.keep}).rowcount
            return row, pruned

        (backup_id, created_at), pruned = self._call("store a backup", run, seconds + self.timeout_s)
        self._note(lastBackupAt=_iso(created_at))
        log.info("backup %d of client id %r stored (%d bytes); %d older removed",
                 backup_id, self.client_id, len(blob), pruned)
        return backup_id, created_at

    def newest_blobs(self) -> Iterator[tuple[int, datetime, dict, bytes]]:
        """(id, created_at, manifest, blob) of this client id, newest first, fetched one at a
        time as the caller iterates. Each blob matches its stored size and sha256; one that
        does not is logged and skipped. The listing runs now (RemoteUnavailable raised here);
        a later fetch can raise RemoteUnavailable from the iteration."""
        def listing():
            with self._connect() as conn:
                self._ensure_table(conn)
                return conn.execute(f"SELECT id, created_at, manifest, size, sha256 FROM {TABLE}"
                                    " WHERE client_id = %s ORDER BY created_at DESC, id DESC",
                                    (self.client_id,)).fetchall()

        rows = self._call("list backups", listing)
        if rows:
            with self._state_lock:
                self._state["lastBackupAt"] = self._state["lastBackupAt"] or _iso(rows[0][1])
        return self._fetch_each(rows)

    def _fetch_each(self, rows) -> Iterator[tuple[int, datetime, dict, bytes]]:
        for backup_id, created_at, manifest, size, sha256 in rows:
            seconds = self._transfer_s(size)

            def fetch(backup_id=backup_id, seconds=seconds):
                with self._connect(seconds) as conn:
                    row = conn.execute(f"SELECT data FROM {TABLE} WHERE client_id = %s AND id = %s",
                                       (self.client_id, backup_id)).fetchone()
                return None if row is None else bytes(row[0])

            blob = self._call(f"fetch backup {backup_id}", fetch, seconds + self.timeout_s)
            if blob is None:
                continue  # pruned since the listing
            if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha256:
                log.warning("backup %d of client id %r skipped: its data does not match the stored "
                            "size/sha256 (damaged in the database)", backup_id, self.client_id)
                continue
            yield backup_id, created_at, manifest, blob

    def delete_all(self) -> int:
        """Delete every backup of this client id (never another's); returns how many."""
        def run():
            with self._connect() as conn:
                self._ensure_table(conn)
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._put_key,))
                    return conn.execute(f"DELETE FROM {TABLE} WHERE client_id = %s",
                                        (self.client_id,)).rowcount

        count = self._call("delete backups", run)
        self._note(lastBackupAt=None)
        log.info("deleted %d backup(s) of client id %r from the database", count, self.client_id)
        return count

    # -- ownership --------------------------------------------------------------------------
    def acquire_owner(self) -> bool:
        """Try, without waiting, to become the one server driving this client id.

        True: owned (held until release_owner() or the connection dies). False: another
        session holds it (`owner_status()` says who); later check_owner() calls keep trying.
        Raises RemoteUnavailable when the database cannot answer."""
        with self._owner_mutex:
            self._want_owner = True
            return self._acquire_locked()

    def _acquire_locked(self) -> bool:
        if self._owner_conn is not None:
            return True
        opened: list[psycopg.Connection] = []
        unsigned = self._owner_key & 0xFFFFFFFFFFFFFFFF

        def attempt():
            conn = self._connect()
            opened.append(conn)
            try:
                if conn.execute("SELECT pg_try_advisory_lock(%s)", (self._owner_key,)).fetchone()[0]:
                    return True, conn.info.backend_pid
                holder = conn.execute(_HOLDER, (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
            except BaseException:
                conn.close()
                raise
            conn.close()
            return False, holder

        # An abandoned attempt may have taken the lock: closing its connection gives it back.
        got, detail = self._call("take the owner lock", attempt,
                                 on_abandon=lambda: [c.close() for c in opened])
        if got:
            self._owner_conn = opened[0]
            self._note(owner=True, ownerPid=detail, holderPid=None, holderApplication=None,
                       holderAddress=None, holderSince=None)
            log.info("this server now owns client id %r (database backend pid %s)", self.client_id, detail)
            return True
        pid, application, address, since = detail or (None, None, None, None)
        with self._state_lock:
            news = self._state["holderPid"] != pid
            self._state.update(owner=False, ownerPid=None, holderPid=pid, holderApplication=application,
                               holderAddress=address, holderSince=_iso(since))
        if news:
            log.warning("client id %r is owned by another server (backend pid %s, %s from %s); "
                        "not driving the account until it lets go", self.client_id, pid, application, address)
        return False

    def check_owner(self) -> bool:
        """Bounded liveness check, for a periodic caller; returns whether this server owns.

        Owner: a `SELECT 1` on the owner connection; if it fails the session, and the lock
        with it, is gone: logged, `ownerLostAt` recorded, False. Not owner (after
        acquire_owner()): one more try to acquire. Never raises RemoteUnavailable."""
        with self._owner_mutex:
            if not self._want_owner:
                return False
            conn = self._owner_conn
            if conn is None:
                try:
                    return self._acquire_locked()
                except RemoteUnavailable:
                    return False
            try:
                self._call("check the owner connection", lambda: conn.execute("SELECT 1").fetchone(),
                           on_abandon=conn.close)
                return True
            except _NoAnswer:
                pass  # the connection is busy in the abandoned thread, which closes it
            except RemoteUnavailable:
                conn.close()
            self._owner_conn = None
            self._note(owner=False, ownerPid=None, ownerLostAt=_iso(_now()))
            log.error("lost ownership of client id %r: the owner connection to the backup database "
                      "failed; another server may take over. Will try to own it again.", self.client_id)
            return False

    def release_owner(self) -> None:
        """Give ownership up (idempotent, bounded, never raises): unlock, then close."""
        with self._owner_mutex:
            self._want_owner = False
            conn, self._owner_conn = self._owner_conn, None
            if conn is None:
                return
            try:
                self._call("release the owner lock", lambda: conn.execute(
                    "SELECT pg_advisory_unlock(%s)", (self._owner_key,)), on_abandon=conn.close)
            except _NoAnswer:
                pass  # closed when the abandoned thread ends; the lock goes with the connection
            except RemoteUnavailable:
                conn.close()
            else:
                conn.close()
            self._note(owner=False, ownerPid=None)
            log.info("released ownership of client id %r", self.client_id)

    close = release_owner

    def owner_status(self) -> dict:
        """A snapshot for /status; no network call. Times are ISO 8601 UTC or None."""
        with self._state_lock:
            return dict(self._state)


@dataclasses.dataclass(frozen=True)
class _Pending:
    blob: bytes
    manifest: dict
    link: str | None
    generation: int  # delete_all() bumps it: a backup taken before must not come back


class RemoteBackups:
    """Stores backups from a background worker so that the database never blocks the caller.

    `submit_backup()` returns at once. One daemon thread stores the newest pending backup (a
    newer submit supersedes an older pending one); a failed put is retried after
    `retry_first_s`, doubling up to `retry_max_s`; `stop()` wakes that wait at once and
    returns within its timeout even while a put is stuck in the network."""

    def __init__(self, store: RemoteStore, *, retry_first_s: float = 2.0, retry_max_s: float = 60.0):
        self.store = store
        self.retry_first_s, self.retry_max_s = retry_first_s, retry_max_s
        self._cond = threading.Condition()
        self._pending: _Pending | None = None
        self._busy = self._stopping = False
        self._generation = self._failures = 0
        self._next_retry_at: datetime | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker (idempotent; submit_backup() also starts it)."""
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="whatsapp-remote-backup", daemon=True)
                self._thread.start()

    def submit_backup(self, blob: bytes, manifest: dict, link: str | None = None) -> None:
        """Queue a backup for storing and return at once. Raises TypeError if `manifest` is not JSON."""
        # A copy (the caller may change its dict); a non-JSON manifest, a bug, fails here.
        manifest = json.loads(json.dumps(manifest))
        with self._cond:
            if self._stopping:
                log.warning("backup not queued: the backup worker is stopping")
                return
            if self._pending is not None:
                log.info("a newer backup supersedes the one still waiting to be stored")
            self._pending = _Pending(bytes(blob), manifest, link, self._generation)
            self._cond.notify_all()
        self.start()

    def delete_all(self) -> int:
        """Drop any pending backup, then delete this client id's backups (bounded; may raise
        RemoteUnavailable). A put already in flight is deleted again when it lands."""
        with self._cond:
            self._pending = None
            self._generation += 1
            self._cond.notify_all()
        return self.store.delete_all()

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending or being stored; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def status(self) -> dict:
        """The store's snapshot plus the worker's; never touches the network."""
        with self._cond:
            mine = {"backupPending": self._pending is not None, "backupInFlight": self._busy,
                    "backupFailures": self._failures, "nextBackupRetryAt": _iso(self._next_retry_at)}
        return {**self.store.owner_status(), **mine}

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the worker; True if it ended within `timeout` (a stuck one is left, daemon)."""
        with self._cond:
            self._stopping = True
            thread, dropped = self._thread, self._pending is not None
            self._cond.notify_all()
        if dropped:
            log.warning("stopping with a backup not yet stored in the database")
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("backup worker still busy with the database after %.1f s; not waiting longer", timeout)
            return False
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._pending is not None)
                if self._stopping:
                    return
                item, self._pending, self._busy = self._pending, None, True
            delay = self._store(item)
            with self._cond:
                self._busy = False
                if delay is not None and self._pending is None and item.generation == self._generation:
                    self._pending = item  # retry it, unless superseded or deleted meanwhile
                self._cond.notify_all()
                if delay is not None:
                    self._next_retry_at = datetime.fromtimestamp(time.time() + delay, timezone.utc)
                    self._cond.wait_for(lambda: self._stopping, delay)  # wakes at once on stop()
                    self._next_retry_at = None

    def _store(self, item: _Pending) -> float | None:
        """Put one backup; the delay before a retry, or None when done with it."""
        try:
            self.store.put(item.blob, item.manifest, item.link)
        except RemoteUnavailable:
            self._failures += 1
            delay = min(self.retry_first_s * 2 ** min(self._failures - 1, 16), self.retry_max_s)
            # The error itself was just logged by the store.
            log.warning("backup not stored (attempt %d); next try in %.1f s", self._failures, delay)
            return delay
        except Exception as exc:  # a bug, not the database: retrying cannot help
            log.exception("backup dropped: storing it failed unexpectedly")
            self.store._note(lastError=f"store a backup: {type(exc).__name__}: {exc}", lastErrorAt=_iso(_now()))
            return None
        if self._failures:
            log.info("backup stored after %d failed attempt(s)", self._failures)
        self._failures = 0
        with self._cond:
            deleted_meanwhile = item.generation != self._generation
        if deleted_meanwhile:
            try:
                self.store.delete_all()
            except RemoteUnavailable:
                log.error("a backup landed after its login was deleted and could not be removed")
        return None
