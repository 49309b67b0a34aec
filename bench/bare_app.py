"""The floors for HTTP figures: bare Flask routes, served by the same gunicorn settings.

    gunicorn -k gthread --workers 1 --threads 8 ... bench.bare_app:app

- `GET /bare`: about the size of `/status`'s answer head (the floor of `/status`);
- `POST /bare`: parses a JSON body and answers 202 with a small JSON (the floor of
  `POST /messages`);
- `POST /bare-durable`: the same, after inserting the body into SQLite (WAL,
  `synchronous=FULL`, one connection under a lock, as the product's store): the cost of
  the promise "on disk before the answer leaves" without the rest of the product. Its file
  is `$BENCH_BARE_DB` (a temporary file by default).
"""
import os
import sqlite3
import tempfile
import threading
import uuid
from datetime import UTC, datetime

from flask import Flask, jsonify, request

app = Flask(__name__)
_db_lock = threading.Lock()
_db: sqlite3.Connection | None = None


@app.get("/bare")
def bare():
    return jsonify(status="ready", ok=True, timestamp=datetime.now(UTC).isoformat())


@app.post("/bare")
def bare_post():
    body = request.get_json()
    return jsonify(id=uuid.uuid4().hex, status="queued", to=body.get("to")), 202


@app.post("/bare-durable")
def bare_durable():
    body = request.get_json()
    message_id = uuid.uuid4().hex
    with _db_lock:
        db = _connection()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO messages VALUES (?, ?, ?, ?)",
                   (message_id, body.get("to"), body.get("text"), datetime.now(UTC).isoformat()))
        db.execute("COMMIT")  # fsynced: synchronous=FULL
    return jsonify(id=message_id, status="queued", to=body.get("to")), 202


def _connection() -> sqlite3.Connection:
    """Opened on first use, in the worker (after gunicorn's fork)."""
    global _db
    if _db is None:
        path = os.environ.get("BENCH_BARE_DB") or os.path.join(tempfile.mkdtemp(prefix="bare-db-"), "bare.sqlite3")
        _db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute("PRAGMA synchronous=FULL")
        _db.execute("CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, recipient TEXT, text TEXT, at TEXT)")
    return _db
