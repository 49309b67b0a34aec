"""Messages as the contract (section 5) shows them: statuses, error codes, the two message
objects and their JSON. Pure: no I/O, no clock (callers pass `now`).

Times are timezone-aware UTC datetimes with millisecond precision (the stores keep integer
milliseconds since the epoch); JSON shows them as ISO 8601 with milliseconds and a `Z`.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any, overload

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Status(str, enum.Enum):
    """Where an outgoing message is. It moves only forward (see `can_become`)."""

    QUEUED = "queued"        # accepted, waiting for a ready session and its turn
    SENDING = "sending"      # claimed by the sender; maybe typed, maybe on the clock
    SENT = "sent"            # one tick: WhatsApp's server has it
    DELIVERED = "delivered"  # two ticks
    READ = "read"            # blue ticks
    FAILED = "failed"        # terminal, with an error

    @property
    def rank(self) -> int:
        """Position on the forward path queued < sending < sent < delivered < read; failed
        is off the path (-1): terminal, reachable only from queued or sending."""
        return _RANK[self]

    @property
    def waiting(self) -> bool:
        """Not yet handed to WhatsApp: counts against the outbox and can still fail."""
        return self in (Status.QUEUED, Status.SENDING)

    def can_become(self, new: Status) -> bool:
        """Whether moving from this status to `new` goes forward."""
        if self is Status.FAILED:
            return False
        if new is Status.FAILED:
            return self.waiting
        return new.rank > self.rank


_RANK = {Status.QUEUED: 0, Status.SENDING: 1, Status.SENT: 2, Status.DELIVERED: 3,
         Status.READ: 4, Status.FAILED: -1}


class ErrorCode(str, enum.Enum):
    """The codes of failed messages known today. The set is open: stores and JSON carry any
    `code` string of lowercase letters, digits and `_` (see `MessageError`)."""

    NOT_ON_WHATSAPP = "not_on_whatsapp"  # the invalid-number dialog: not retried
    EXPIRED = "expired"                  # still queued after WHATSAPP_MESSAGE_TTL_S
    CANCELLED = "cancelled"              # DELETE while queued
    LOGGED_OUT = "logged_out"            # disconnect, clear-session or a phone logout


class Kind(str, enum.Enum):
    """What an incoming message is: text we could read, or something else (media, a call,
    a contact card...) whose text is null."""

    TEXT = "text"
    UNSUPPORTED = "unsupported"


@dataclasses.dataclass(frozen=True)
class MessageError:
    """Why a message failed: `code` (an `ErrorCode` value or a newer one) and a sentence."""

    code: str
    message: str

    def __post_init__(self) -> None:
        code = self.code.value if isinstance(self.code, ErrorCode) else self.code
        if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
            raise ValueError(f"error code {self.code!r}: expected lowercase letters, digits and _")
        object.__setattr__(self, "code", code)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclasses.dataclass(frozen=True)
class OutgoingMessage:
    """A message the API accepted. `seq` is the store's order of acceptance (not in JSON)."""

    id: str
    to: str
    text: str
    status: Status
    created_at: datetime
    attempts: int = 0
    error: MessageError | None = None
    wa_id: str | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None
    idempotency_key: str | None = None
    seq: int = 0

    direction = "out"

    def to_json(self) -> dict[str, Any]:
        """Exactly the contract's message object."""
        return {"id": self.id, "direction": "out", "to": self.to, "text": self.text,
                "status": self.status.value,
                "error": None if self.error is None else self.error.to_json(),
                "waId": self.wa_id, "attempts": self.attempts,
                "createdAt": iso_ms(self.created_at), "sentAt": iso_ms(self.sent_at),
                "deliveredAt": iso_ms(self.delivered_at), "readAt": iso_ms(self.read_at),
                "failedAt": iso_ms(self.failed_at), "idempotencyKey": self.idempotency_key}


@dataclasses.dataclass(frozen=True)
class IncomingMessage:
    """A message someone sent to the account, stored once. `sender` is the contract's `from`
    (digits, or None when the page shows no number); `timestamp` is the time as the page
    shows it (text, or None); `text` is None when `kind` is unsupported."""

    id: str
    chat: str
    text: str | None
    kind: Kind
    received_at: datetime
    sender: str | None = None
    wa_id: str | None = None
    timestamp: str | None = None
    seq: int = 0

    direction = "in"

    def to_json(self) -> dict[str, Any]:
        """Exactly the contract's incoming message object."""
        return {"id": self.id, "direction": "in", "from": self.sender, "chat": self.chat,
                "text": self.text, "waId": self.wa_id, "timestamp": self.timestamp,
                "receivedAt": iso_ms(self.received_at), "kind": self.kind.value}


Message = OutgoingMessage | IncomingMessage


def iso_ms(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a `Z` (`2026-11-22T10:00:00.123Z`), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (floored). A naive datetime is a bug: it raises ValueError."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment!r}")
    return (moment - EPOCH) // _MS


@overload
def from_ms(ms: int) -> datetime: ...
@overload
def from_ms(ms: None) -> None: ...
def from_ms(ms: int | None) -> datetime | None:
    """The UTC datetime `ms` milliseconds after the epoch, or None."""
    return None if ms is None else EPOCH + ms * _MS


