"""Rows to messages (in `schema.COLUMNS` order), opaque page cursors, and the checks and
clean-up of what the page hands over for incoming messages."""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from .model import IncomingMessage, Kind, Message, MessageError, OutgoingMessage, Status, from_ms
from .store import InvalidCursor

MAX_KEYS = 100
_CURSOR_RE = re.compile(r"m1\.([0-9]{1,19})")


class Rows:
    """The rows a statement returned, read to the end (an SQLite statement left half-stepped
    would block the COMMIT), empty for a statement that returns none; and how many rows it
    changed (`rowcount`, for INSERT / UPDATE / DELETE)."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int = -1):
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


def encode_cursor(seq: int) -> str:
    """An opaque cursor for "after the message with this sequence number"."""
    return base64.urlsafe_b64encode(f"m1.{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The sequence number in a cursor from `encode_cursor`; InvalidCursor otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError, TypeError):
        raw = ""
    match = _CURSOR_RE.fullmatch(raw)
    if not match or encode_cursor(int(match.group(1))) != cursor:
        raise InvalidCursor(f"after: {cursor!r} is not a cursor this server handed out")
    return int(match.group(1))


def dedupe_keys(keys: Sequence[str]) -> list[str]:
    """`keys` checked (1 to 100 non-empty strings), cleaned, duplicates dropped, order kept."""
    if isinstance(keys, str) or not keys or len(keys) > MAX_KEYS:
        raise ValueError(f"keys: expected a list of 1 to {MAX_KEYS} dedupe keys")
    if not all(isinstance(k, str) and k for k in keys):
        raise ValueError("keys: every dedupe key must be a non-empty string")
    return list(dict.fromkeys(clean(k) for k in keys))


def clean(text: str) -> str:
    """Text from the page made storable: NUL and lone surrogates (which neither UTF-8 nor
    PostgreSQL can hold) become U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    return re.sub("[\x00\ud800-\udfff]", "\ufffd", text)


def first_message(rows: list[Any]) -> Message | None:
    return to_message(rows[0]) if rows else None


def to_outgoing(row: Any) -> OutgoingMessage:
    found = to_message(row)
    assert isinstance(found, OutgoingMessage), "a query for outgoing messages returned another"
    return found


def to_message(row: Any) -> Message:
    """The message a row of `schema.COLUMNS` describes."""
    (seq, message_id, direction, status, to_number, from_number, chat, text, kind, error_code,
     error_message, wa_id, attempts, created_ms, sent_ms, delivered_ms, read_ms, failed_ms,
     idempotency_key, wa_timestamp) = row
    if direction == "in":
        return IncomingMessage(id=message_id, chat=chat, text=text, kind=Kind(kind),
                               received_at=from_ms(created_ms), sender=from_number, wa_id=wa_id,
                               timestamp=wa_timestamp, seq=seq)
    error = MessageError(error_code, error_message or "") if error_code else None
    return OutgoingMessage(id=message_id, to=to_number, text=text, status=Status(status),
                           created_at=from_ms(created_ms), attempts=attempts, error=error,
                           wa_id=wa_id, sent_at=from_ms(sent_ms), delivered_at=from_ms(delivered_ms),
                           read_at=from_ms(read_ms), failed_at=from_ms(failed_ms),
                           idempotency_key=idempotency_key, seq=seq)
