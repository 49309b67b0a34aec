"""`SqlStore`: the one implementation of `MessageStore`, over any backend that can run a
function inside one transaction (`_transaction`). Backends differ only in how they connect,
bound and map errors, and in a `Tx.lock()` that serialises writers of one client id."""
from __future__ import annotations

import abc
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from . import model
from . import schema as q
from .model import ErrorCode, IncomingMessage, Kind, Message, MessageError, OutgoingMessage, Status, from_ms, to_ms
from .rows import Rows, clean, decode_cursor, dedupe_keys, encode_cursor, first_message, to_message, to_outgoing
from .store import (
    IDEMPOTENCY_KEEP_S,
    MAX_LIMIT,
    IdempotencyMismatch,
    MessageStore,
    NotCancellable,
    NotClaimable,
    NotFound,
    OutboxFull,
)

T = TypeVar("T")
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]+")  # as whatsapp.config has it (contract, section 2)
_WAITING = "status IN ('queued', 'sending')"
_MARKABLE = (Status.SENT, Status.DELIVERED, Status.READ)
_TIME_COLUMN = {Status.SENT: "sent_ms", Status.DELIVERED: "delivered_ms", Status.READ: "read_ms"}


class Tx(Protocol):
    """One open transaction, given to the function `_transaction` runs."""

    def execute(self, sql: str, params: Sequence[object] = ...) -> Rows: ...

    def lock(self) -> None:
        """Serialise with every other writer of this client id until the transaction ends
        (acceptance order = sequence order = commit order; exact outbox count)."""


