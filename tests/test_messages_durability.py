"""An accepted message survives the process being killed at any moment.

A real subprocess (this file run as a script) opens the store and accepts messages in a
loop, printing each id right after `accept` returns; the test SIGKILLs it at random points,
several rounds on the same database, and checks that every printed id is there, that the
database opens cleanly, and that no row is half-written (each text carries its own length
and checksum, and each row its idempotency record). SQLite, then PostgreSQL (the client
killed, the server running).
"""
from __future__ import annotations

import hashlib
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TO = "15550001111"
ROUNDS = 5
READY_TIMEOUT_S = 30.0
LINE_TIMEOUT_S = 20.0


def make_text(n: int, rng: random.Random) -> str:
    """A text that proves itself whole: `<n>:<length of body>:<sha256 of body>:<body>`."""
    body = "".join(rng.choice("abcdefghij ✓é\n") for _ in range(rng.randrange(1, 3000)))
    return f"{n}:{len(body)}:{hashlib.sha256(body.encode()).hexdigest()}:{body}"


def check_text(text: str) -> int:
    n, length, digest, body = text.split(":", 3)
    assert len(body) == int(length) and hashlib.sha256(body.encode()).hexdigest() == digest, text[:80]
    return int(n)


def _child(kind: str, target: str, client_id: str, start: int) -> None:
    """Accept forever; one line `<id> <n>` per accepted message, flushed after accept returns."""
    if kind == "sqlite":
        from whatsapp.messages.sqlite import SqliteMessageStore

        store = SqliteMessageStore(target, client_id)
    else:
        from whatsapp.messages.postgres import PostgresMessageStore

        store = PostgresMessageStore(os.environ["DURABILITY_DATABASE_URL"], client_id, timeout_s=10)
        store.check()
    rng = random.Random(start)
    print("ready", flush=True)
    n = start
    while True:
        message, _ = store.accept(TO, make_text(n, rng), f"dur-{n}", None, datetime.now(UTC), 10**9)
        sys.stdout.write(f"{message.id} {n}\n")
        sys.stdout.flush()
        n += 1


class Child:
    """The accepting subprocess, its stdout read by a thread into a queue."""

    def __init__(self, kind: str, target: str, client_id: str, start: int, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, kind, target, client_id, str(start)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from the accepting process within {timeout} s") from None
        if line is None:
            raise AssertionError(f"the accepting process ended: {self.proc.stderr.read()[-2000:]}")
        return line

    def kill_and_collect(self) -> list[str]:
        """SIGKILL, then every line it printed before dying (the pipe keeps them)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        rest = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rest


def run_rounds(kind: str, target: str, client_id: str, env: dict[str, str], check_round) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    printed: dict[str, int] = {}
    for round_no in range(ROUNDS):
        child = Child(kind, target, client_id, start=round_no * 1_000_000, env=env)
        try:
            assert child.next_line(READY_TIMEOUT_S) == "ready"
            for _ in range(rng.randrange(0, 80)):
                message_id, n = child.next_line(LINE_TIMEOUT_S).split()
                printed[message_id] = int(n)
            # A random moment inside the next accepts, not a synchronisation point.
            threading.Event().wait(rng.uniform(0, 0.02))
        finally:
            lines = child.kill_and_collect()
        printed.update((i, int(n)) for i, n in (line.split() for line in lines))
        check_round(printed)


def check_rows(rows: list[tuple], idempotency: dict[str, str], printed: dict[str, int]) -> None:
    """rows: (id, status, to_number, text, attempts, created_ms, idempotency_key)."""
    by_id = {row[0]: row for row in rows}
    missing = set(printed) - set(by_id)
    assert not missing, f"{len(missing)} accepted message(s) lost, e.g. {sorted(missing)[:3]}"
    numbers = []
    for message_id, status, to_number, text, attempts, created_ms, key in rows:
        n = check_text(text)
        assert (status, to_number, attempts, key) == ("queued", TO, 0, f"dur-{n}"), message_id
        assert created_ms > 0 and idempotency.get(key) == message_id, message_id
        numbers.append(n)
    assert len(numbers) == len(set(numbers)), "a message stored twice"
    for message_id, n in printed.items():
        assert check_text(by_id[message_id][3]) == n, message_id


@pytest.mark.e2e
def test_sqlite_keeps_every_accepted_message_through_kill_9(tmp_path):
    from whatsapp.messages import schema
    from whatsapp.messages.sqlite import SqliteMessageStore

    path = tmp_path / "data" / "messages-durable.sqlite3"

    def check_round(printed):
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            rows = conn.execute("SELECT id, status, to_number, text, attempts, created_ms, idempotency_key"
                                f" FROM {schema.MESSAGES} WHERE client_id = 'durable'").fetchall()
            idempotency = dict(conn.execute(f"SELECT key, message_id FROM {schema.IDEMPOTENCY}").fetchall())
        finally:
            conn.close()
        check_rows(rows, idempotency, printed)
        store = SqliteMessageStore(path, "durable")  # opens cleanly, counter right
        try:
            assert store.counts(datetime.now(UTC))["queued"] == len(rows)
        finally:
            store.close()

    run_rounds("sqlite", str(path), "durable", {}, check_round)


@pytest.mark.e2e
def test_postgres_keeps_every_accepted_message_through_kill_9(postgres):
    from whatsapp.messages import schema
    from whatsapp.messages.postgres import PostgresMessageStore

    postgres.start_server()  # another test may have left it stopped
    client_id = f"durable-{uuid.uuid4().hex[:8]}"

    def check_round(printed):
        with postgres.connect() as conn:
            rows = conn.execute("SELECT id, status, to_number, text, attempts, created_ms, idempotency_key"
                                f" FROM {schema.MESSAGES} WHERE client_id = %s", (client_id,)).fetchall()
            idempotency = dict(conn.execute(f"SELECT key, message_id FROM {schema.IDEMPOTENCY}"
                                            " WHERE client_id = %s", (client_id,)).fetchall())
        check_rows(rows, idempotency, printed)
        store = PostgresMessageStore(postgres.url, client_id, timeout_s=10)
        try:
            store.check()  # takes the writers' lock: the killed client's transaction released it
            assert store.counts(datetime.now(UTC))["queued"] == len(rows)
        finally:
            store.close()

    try:
        run_rounds("postgres", "-", client_id, {"DURABILITY_DATABASE_URL": postgres.url}, check_round)
    finally:
        with postgres.connect() as conn:
            for table in (schema.MESSAGES, schema.IDEMPOTENCY, schema.COUNTS):
                conn.execute(f"DELETE FROM {table} WHERE client_id = %s", (client_id,))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
