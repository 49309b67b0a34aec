"""The tables both backends share, and the SQL text the shared store runs.

SQL is written once with `?` placeholders (SQLite's); the PostgreSQL backend turns them
into `%s`. The DDL differs in the sequence column, the integer width and the triggers.

    whatsapp_messages       one row per message, either direction
      seq            monotonically increasing: the order of acceptance (or arrival)
      client_id      several client ids may share one PostgreSQL database
      id             opaque unique id (uuid4 hex), unique per client id
      direction      'out' | 'in'
      status         outgoing: queued|sending|sent|delivered|read|failed; incoming: NULL
      to_number      outgoing: digits
      from_number, chat, kind, wa_timestamp   incoming: the contract's from, chat, kind, timestamp
      text           NULL only for an unsupported incoming message
      error_code, error_message, wa_id, attempts
      created_ms     accepted (out) or received (in), milliseconds since the epoch, UTC
      sent_ms, delivered_ms, read_ms, failed_ms
      idempotency_key
    whatsapp_idempotency    (client_id, key) -> body_hash, message_id, created_ms; pruned after 24 h
    whatsapp_seen           (client_id, chat, key) -> message_id, created_ms: incoming dedupe keys
    whatsapp_message_counts (client_id, status) -> n, for queued and sending only, kept
                            by triggers on whatsapp_messages

Indexes: (client_id, status, seq) serves the sender's queries and status-filtered pages;
(client_id, direction, seq) serves pages. The outbox size is read from whatsapp_message_counts, not
counted, because every accept needs it: in PostgreSQL a count walks every index entry of
the waiting messages, dead ones included until a vacuum, which at 10,000 waiting cost
several milliseconds per accept; the counter costs one primary-key lookup. Triggers rather
than code keep it, so that it cannot drift, even with rows changed by hand (`recount`
repairs it after a TRUNCATE). Writers serialise per client id, so the counter rows never
deadlock.
"""
from __future__ import annotations

MESSAGES, IDEMPOTENCY, SEEN = "whatsapp_messages", "whatsapp_idempotency", "whatsapp_seen"
COUNTS = "whatsapp_message_counts"

_STATUSES = "'queued', 'sending', 'sent', 'delivered', 'read', 'failed'"


def ddl(seq: str, bigint: str) -> list[str]:
    """CREATE statements (idempotent) with the backend's `seq` column definition and 64-bit
    integer type."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {MESSAGES} (
            seq {seq},
            client_id TEXT NOT NULL,
            id TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('out', 'in')),
            status TEXT CHECK (status IN ({_STATUSES})),
            to_number TEXT, from_number TEXT, chat TEXT, text TEXT, kind TEXT,
            error_code TEXT, error_message TEXT, wa_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_ms {bigint} NOT NULL, sent_ms {bigint}, delivered_ms {bigint},
            read_ms {bigint}, failed_ms {bigint},
            idempotency_key TEXT, wa_timestamp TEXT,
            CHECK ((direction = 'out') = (status IS NOT NULL AND to_number IS NOT NULL
                                          AND text IS NOT NULL)),
            CHECK ((direction = 'in') = (chat IS NOT NULL AND kind IS NOT NULL)),
            UNIQUE (client_id, id))""",
        f"CREATE INDEX IF NOT EXISTS {MESSAGES}_status ON {MESSAGES} (client_id, status, seq)",
        f"CREATE INDEX IF NOT EXISTS {MESSAGES}_direction ON {MESSAGES} (client_id, direction, seq)",
        # The sender's look into a chat after a crash: the waIds already given to messages.
        f"CREATE INDEX IF NOT EXISTS {MESSAGES}_to ON {MESSAGES} (client_id, to_number, created_ms)",
        f"""CREATE TABLE IF NOT EXISTS {IDEMPOTENCY} (
            client_id TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL,
            message_id TEXT NOT NULL, created_ms {bigint} NOT NULL,
            PRIMARY KEY (client_id, key))""",
        f"CREATE INDEX IF NOT EXISTS {IDEMPOTENCY}_created ON {IDEMPOTENCY} (client_id, created_ms)",
        f"""CREATE TABLE IF NOT EXISTS {SEEN} (
            client_id TEXT NOT NULL, chat TEXT NOT NULL, key TEXT NOT NULL,
            message_id TEXT NOT NULL, created_ms {bigint} NOT NULL,
            PRIMARY KEY (client_id, chat, key))""",
        f"""CREATE TABLE IF NOT EXISTS {COUNTS} (
            client_id TEXT NOT NULL, status TEXT NOT NULL, n {bigint} NOT NULL,
            PRIMARY KEY (client_id, status))""",
    ]