# -- checking a POST body ---------------------------------------------------------------------
MAX_TEXT = 65_536        # code points (Python's len), not UTF-16 units nor bytes
MIN_DIGITS, MAX_DIGITS = 8, 15
MAX_KEY = 255
_NUMBER_SEPARATORS = str.maketrans("", "", " -.()")
_NUMBER_RE = re.compile(r"\+?([0-9]+)")
_CUS_RE = re.compile(r"([0-9]+)@c\.us")
_KEY_RE = re.compile(r"[\x21-\x7e]+")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class InvalidRequest(ValueError):
    """A request the API answers with 400 `invalid_request`; `field` names what is wrong
    (`to`, `text`, `body`, `Idempotency-Key`, or the unknown field names)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclasses.dataclass(frozen=True)
class NewMessage:
    """A checked POST body: `to` as digits, `text` exactly as given."""

    to: str
    text: str

    @property
    def body_hash(self) -> str:
        return body_hash(self.to, self.text)


NEW_MESSAGE_FIELDS = ("to", "text")


def parse_new_message(body: object) -> NewMessage:
    """Check a decoded JSON body: an object with exactly `to` and `text` (see
    `normalise_number`, `check_text`). Raises InvalidRequest naming the field."""
    fields = check_fields(body, NEW_MESSAGE_FIELDS)
    return NewMessage(normalise_number(fields["to"]), check_text(fields["text"]))


def check_fields(body: object, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """`body` if it is an object with every one of `names` and nothing else (`optional` ones
    may be left out). In this order, raises InvalidRequest naming: `body` (not an object),
    every unknown field (sorted, comma-separated), the first missing one."""
    if not isinstance(body, dict):
        raise InvalidRequest("body", f"expected a JSON object with {_listed(names + optional)}, got {_json_type(body)}")
    unknown = sorted(str(name) for name in body if name not in names + optional)
    if unknown:
        listed = ", ".join(unknown)
        only = f"only {_listed(names + optional)} are accepted" if names + optional else "this takes none"
        raise InvalidRequest(listed, f"unknown field(s) {listed}: {only}")
    for name in names:
        if name not in body:
            raise InvalidRequest(name, "is required")
    return body


def _listed(names: tuple[str, ...]) -> str:
    return " and ".join(", ".join(f"`{name}`" for name in names).rsplit(", ", 1)) if names else "no fields"


def normalise_number(value: object) -> str:
    """The digits of an international number: `+` optional at the start, spaces, dashes,
    dots and parentheses ignored; or `<digits>@c.us`. 8 to 15 ASCII digits, not starting
    with 0 (country codes never do: a leading 0 or 00 is a national or dialling prefix, and
    sending there would reach nobody or the wrong person). Raises InvalidRequest("to", ...)."""
    if not isinstance(value, str):
        raise InvalidRequest("to", f"must be a string, not {_json_type(value)}")
    if len(value) > 64:  # no number is written that long; keeps the checks cheap
        raise InvalidRequest("to", "is too long for a phone number")
    match = _CUS_RE.fullmatch(value) or _NUMBER_RE.fullmatch(value.translate(_NUMBER_SEPARATORS))
    if match is None:
        raise InvalidRequest("to", "must be an international number (digits, optional leading +, "
                                   "spaces, dashes, dots, parentheses) or <digits>@c.us")
    digits = match.group(1)
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise InvalidRequest("to", f"must have {MIN_DIGITS} to {MAX_DIGITS} digits, not {len(digits)}")
    if digits.startswith("0"):
        raise InvalidRequest("to", "must start with the country code, not 0 (international format)")
    return digits


def check_text(value: object) -> str:
    """`value` unchanged if it is a string of 1 to 65,536 code points that WhatsApp can carry.

    Refused: the empty or whitespace-only string (WhatsApp Web sends nothing for it, the
    message would never leave), U+0000 (PostgreSQL text cannot hold it, and it cannot be
    typed), and lone surrogates (JSON `"\\ud800"` decodes to one; it is not a character and
    has no UTF-8 form). Everything else, emoji, any script, newlines, passes as is."""
    if not isinstance(value, str):
        raise InvalidRequest("text", f"must be a string, not {_json_type(value)}")
    if not value or value.isspace():
        raise InvalidRequest("text", "must not be empty or only whitespace")
    if len(value) > MAX_TEXT:
        raise InvalidRequest("text", f"must be at most {MAX_TEXT} characters, not {len(value)}")
    if "\x00" in value:
        raise InvalidRequest("text", "must not contain the NUL character (U+0000)")
    if _SURROGATE_RE.search(value):
        raise InvalidRequest("text", "must not contain lone UTF-16 surrogates (U+D800 to U+DFFF)")
    return value


def check_idempotency_key(value: str | None) -> str | None:
    """The `Idempotency-Key` header: None when absent, else 1 to 255 visible ASCII characters
    (0x21-0x7E). Raises InvalidRequest("Idempotency-Key", ...)."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY or not _KEY_RE.fullmatch(value):
        raise InvalidRequest("Idempotency-Key", f"must be 1 to {MAX_KEY} visible ASCII characters "
                                                "(0x21-0x7E, no spaces)")
    return value


def body_hash(to: str, text: str) -> str:
    """sha256 (hex) of the normalised request, for comparing a repeat under the same key:
    `+1 555 000 1111` and `15550001111` with the same text are the same request. `to` is
    digits only, so the newline separator is unambiguous."""
    return hashlib.sha256(f"v1\n{to}\n{text}".encode()).hexdigest()


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