class SqlStore(MessageStore):
    """All the store's logic; subclasses provide `_transaction` (and `check`, `close`)."""

    def __init__(self, client_id: str):
        if not isinstance(client_id, str) or not CLIENT_ID_RE.fullmatch(client_id):
            raise ValueError(f"client_id: must match ^{CLIENT_ID_RE.pattern}$")
        self.client_id = client_id

    @abc.abstractmethod
    def _transaction(self, what: str, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` in one transaction: committed (durably) when it returns, rolled back
        when it raises, and its exception re-raised; database failures as StoreUnavailable.
        `what` names the operation in error messages."""

    # -- outgoing -----------------------------------------------------------------------------
    def accept(self, to: str, text: str, idempotency_key: str | None, body_hash: str | None,
               now: datetime, max_queued: int) -> tuple[OutgoingMessage, bool]:
        # The API checked these already; checked again so that no caller can store a
        # message that could never be sent.
        to, text = model.normalise_number(to), model.check_text(text)
        key = model.check_idempotency_key(idempotency_key)
        digest = body_hash or model.body_hash(to, text)
        ms, cid, new_id = to_ms(now), self.client_id, uuid.uuid4().hex

        def run(tx: Tx) -> tuple[OutgoingMessage, bool]:
            tx.lock()
            # A key older than the 24 h it is kept counts as unused, pruned or not: the
            # answer does not depend on when prune() last ran.
            waiting, digest_then, first_id = tx.execute(q.ACCEPT_CHECK, (
                cid, cid, key, ms - IDEMPOTENCY_KEEP_S * 1000)).fetchone()
            if first_id is not None:
                first = first_message(tx.execute(q.BY_ID, (cid, first_id)).fetchall())
                if isinstance(first, OutgoingMessage):  # else deleted by hand: the key is free
                    if digest_then != digest:
                        raise IdempotencyMismatch(key or "", first)
                    return first, False
            if waiting >= max_queued:
                raise OutboxFull(f"{waiting} messages are waiting to be sent (at most {max_queued})")
            (seq,) = tx.execute(q.INSERT_OUT, (cid, new_id, to, text, ms, key)).fetchone()
            if key is not None:
                tx.execute(q.IDEMPOTENCY_PUT, (cid, key, digest, new_id, ms))
            return OutgoingMessage(id=new_id, to=to, text=text, status=Status.QUEUED,
                                   created_at=from_ms(ms), idempotency_key=key, seq=seq), True

        return self._transaction("accept a message", run)

    def get(self, message_id: str) -> Message:
        found = self._transaction("read a message", lambda tx: first_message(
            tx.execute(q.BY_ID, (self.client_id, message_id)).fetchall()))
        if found is None:
            raise NotFound(f"no message {message_id!r}")
        return found

    def list_messages(self, direction: str, status: Status | str | None = None, limit: int = 100,
                      after: str | None = None) -> tuple[list[Message], str | None]:
        if direction not in ("out", "in"):
            raise ValueError(f"direction: expected out or in, not {direction!r}")
        wanted = None if status is None else Status(status)
        if wanted is not None and direction == "in":
            raise ValueError("status: only outgoing messages have a status")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit: expected 1 to {MAX_LIMIT}, not {limit!r}")
        start = decode_cursor(after) if after is not None else 0
        value = direction if wanted is None else wanted.value
        rows = self._transaction("list messages", lambda tx: tx.execute(
            q.page_query(wanted is not None), (self.client_id, value, start, limit + 1)).fetchall())
        page = [to_message(row) for row in rows[:limit]]
        return page, (encode_cursor(page[-1].seq) if len(rows) > limit else None)

    def cancel(self, message_id: str, now: datetime) -> OutgoingMessage:
        changed, found = self._fail_one(message_id, "status = 'queued'", ErrorCode.CANCELLED,
                                        "cancelled before it was sent", now)
        if not changed:
            raise NotCancellable("only a queued message can be cancelled", found)
        return found

    def counts(self, now: datetime) -> dict[str, int | float | None]:
        cid = self.client_id

        def run(tx: Tx) -> tuple[dict[str, int], list[int]]:
            counted = dict(tx.execute(q.COUNTS_OF, (cid,)).fetchall())
            oldest = [row[0] for s in ("queued", "sending")
                      for row in tx.execute(q.OLDEST_OF_STATUS, (cid, s)).fetchall()]
            return counted, oldest

        counted, oldest = self._transaction("count the outbox", run)
        queued, sending = (int(counted.get(s, 0)) for s in ("queued", "sending"))
        age = max(0, to_ms(now) - min(oldest)) / 1000 if oldest else None
        return {"queued": queued, "sending": sending, "oldestQueuedAgeS": age}

    # -- the sender ---------------------------------------------------------------------------
    def next_queued(self) -> OutgoingMessage | None:
        found = self._of_status(Status.QUEUED, 1)
        return found[0] if found else None

    def in_flight(self) -> list[OutgoingMessage]:
        return self._of_status(Status.SENDING, 1_000_000)

    def claim(self, message_id: str, now: datetime) -> OutgoingMessage:
        # `now` is part of the interface so that a claim time can be kept without changing
        # callers; the contract's object has none today.
        return self._bump(message_id, Status.QUEUED, "only a queued message can be claimed")

    def retry_claim(self, message_id: str, now: datetime) -> OutgoingMessage:
        return self._bump(message_id, Status.SENDING, "only a sending message can be retried")

    def mark(self, message_id: str, status: Status | str, now: datetime,
             wa_id: str | None = None) -> OutgoingMessage | None:
        target = Status(status)
        if target not in _MARKABLE:
            raise ValueError(f"status: mark() moves to sent, delivered or read, not {target.value}"
                             " (claim() and fail() do the others)")
        earlier = [s.value for s in Status if s.can_become(target)]
        columns = [_TIME_COLUMN[s] for s in _MARKABLE if s.rank <= target.rank]
        times = ", ".join(f"{c} = COALESCE({c}, ?)" for c in columns)  # skipped steps too
        ms, cid = to_ms(now), self.client_id

        def run(tx: Tx) -> tuple[bool, Message | None]:
            tx.lock()
            # A conditional update, not read-then-write, so that it is right without the lock too.
            rows = tx.execute(
                f"UPDATE {q.MESSAGES} SET status = ?, {times} WHERE {q.WHERE_ONE}"
                f" AND status IN ({', '.join('?' * len(earlier))})"
                f" RETURNING {q.COLUMNS}",
                (target.value, *[ms] * len(columns), cid, message_id, *earlier)).fetchall()
            if wa_id is not None:
                rows = tx.execute(
                    f"UPDATE {q.MESSAGES} SET wa_id = ? WHERE {q.WHERE_ONE}"
                    " AND status <> 'failed' AND (wa_id IS NULL OR wa_id <> ?)"
                    f" RETURNING {q.COLUMNS}", (wa_id, cid, message_id, wa_id)).fetchall() or rows
            if rows:
                return True, to_message(rows[0])
            return False, first_message(tx.execute(q.BY_ID, (cid, message_id)).fetchall())

        changed, found = self._transaction("mark a message", run)
        if not isinstance(found, OutgoingMessage):
            raise NotFound(f"no outgoing message {message_id!r}")
        return found if changed else None

    def note_wa_id(self, message_id: str, wa_id: str) -> OutgoingMessage | None:
        changed, found = self._update_one(message_id, "wa_id = ?", "status = 'sending'", (clean(wa_id),), (),
                                          "note a waId")
        return found if changed else None

    def wa_ids_to(self, to: str, since: datetime) -> set[str]:
        rows = self._transaction("list waIds of a chat", lambda tx: tx.execute(
            q.WA_IDS_TO, (self.client_id, to, to_ms(since))).fetchall())
        return {row[0] for row in rows}

    def fail(self, message_id: str, code: str, message: str, now: datetime) -> OutgoingMessage | None:
        changed, found = self._fail_one(message_id, _WAITING, code, message, now)
        return found if changed else None

    def fail_queued(self, code: str, message: str, now: datetime) -> list[OutgoingMessage]:
        return self._fail_where(_WAITING, (), code, message, now, "fail waiting messages")

    def expire(self, accepted_before: datetime, now: datetime) -> list[OutgoingMessage]:
        return self._fail_where("status = 'queued' AND created_ms < ?", (to_ms(accepted_before),),
                                ErrorCode.EXPIRED, "not sent within its time to live", now,
                                "expire messages")

    def awaiting_ack(self, limit: int = 100) -> list[OutgoingMessage]:
        def run(tx: Tx) -> list[OutgoingMessage]:
            rows = [row for s in ("sent", "delivered") for row in tx.execute(
                q.NEWEST_OF_STATUS_WITH_WA_ID, (self.client_id, s, limit)).fetchall()]
            return sorted((to_outgoing(row) for row in rows), key=lambda m: -m.seq)[:limit]

        return self._transaction("list messages awaiting ticks", run)

    # -- incoming -----------------------------------------------------------------------------
    def add_incoming(self, chat: str, keys: Sequence[str], sender: str | None, text: str | None,
                     kind: Kind | str, wa_id: str | None, timestamp: str | None,
                     now: datetime) -> IncomingMessage | None:
        kind, chat, unique = Kind(kind), clean(chat), dedupe_keys(keys)
        if not chat:
            raise ValueError("chat: the chat's title is required")
        text = None if kind is Kind.UNSUPPORTED or text is None else clean(text)
        sender, wa_id, timestamp = (None if v is None else clean(v) for v in (sender, wa_id, timestamp))
        ms, cid, new_id = to_ms(now), self.client_id, uuid.uuid4().hex

        def run(tx: Tx) -> IncomingMessage | None:
            tx.lock()  # with the primary key on (client_id, chat, key): one winner per key
            if tx.execute(q.seen_query(len(unique)), (cid, chat, *unique)).fetchall():
                return None
            (seq,) = tx.execute(q.INSERT_IN, (cid, new_id, sender, chat, text, kind.value, wa_id,
                                              timestamp, ms)).fetchone()
            for key in unique:
                tx.execute(q.SEEN_PUT, (cid, chat, key, new_id, ms))
            return IncomingMessage(id=new_id, chat=chat, text=text, kind=kind, received_at=from_ms(ms),
                                   sender=sender, wa_id=wa_id, timestamp=timestamp, seq=seq)

        return self._transaction("record an incoming message", run)

    def seen(self, chat: str, keys: Sequence[str]) -> set[str]:
        unique = dedupe_keys(keys)
        rows = self._transaction("read dedupe keys", lambda tx: tx.execute(
            q.seen_query(len(unique)), (self.client_id, clean(chat), *unique)).fetchall())
        return {row[0] for row in rows}

    def prune(self, now: datetime) -> int:
        cutoff, cid = to_ms(now) - IDEMPOTENCY_KEEP_S * 1000, self.client_id

        def run(tx: Tx) -> int:
            tx.lock()
            recount(tx, cid)  # cheap (the waiting rows only), and repairs a TRUNCATE by hand
            return tx.execute(q.IDEMPOTENCY_PRUNE, (cid, cutoff)).rowcount

        return self._transaction("prune idempotency keys", run)

    # -- helpers ------------------------------------------------------------------------------
    def _of_status(self, status: Status, limit: int) -> list[OutgoingMessage]:
        rows = self._transaction(f"list {status.value} messages", lambda tx: tx.execute(
            q.FIRST_OF_STATUS, (self.client_id, status.value, limit)).fetchall())
        return [to_outgoing(row) for row in rows]

    def _bump(self, message_id: str, status: Status, refusal: str) -> OutgoingMessage:
        changed, found = self._update_one(message_id, "status = 'sending', attempts = attempts + 1",
                                          "status = ?", (), (status.value,), "claim a message")
        if not changed:
            raise NotClaimable(refusal, found)
        return found

    def _fail_one(self, message_id: str, where: str, code: str, message: str,
                  now: datetime) -> tuple[bool, OutgoingMessage]:
        error = MessageError(code, message)
        return self._update_one(message_id, "status = 'failed', error_code = ?, error_message = ?,"
                                " failed_ms = ?", where, (error.code, error.message, to_ms(now)), (),
                                "fail a message")

    def _update_one(self, message_id: str, assignments: str, where: str, set_params: tuple[object, ...],
                    where_params: tuple[object, ...], what: str) -> tuple[bool, OutgoingMessage]:
        """`UPDATE ... SET assignments WHERE <this message> AND where`, in one statement (no
        read-then-write race); (True, it after) or (False, it as it is) when `where` did not
        match. NotFound when there is no such outgoing message."""
        cid = self.client_id

        def run(tx: Tx) -> tuple[bool, Message | None]:
            tx.lock()
            rows = tx.execute(f"UPDATE {q.MESSAGES} SET {assignments} WHERE {q.WHERE_ONE}"
                              f" AND direction = 'out' AND {where} RETURNING {q.COLUMNS}",
                              (*set_params, cid, message_id, *where_params)).fetchall()
            if rows:
                return True, to_message(rows[0])
            return False, first_message(tx.execute(q.BY_ID, (cid, message_id)).fetchall())

        changed, found = self._transaction(what, run)
        if not isinstance(found, OutgoingMessage):
            raise NotFound(f"no outgoing message {message_id!r}")
        return changed, found

    def _fail_where(self, where: str, params: tuple[object, ...], code: str, message: str,
                    now: datetime, what: str) -> list[OutgoingMessage]:
        error = MessageError(code, message)

        def run(tx: Tx) -> list[tuple[object, ...]]:
            tx.lock()
            return tx.execute(q.FAIL_WHERE.replace("{where}", f"direction = 'out' AND {where}"),
                              (error.code, error.message, to_ms(now), self.client_id, *params)).fetchall()

        rows = self._transaction(what, run)
        return sorted((to_outgoing(row) for row in rows), key=lambda m: m.seq)  # RETURNING has no order


def recount(tx: Tx, client_id: str) -> None:
    """Rebuild `client_id`'s queued/sending counters from its rows (in a locked transaction)."""
    for statement in q.RECOUNT:
        tx.execute(statement, (client_id,))