_WAITING = "('queued', 'sending')"
_ENTER = (f"INSERT INTO {COUNTS} (client_id, status, n) VALUES (NEW.client_id, NEW.status, 1)"
          f" ON CONFLICT (client_id, status) DO UPDATE SET n = {COUNTS}.n + 1;")
_LEAVE = f"UPDATE {COUNTS} SET n = n - 1 WHERE client_id = OLD.client_id AND status = OLD.status;"

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {MESSAGES}_count_insert AFTER INSERT ON {MESSAGES}
        WHEN NEW.status IN {_WAITING} BEGIN {_ENTER} END""",
    f"""CREATE TRIGGER IF NOT EXISTS {MESSAGES}_count_leave AFTER UPDATE OF status ON {MESSAGES}
        WHEN OLD.status IN {_WAITING} AND NEW.status IS NOT OLD.status BEGIN {_LEAVE} END""",
    f"""CREATE TRIGGER IF NOT EXISTS {MESSAGES}_count_enter AFTER UPDATE OF status ON {MESSAGES}
        WHEN NEW.status IN {_WAITING} AND NEW.status IS NOT OLD.status BEGIN {_ENTER} END""",
    f"""CREATE TRIGGER IF NOT EXISTS {MESSAGES}_count_delete AFTER DELETE ON {MESSAGES}
        WHEN OLD.status IN {_WAITING} BEGIN {_LEAVE} END""",
]

POSTGRES_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION {MESSAGES}_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            IF OLD.status IN {_WAITING} AND (TG_OP = 'DELETE' OR NEW.status IS DISTINCT FROM OLD.status) THEN
                {_LEAVE}
            END IF;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            IF NEW.status IN {_WAITING} AND (TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status) THEN
                {_ENTER}
            END IF;
        END IF;
        RETURN NULL;
    END $$""",
    f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{MESSAGES}_count'
                       AND tgrelid = '{MESSAGES}'::regclass) THEN
            CREATE TRIGGER {MESSAGES}_count AFTER INSERT OR DELETE OR UPDATE OF status
                ON {MESSAGES} FOR EACH ROW EXECUTE FUNCTION {MESSAGES}_count();
        END IF;
    END $$""",
]

# Rebuild one client id's counters from the rows (under the writers' lock).
RECOUNT = [f"DELETE FROM {COUNTS} WHERE client_id = ?",
           f"INSERT INTO {COUNTS} (client_id, status, n) SELECT client_id, status, count(*)"
           f" FROM {MESSAGES} WHERE client_id = ? AND status IN {_WAITING} GROUP BY client_id, status"]


COLUMNS = ("seq, id, direction, status, to_number, from_number, chat, text, kind, error_code,"
           " error_message, wa_id, attempts, created_ms, sent_ms, delivered_ms, read_ms,"
           " failed_ms, idempotency_key, wa_timestamp")

# The outbox size and the idempotency record of a key used less than 24 h ago, in one
# round trip: every accept runs it.
COUNT_WAITING = (f"SELECT CAST(coalesce(sum(n), 0) AS BIGINT) AS n FROM {COUNTS}"
                 f" WHERE client_id = ? AND status IN {_WAITING}")
ACCEPT_CHECK = (f"SELECT w.n, i.body_hash, i.message_id FROM ({COUNT_WAITING}) AS w"
                f" LEFT JOIN {IDEMPOTENCY} AS i ON i.client_id = ? AND i.key = ? AND i.created_ms >= ?")
COUNTS_OF = f"SELECT status, n FROM {COUNTS} WHERE client_id = ?"
OLDEST_OF_STATUS = (f"SELECT created_ms FROM {MESSAGES} WHERE client_id = ? AND status = ?"
                    " ORDER BY seq LIMIT 1")
INSERT_OUT = (f"INSERT INTO {MESSAGES} (client_id, id, direction, status, to_number, text,"
              " attempts, created_ms, idempotency_key) VALUES (?, ?, 'out', 'queued', ?, ?, 0, ?, ?)"
              " RETURNING seq")
INSERT_IN = (f"INSERT INTO {MESSAGES} (client_id, id, direction, from_number, chat, text, kind,"
             " wa_id, wa_timestamp, created_ms) VALUES (?, ?, 'in', ?, ?, ?, ?, ?, ?, ?) RETURNING seq")
BY_ID = f"SELECT {COLUMNS} FROM {MESSAGES} WHERE client_id = ? AND id = ?"
# Updates of one message find it by its unique (client_id, id) first, then by `seq`: a
# condition such as `status = ?` beside `client_id = ?` would tie with the status index
# in PostgreSQL's estimates while a table is young (no statistics yet), and a planner
# picking that index scans every message ever in that status.
WHERE_ONE = f"seq = (SELECT seq FROM {MESSAGES} WHERE client_id = ? AND id = ?)"
FIRST_OF_STATUS = (f"SELECT {COLUMNS} FROM {MESSAGES} WHERE client_id = ? AND status = ?"
                   " ORDER BY seq LIMIT ?")
NEWEST_OF_STATUS_WITH_WA_ID = (f"SELECT {COLUMNS} FROM {MESSAGES} WHERE client_id = ?"
                               " AND status = ? AND wa_id IS NOT NULL ORDER BY seq DESC LIMIT ?")
# Failing keeps the first error: a message fails once.
FAIL_WHERE = (f"UPDATE {MESSAGES} SET status = 'failed', error_code = ?, error_message = ?,"
              " failed_ms = ? WHERE client_id = ? AND {where} RETURNING " + COLUMNS)
# A key older than 24 h may still be there (prune() not run yet): it is overwritten.
IDEMPOTENCY_PUT = (f"INSERT INTO {IDEMPOTENCY} (client_id, key, body_hash, message_id, created_ms)"
                   " VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id, key) DO UPDATE SET"
                   " body_hash = excluded.body_hash, message_id = excluded.message_id,"
                   " created_ms = excluded.created_ms")
IDEMPOTENCY_PRUNE = f"DELETE FROM {IDEMPOTENCY} WHERE client_id = ? AND created_ms < ?"
WA_IDS_TO = (f"SELECT wa_id FROM {MESSAGES} WHERE client_id = ? AND to_number = ? AND direction = 'out'"
             " AND created_ms >= ? AND wa_id IS NOT NULL")
SEEN_PUT = f"INSERT INTO {SEEN} (client_id, chat, key, message_id, created_ms) VALUES (?, ?, ?, ?, ?)"


def seen_query(n: int) -> str:
    return (f"SELECT key FROM {SEEN} WHERE client_id = ? AND chat = ?"
            f" AND key IN ({', '.join('?' * n)})")


def page_query(with_status: bool) -> str:
    column = "status" if with_status else "direction"
    return (f"SELECT {COLUMNS} FROM {MESSAGES} WHERE client_id = ? AND {column} = ?"
            " AND seq > ? ORDER BY seq LIMIT ?")
