"""The message store: the outbox of accepted messages and the record of incoming ones.

    store = open_store(client_id="energenie-whatsapp", data_dir=".wwebjs_auth")  # SQLite
    store = open_store(client_id=..., data_dir=..., database_url="postgres://...")
    message, created = store.accept(new.to, new.text, key, new.body_hash, now, max_queued)

Modules: `model` (the message objects, the request checks; pure), `store` (the interface
and its errors), `sql` (its one implementation), `schema` (tables and SQL text), `rows`
(rows to messages, cursors), `sqlite` and `postgres` (the backends), `bounded` (calls that
return in time, the connection pool). Nothing here knows about HTTP, the browser or
`whatsapp.config`.
"""
from __future__ import annotations

import os

from .model import (
    ErrorCode,
    IncomingMessage,
    InvalidRequest,
    Kind,
    Message,
    MessageError,
    NewMessage,
    OutgoingMessage,
    Status,
    body_hash,
    check_idempotency_key,
    parse_new_message,
)
from .store import (
    IdempotencyMismatch,
    InvalidCursor,
    MessageStore,
    NotCancellable,
    NotClaimable,
    NotFound,
    OutboxFull,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WrongStatus,
)

__all__ = ["ErrorCode", "IdempotencyMismatch", "IncomingMessage", "InvalidCursor", "InvalidRequest",
           "Kind", "Message", "MessageError", "MessageStore", "NewMessage", "NotCancellable",
           "NotClaimable", "NotFound", "OutboxFull", "OutgoingMessage", "Status", "StoreCorrupt",
           "StoreError", "StoreFull", "StoreUnavailable", "WrongStatus", "body_hash", "check_idempotency_key",
           "open_store", "parse_new_message"]


def open_store(*, client_id: str, data_dir: str | os.PathLike[str], database_url: str | None = None,
               timeout_s: float = 5.0, open_now: bool = True) -> MessageStore:
    """PostgreSQL at `database_url` when given (nothing contacted yet), else SQLite at
    `<data_dir>/messages-<client id>.sqlite3` (with `open_now`, opened now: may raise
    StoreCorrupt or StoreUnavailable; else at the first call, or by `open_soon`).
    `timeout_s` bounds each database call."""
    if database_url:
        from .postgres import PostgresMessageStore

        return PostgresMessageStore(database_url, client_id, timeout_s=timeout_s)
    from .sqlite import SqliteMessageStore, default_path

    return SqliteMessageStore(default_path(data_dir, client_id), client_id, busy_timeout_s=timeout_s,
                              open_now=open_now)
