"""The store: backups of the login as rows in PostgreSQL, and the clearings that end them.

Tables, created if missing (several products or client ids may share a database, so every
statement filters by `client_id`):

    whatsapp_session_backups(id bigserial primary key, client_id text not null,
        created_at timestamptz not null default now(), link text, manifest jsonb not null,
        data bytea not null, size bigint not null, sha256 text not null,
        taken_at timestamptz,             -- when the backup was taken (null: created_at)
        login_since timestamptz)          -- when its login was linked (null: not known)
    whatsapp_session_clearings(client_id text, id text, cleared_at timestamptz not null,
        link text, reason text not null, recorded_at timestamptz not null default now(),
        primary key (client_id, id))

A clearing (clearings.py) ends every row whose login was linked at or before its time (and,
for rows that do not know that time, every row of its link or taken before it). Rows it ends
are never listed, a backup it ends is refused when put, and landing it deletes them. Puts,
clearings and pruning of one client id are serialised by a transaction-level advisory lock,
so readers see the old set or the new one.

Blobs are opaque here (archive.py makes and checks them); this module checks only the stored
size and sha256. Every call is bounded (connection.py) and raises `DatabaseUnavailable`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ...config import CLIENT_ID_RE
from ..clearings import Clearing
from .connection import Database, lock_key

log = logging.getLogger(__name__)

TABLE = "whatsapp_session_backups"
CLEARINGS = "whatsapp_session_clearings"
_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id bigserial PRIMARY KEY, client_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(), link text, manifest jsonb NOT NULL,
        data bytea NOT NULL, size bigint NOT NULL, sha256 text NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_client_created ON {TABLE} (client_id, created_at DESC, id DESC)",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS taken_at timestamptz",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS login_since timestamptz",
    f"""CREATE TABLE IF NOT EXISTS {CLEARINGS} (
        client_id text NOT NULL, id text NOT NULL, cleared_at timestamptz NOT NULL, link text,
        reason text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (client_id, id))""",
)
# clearings.Clearing.ends, for the rows `b` of the backups table.
_ENDS = ("(CASE WHEN {since} IS NOT NULL THEN {since} <= c.cleared_at"
         " ELSE c.link = {link} OR {taken} <= c.cleared_at END)")
_ENDED = (f"EXISTS (SELECT 1 FROM {CLEARINGS} c WHERE c.client_id = b.client_id AND "
          + _ENDS.format(since="b.login_since", link="b.link", taken="coalesce(b.taken_at, b.created_at)") + ")")
_ENDED_NEW = (f"SELECT 1 FROM {CLEARINGS} c WHERE c.client_id = %(c)s AND "
              + _ENDS.format(since="%(since)s::timestamptz", link="%(link)s",
                             taken="coalesce(%(taken)s::timestamptz, now())") + " LIMIT 1")
# Pruning keeps the newest `keep`; (created_at, id) breaks ties between same-instant rows.
_PRUNE = (f"DELETE FROM {TABLE} WHERE client_id = %(c)s AND id NOT IN (SELECT id FROM {TABLE}"
          f" WHERE client_id = %(c)s ORDER BY created_at DESC, id DESC LIMIT %(keep)s)")
_CLEARINGS_KEPT = 100


@dataclasses.dataclass(frozen=True)
class Row:
    """A stored backup, as listed (no data)."""
    id: int
    created_at: datetime     # when it was stored
    taken_at: datetime       # when it was taken
    link: str | None
    manifest: dict[str, Any]
    size: int
    sha256: str
    login_since: datetime | None


class DatabaseStore:
    """The backup rows and clearings of one client id. Thread-safe."""

    def __init__(self, db: Database, client_id: str, keep: int):
        if not CLIENT_ID_RE.fullmatch(client_id):
            raise ValueError(f"client_id: must match {CLIENT_ID_RE.pattern}")
        if int(keep) < 1:
            raise ValueError("keep must be at least 1")
        self.db, self.client_id, self.keep = db, client_id, int(keep)
        self._put_key = lock_key("whatsapp-session-backups:" + client_id)
        self._schema_ready = False
        self.last_backup_at: datetime | None = None

    def ensure_schema(self, conn: psycopg.Connection) -> None:
        if self._schema_ready:
            return
        with conn.transaction():
            # Two servers starting together would race CREATE ... IF NOT EXISTS into a
            # unique violation on the catalog; serialise them.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("whatsapp-session-schema"),))
            for statement in _SCHEMA:
                conn.execute(statement)
        self._schema_ready = True

    # -- backups ----------------------------------------------------------------------------
    def put(self, blob: bytes, manifest: dict[str, Any], link: str | None,
            taken_at: datetime | None = None, login_since: datetime | None = None) -> int | None:
        """Store one backup and prune to the newest `keep`, in one transaction; its id, or
        None when a clearing ends it (it is then not stored)."""
        blob = bytes(blob)
        digest, seconds = hashlib.sha256(blob).hexdigest(), self.db.transfer_s(len(blob))

        def run() -> tuple[int | None, int]:
            with self.db.connect(seconds) as conn:
                self.ensure_schema(conn)
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._put_key,))
                    ended = conn.execute(_ENDED_NEW, {"c": self.client_id, "since": login_since, "link": link,
                                                      "taken": taken_at}).fetchone()
                    if ended:
                        return None, 0
                    row = conn.execute(
                        f"INSERT INTO {TABLE} (client_id, link, manifest, data, size, sha256, taken_at, login_since)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                        (self.client_id, link, Jsonb(manifest), blob, len(blob), digest, taken_at,
                         login_since)).fetchone()
                    pruned = conn.execute(_PRUNE, {"c": self.client_id, "keep": self.keep}).rowcount
            return (row[0] if row else None), pruned

        backup_id, pruned = self.db.call("store a backup", run, seconds + self.db.timeout_s)
        if backup_id is None:
            log.warning("backup of client id %r not stored: its login was cleared", self.client_id)
            return None
        self.last_backup_at = taken_at
        log.info("backup %d of client id %r stored (%d bytes); %d older removed",
                 backup_id, self.client_id, len(blob), pruned)
        return backup_id

    def rows(self) -> list[Row]:
        """This client id's backups that no clearing ended, newest first (no data)."""
        def listing() -> list[Any]:
            with self.db.connect() as conn:
                self.ensure_schema(conn)
                return conn.execute(
                    f"SELECT id, created_at, coalesce(taken_at, created_at), link, manifest, size, sha256, login_since"
                    f" FROM {TABLE} b WHERE client_id = %s AND NOT {_ENDED}"
                    " ORDER BY created_at DESC, id DESC", (self.client_id,)).fetchall()

        found = [Row(*row) for row in self.db.call("list backups", listing)]
        if found and self.last_backup_at is None:
            self.last_backup_at = found[0].taken_at
        return found

    def fetch(self, row: Row) -> bytes | None:
        """The blob of `row`, checked against its stored size and sha256; None when it is
        gone (pruned or cleared since the listing) or damaged (logged)."""
        seconds = self.db.transfer_s(row.size)

        def run() -> bytes | None:
            with self.db.connect(seconds) as conn:
                found = conn.execute(f"SELECT data FROM {TABLE} b WHERE client_id = %s AND id = %s"
                                     f" AND NOT {_ENDED}", (self.client_id, row.id)).fetchone()
            return None if found is None else bytes(found[0])

        blob = self.db.call(f"fetch backup {row.id}", run, seconds + self.db.timeout_s)
        if blob is not None and (len(blob) != row.size or hashlib.sha256(blob).hexdigest() != row.sha256):
            log.warning("backup %d of client id %r skipped: its data does not match the stored "
                        "size/sha256 (damaged in the database)", row.id, self.client_id)
            return None
        return blob

    def newest_blobs(self) -> Iterator[tuple[Row, bytes]]:
        """(row, blob) newest first, each fetched as the caller iterates; the listing runs now."""
        rows = self.rows()

        def each() -> Iterator[tuple[Row, bytes]]:
            for row in rows:
                blob = self.fetch(row)
                if blob is not None:
                    yield row, blob
        return each()

    # -- clearings --------------------------------------------------------------------------
    def land(self, clearing: Clearing) -> int:
        """Store a clearing (idempotent: a retry stores nothing new) and delete the rows it
        ends; returns how many rows went."""
        def run() -> int:
            with self.db.connect() as conn:
                self.ensure_schema(conn)
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._put_key,))
                    conn.execute(f"INSERT INTO {CLEARINGS} (client_id, id, cleared_at, link, reason)"
                                 " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                 (self.client_id, clearing.id, clearing.at, clearing.link, clearing.reason))
                    deleted = conn.execute(f"DELETE FROM {TABLE} b WHERE client_id = %s AND {_ENDED}",
                                           (self.client_id,)).rowcount
                    conn.execute(f"DELETE FROM {CLEARINGS} WHERE client_id = %(c)s AND id NOT IN (SELECT id"
                                 f" FROM {CLEARINGS} WHERE client_id = %(c)s ORDER BY cleared_at DESC"
                                 " LIMIT %(keep)s)", {"c": self.client_id, "keep": _CLEARINGS_KEPT})
            return deleted

        deleted = self.db.call("record a clearing", run)
        log.info("clearing %s of client id %r stored in the database; %d backup(s) deleted",
                 clearing.id, self.client_id, deleted)
        return deleted

    def read_clearings(self, conn: psycopg.Connection) -> list[Clearing]:
        """This client id's clearings, newest first, on `conn` (the caller bounds the call)."""
        self.ensure_schema(conn)
        rows = conn.execute(f"SELECT id, cleared_at, link, reason FROM {CLEARINGS} WHERE client_id = %s"
                            " ORDER BY cleared_at DESC LIMIT %s", (self.client_id, _CLEARINGS_KEPT)).fetchall()
        return [Clearing(i, at, link, reason, synced=True) for i, at, link, reason in rows]

    def clearings(self) -> list[Clearing]:
        """`read_clearings` on a connection of its own, bounded."""
        def run() -> list[Clearing]:
            with self.db.connect() as conn:
                return self.read_clearings(conn)
        return self.db.call("read clearings", run)
