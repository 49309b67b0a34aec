"""The message store's interface: the outbox of accepted messages and the record of incoming
ones, durable across crashes. One set of semantics; `sql.SqlStore` implements it once for
both backends (`sqlite.SqliteMessageStore`, `postgres.PostgresMessageStore`).

Every method is thread-safe (request threads and the session's owner thread call at once)
and is one transaction: it happens entirely or not at all. Every method may raise
`StoreUnavailable`; when it does, a write may or may not have happened (a connection lost
during COMMIT cannot tell), which is what idempotency keys are for.
"""
from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from .model import IncomingMessage, Kind, Message, OutgoingMessage, Status

log = logging.getLogger(__name__)

IDEMPOTENCY_KEEP_S = 24 * 3600  # contract: keys are kept 24 h at least
MAX_LIMIT = 500


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, did not answer in time, is locked by another process
    or the disk is full. The message says which, never a password. Usually temporary."""


class StoreFull(StoreUnavailable):
    """The disk holding the store is full (the API answers 507). Nothing half-written: the
    transaction was rolled back; it works again by itself once there is room."""


class StoreCorrupt(StoreUnavailable):
    """The database file is damaged. Not temporary; it is never replaced silently, since it
    holds accepted messages: a person must look (the message names the file)."""


class OutboxFull(StoreError):
    """`max_queued` messages are already waiting (queued or sending)."""


class IdempotencyMismatch(StoreError):
    """The idempotency key was used, within 24 h, for a different body. `.message` is the
    message accepted under it."""

    def __init__(self, key: str, message: OutgoingMessage):
        super().__init__(f"idempotency key {key!r} was used for another request (message {message.id})")
        self.key, self.message = key, message


class NotFound(StoreError):
    """No message with that id (in this client id)."""


class WrongStatus(StoreError):
    """The message is not in a status this operation applies to; `.message` is it as it is now."""

    def __init__(self, what: str, message: OutgoingMessage):
        super().__init__(f"message {message.id} is {message.status.value}: {what}")
        self.message = message


class NotCancellable(WrongStatus):
    """Only a queued message can be cancelled (the API answers 409)."""


class NotClaimable(WrongStatus):
    """`claim` needs a queued message, `retry_claim` a sending one (e.g. it was cancelled
    or expired meanwhile)."""


class InvalidCursor(ValueError):
    """An `after` cursor this store did not hand out (the API answers 400)."""


class MessageStore(abc.ABC):
    """The outbox and the incoming record of one client id.

    Ordering: outgoing messages are ordered by acceptance (a sequence assigned inside the
    accepting transaction, which is serialised per client id, so commit order and sequence
    order agree and a paging reader never skips a row). Ids are opaque unique strings.
    Times are the `now` the caller passes (timezone-aware), kept to the millisecond.
    Retention: idempotency keys are pruned after 24 h; messages and dedupe keys are kept
    (the user's history, and what stops an old incoming row being published again).
    """

    # -- the API ------------------------------------------------------------------------------
    @abc.abstractmethod
    def accept(self, to: str, text: str, idempotency_key: str | None, body_hash: str | None,
               now: datetime, max_queued: int) -> tuple[OutgoingMessage, bool]:
        """Queue a message, durably (fsynced / committed) before returning; `(message, True)`.

        `to` digits and `text` as `model.parse_new_message` left them; `body_hash` from
        `model.body_hash` (computed when None). With a key used in the last 24 h: the same
        hash returns `(first message as it is now, False)` and queues nothing; another hash
        raises IdempotencyMismatch. Else, with `max_queued` or more waiting: OutboxFull."""

    @abc.abstractmethod
    def get(self, message_id: str) -> Message:
        """The message (either direction); NotFound when unknown."""

    @abc.abstractmethod
    def list_messages(self, direction: str, status: Status | str | None = None, limit: int = 100,
                      after: str | None = None) -> tuple[list[Message], str | None]:
        """Messages of `direction` ("out" or "in"), oldest first, optionally of one `status`
        (outgoing only), at most `limit` (1 to 500), after the cursor `after`. Returns the
        page and the cursor of the next one (None when this page is the last). ValueError on
        a bad argument, InvalidCursor on a cursor not from this method."""

    @abc.abstractmethod
    def cancel(self, message_id: str, now: datetime) -> OutgoingMessage:
        """A queued message fails with `cancelled`; NotCancellable once it is sending or
        later, NotFound when unknown."""

    @abc.abstractmethod
    def counts(self, now: datetime) -> dict[str, int | float | None]:
        """`{"queued": n, "sending": n, "oldestQueuedAgeS": s}`; the age (seconds, ms
        precision, never negative) is of the oldest message not yet handed to WhatsApp
        (queued or sending: a message on the clock is a health signal too), None if none.
        Counters kept by triggers plus two index seeks: as cheap with 10,000 waiting as with none."""

    # -- the sender (the session's owner thread) --------------------------------------------------
    @abc.abstractmethod
    def next_queued(self) -> OutgoingMessage | None:
        """The oldest queued message, or None."""

    @abc.abstractmethod
    def in_flight(self) -> list[OutgoingMessage]:
        """Messages in `sending`, oldest first: after a crash, look for these in their chats
        before sending anything else."""

    @abc.abstractmethod
    def claim(self, message_id: str, now: datetime) -> OutgoingMessage:
        """queued -> sending, attempts + 1. NotClaimable if not queued (cancelled, expired,
        failed meanwhile), NotFound when unknown."""

    @abc.abstractmethod
    def retry_claim(self, message_id: str, now: datetime) -> OutgoingMessage:
        """Count one more attempt on a message in `sending` (typing it again after checking
        the chat); NotClaimable if it is not sending."""

    @abc.abstractmethod
    def mark(self, message_id: str, status: Status | str, now: datetime,
             wa_id: str | None = None) -> OutgoingMessage | None:
        """Move forward to sent, delivered or read and set that time, and the times of steps
        skipped (read seen first sets deliveredAt and sentAt to now too). `wa_id`, when given
        and different, is recorded (the page's newer form of an id wins), except on a failed
        message. Returns the message, or None when nothing changed (same or earlier status,
        or failed). NotFound when unknown, ValueError for another target status."""

    @abc.abstractmethod
    def note_wa_id(self, message_id: str, wa_id: str) -> OutgoingMessage | None:
        """Record the waId of a message still `sending` (typed, seen on the clock: WhatsApp
        sends it when it can, so it is never typed again). None when it is not sending."""

    @abc.abstractmethod
    def wa_ids_to(self, to: str, since: datetime) -> set[str]:
        """The waIds of outgoing messages to `to` accepted since `since`: rows of the chat
        that belong to another message, when looking for one after a crash."""

    @abc.abstractmethod
    def fail(self, message_id: str, code: str, message: str, now: datetime) -> OutgoingMessage | None:
        """A queued or sending message fails with `{code, message}`; None when it is already
        past that (sent or later, or failed). NotFound when unknown."""

    @abc.abstractmethod
    def fail_queued(self, code: str, message: str, now: datetime) -> list[OutgoingMessage]:
        """Every queued AND sending message fails (a logout: nothing may go out from the next
        account linked). Returns them, oldest first."""

    @abc.abstractmethod
    def expire(self, accepted_before: datetime, now: datetime) -> list[OutgoingMessage]:
        """Queued messages accepted before `accepted_before` fail with `expired` (a message
        already sending is not expired: it may be on its way). Returns them, oldest first."""

    @abc.abstractmethod
    def awaiting_ack(self, limit: int = 100) -> list[OutgoingMessage]:
        """Sent or delivered messages with a waId whose ticks may still change, newest first
        (the recent ones are the ones that move; an old never-read one must not crowd them out)."""

    # -- incoming ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_incoming(self, chat: str, keys: Sequence[str], sender: str | None, text: str | None,
                     kind: Kind | str, wa_id: str | None, timestamp: str | None,
                     now: datetime) -> IncomingMessage | None:
        """Record an incoming message once. `keys`: its dedupe keys (its waId in each form,
        a fallback of time + text + sender), at least one. If ANY of them is already recorded
        for `chat`: None (already published). Else the message and all its keys are stored
        together and the new message is returned: publish it. Racing calls cannot both win."""

    @abc.abstractmethod
    def seen(self, chat: str, keys: Sequence[str]) -> set[str]:
        """Which of `keys` are already recorded for `chat`."""

    # -- housekeeping -----------------------------------------------------------------------------
    @abc.abstractmethod
    def prune(self, now: datetime) -> int:
        """Delete idempotency keys older than 24 h; returns how many. Messages and dedupe keys
        are kept. Also rebuilds the waiting counters from the rows (cheap; repairs a TRUNCATE
        by hand). Meant to run now and then, e.g. hourly."""

    @abc.abstractmethod
    def check(self) -> None:
        """Open / create the schema now; raises StoreUnavailable (or StoreCorrupt) if it cannot."""

    def open_soon(self, then: Callable[[], None] | None = None) -> threading.Thread:
        """`check()` on a thread of its own (returned, started), then `then()`, also when the
        open failed (calls then fail as they would have). A failure is logged here, once.

        For a server's start: opening reads the whole SQLite file (its integrity check, 0.2-0.3 s
        at 100,000 messages here and 1.4 s at 500,000, without Python's GIL) or connects to
        PostgreSQL, and the browser's launch must not wait for either. Calls meanwhile wait
        for the open (SQLite, within its busy timeout) or take a connection of their own."""
        def run() -> None:
            try:
                self.check()
            except StoreCorrupt as exc:  # a person must look: it may hold accepted messages
                log.error("the message store cannot be opened; POST /messages answers 503 until it is "
                          "repaired: %s", exc)
            except StoreUnavailable as exc:
                log.error("the message store cannot be opened yet; POST /messages answers 503 until it "
                          "can: %s", exc)
            except Exception:  # a bug of ours: calls will meet it too; `then` must still run
                log.exception("opening the message store failed")
            finally:
                if then is not None:
                    then()

        thread = threading.Thread(target=run, name="message-store-open", daemon=True)
        thread.start()
        return thread

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files; idempotent. Calls afterwards raise StoreUnavailable."""
