"""Conversations as WhatsApp's servers keep them: every message in and out, acks, reads.

Contract:
- A chat is keyed by the other party's digits (`NUMBER_RE`). Its title is the contact name
  the account has for it (the latest `name` a sender gave, or a demo contact's), else the
  number as WhatsApp formats it (`format_number`).
- Message ids are the page's: uppercase hex (the page makes an outgoing message's id when
  it is typed, `3EB0` + 18 digits; incoming ones are made here, `3A` + 18). A send with an
  id already stored is that message again (a retry), never a second one.
- `waId` is the id as the page's `data-id` shows it for the web version: the bare id
  (2026), `true_<digits>@c.us_<id>` / `false_<digits>@c.us_<id>` (2025). `ack` accepts
  either form.
- Acks only move forward: sent, delivered, read. Incoming messages stay unread until a
  page opens their chat (`mark_read`).
- Every change takes the next sequence number; a page that has seen `mseq` asks for what
  changed since (`updates_locked`); one too far behind, or from before a reset, resyncs.
- Locking: public methods take the state's lock (`changed`) and call `bump` (which needs
  it held) when a page could see the change; `*_locked` ones expect the caller to hold it.
- The demo history (`seed.py`) is not listed by the phone-side calls (`sent`, `inbox`):
  they show what happened since the simulator started (or since a messages reset).
- Conversations are the server's: page reloads, browser restarts and device resets keep
  them; only `reset()` (the phone's reset with `"messages": true`) goes back to the demo.
"""

import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from . import seed
from .options import Options, SimError

NUMBER_RE = re.compile(r"^[1-9]\d{5,14}$")
ID_RE = re.compile(r"^[0-9A-F]{16,32}$")
WA_ID_RE = re.compile(r"^(?:(true|false)_(\d{1,20})@c\.us_)?([0-9A-F]{16,32})$")
ACKS = ("sent", "delivered", "read")
KINDS = ("text", "image")
TEXT_MAX = 65_536
UPDATES_MAX = 200  # a page further behind than this reloads the lists instead
CLOCK_SKEW_S = 60.0


def format_number(digits: str) -> str:
    """`+1 555-000-2222` (1 + 10 digits), `+91 77378 87058` (91 + 10), else `+<digits>`."""
    if len(digits) == 11 and digits.startswith("1"):
        return f"+1 {digits[1:4]}-{digits[4:7]}-{digits[7:]}"
    if len(digits) == 12 and digits.startswith("91"):
        return f"+91 {digits[2:7]} {digits[7:]}"
    return f"+{digits}"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_number(value, name: str) -> str:
    if not isinstance(value, str) or not NUMBER_RE.match(value):
        raise SimError(400, "bad_field", f"'{name}' must be a phone number: 6 to 15 digits, no leading 0.")
    return value


@dataclass(eq=False)
class Message:
    id: str
    chat: str
    out: bool
    text: str | None  # None for a photo
    kind: str
    t: float  # the message's own time (typed, or received), epoch seconds
    at: float  # when the server got it
    n: int  # creation order
    seed: bool = False
    ack: str | None = None  # outgoing only
    delivered_at: float | None = None
    read_at: float | None = None  # outgoing: the recipient read it; incoming: the account did
    seq: int = 0


class Conversations:
    def __init__(self, options: Options, changed, bump):
        self.options = options
        self._changed = changed
        self._bump = bump
        self.seq = 0
        with changed:
            self._load()

    # -- internals (lock held) ----------------------------------------------------------

    def _load(self):
        self._messages: dict[str, Message] = {}
        self._by_chat: dict[str, list[Message]] = {}
        self._changes: OrderedDict[str, Message] = OrderedDict()
        self._names: dict[str, str] = {}
        self._unregistered: set[str] = set()
        self._n = 0
        now = time.time()
        for digits, name, history in seed.DEMO:
            self._names[digits] = name
            for ago, out, text in history:
                m = self._add(digits, out, text, "text" if text else "image", now - ago,
                              ("3EB0" if out else "3A") + secrets.token_hex(9).upper(), seed=True)
                m.ack, m.read_at = ("read" if out else None), now - ago + 30
        self.seq += 1
        self._reset_seq = self.seq  # pages that saw less than this must resync

    def _touch(self, m: Message):
        self.seq += 1
        m.seq = self.seq
        self._changes[m.id] = m
        self._changes.move_to_end(m.id)

    def _add(self, chat, out, text, kind, t, msg_id, seed=False) -> Message:
        self._n += 1
        m = Message(msg_id, chat, out, text, kind, t, time.time(), self._n, seed=seed)
        self._messages[msg_id] = m
        self._by_chat.setdefault(chat, []).append(m)
        self._touch(m)
        return m

    def title(self, chat: str) -> str:
        return self._names.get(chat) or format_number(chat)

    def wa_id(self, m: Message) -> str:
        if self.options.web_version >= 2026:
            return m.id
        return f"{'true' if m.out else 'false'}_{m.chat}@c.us_{m.id}"

    @staticmethod
    def _key(m: Message):
        return (m.t, m.n)

    def _page_view(self, m: Message) -> dict:
        return {"id": m.id, "chat": m.chat, "out": m.out, "text": m.text, "kind": m.kind,
                "ack": m.ack, "read": m.read_at is not None, "t": int(m.t * 1000), "n": m.n,
                "seq": m.seq}

    def _summary(self, chat: str) -> dict:
        msgs = self._by_chat.get(chat, [])
        last = max(msgs, key=self._key) if msgs else None
        return {"id": chat, "title": self.title(chat),
                "unread": sum(1 for m in msgs if not m.out and m.read_at is None),
                "last": self._page_view(last) if last else None}

    def _phone_view(self, m: Message) -> dict:
        return {"to": m.chat, "text": m.text, "waId": self.wa_id(m), "ack": m.ack, "at": iso(m.at),
                "id": m.id, "deliveredAt": iso(m.delivered_at), "readAt": iso(m.read_at)}

    def _inbox_view(self, m: Message) -> dict:
        return {"from": m.chat, "name": self._names.get(m.chat), "text": m.text, "kind": m.kind,
                "waId": self.wa_id(m), "read": m.read_at is not None, "readAt": iso(m.read_at),
                "at": iso(m.at)}

    def updates_locked(self, mseq: int) -> dict:
        """What changed after `mseq`: `{"mseq", "updates": {"messages", "chats"}}`, just
        `{"mseq"}` when nothing did, or `{"mseq", "resync": true}`."""
        if mseq >= self.seq:
            return {"mseq": self.seq}
        if mseq < self._reset_seq:
            return {"mseq": self.seq, "resync": True}
        changed = []
        for m in reversed(self._changes.values()):
            if m.seq <= mseq:
                break
            changed.append(m)
            if len(changed) > UPDATES_MAX:
                return {"mseq": self.seq, "resync": True}
        chats = sorted({m.chat for m in changed})
        return {"mseq": self.seq, "updates": {
            "messages": [self._page_view(m) for m in reversed(changed)],
            "chats": [self._summary(c) for c in chats]}}

    # -- what the page asks -------------------------------------------------------------

    def chat_list(self) -> dict:
        """Every chat, the most recent first: `{"mseq", "chats": [summary, ...]}`."""
        with self._changed:
            order = sorted(self._by_chat, key=lambda c: self._key(max(self._by_chat[c], key=self._key)),
                           reverse=True)
            return {"mseq": self.seq, "chats": [self._summary(c) for c in order]}

    def history(self, chat: str) -> dict:
        """One chat's messages in order; 404 `not_on_whatsapp` for an unregistered number."""
        with self._changed:
            if chat in self._unregistered:
                raise SimError(404, "not_on_whatsapp", f"{format_number(chat)} is not on WhatsApp.")
            msgs = sorted(self._by_chat.get(chat, []), key=self._key)
            return {"mseq": self.seq, "chat": self._summary(chat),
                    "messages": [self._page_view(m) for m in msgs]}

    def send(self, to: str, text: str, msg_id: str, typed_ms: int | None) -> dict:
        """The account sends `text` (typed at `typed_ms`, when plausible) as `msg_id`;
        the same id again answers the stored message and stores nothing."""
        with self._changed:
            m = self._messages.get(msg_id)
            if m is not None:
                if not m.out or m.chat != to or m.text != text:
                    raise SimError(409, "id_taken", "Another message already has this id.")
                return self._page_view(m)
            if to in self._unregistered:
                raise SimError(404, "not_on_whatsapp", f"{format_number(to)} is not on WhatsApp.")
            now = time.time()
            t = now
            if typed_ms is not None and now - 30 * 86400 < typed_ms / 1000 <= now + CLOCK_SKEW_S:
                t = typed_ms / 1000  # WhatsApp keeps the time the message was typed
            m = self._add(to, True, text, "text", t, msg_id)
            m.ack = "sent"
            self._bump()
            return self._page_view(m)

    def mark_read(self, chat: str) -> int:
        """A page opened `chat`: its incoming messages are read (the senders see it)."""
        with self._changed:
            now, count = time.time(), 0
            for m in self._by_chat.get(chat, []):
                if not m.out and m.read_at is None:
                    m.read_at = now
                    self._touch(m)
                    count += 1
            if count:
                self._bump()
            return count

    # -- the phone side -----------------------------------------------------------------

    def sent(self) -> list[dict]:
        """Every message the account sent since start, in the order the server got them."""
        with self._changed:
            return [self._phone_view(m) for m in self._messages.values() if m.out and not m.seed]

    def inbox(self) -> list[dict]:
        """Every message sent to the account since start, with whether it was read."""
        with self._changed:
            return [self._inbox_view(m) for m in self._messages.values() if not m.out and not m.seed]

    def ack(self, *, ack: str, wa_id: str | None = None, to: str | None = None) -> list[dict]:
        """The recipient's phone got (`delivered`) or read (`read`) one message (`wa_id`) or
        every message to `to`; never moves an ack back. 404 when there is no such message."""
        if ack not in ACKS[1:]:
            raise SimError(400, "bad_field", "'ack' must be 'delivered' or 'read'.")
        with self._changed:
            if wa_id is not None:
                match = WA_ID_RE.match(wa_id)
                m = self._messages.get(match[3]) if match else None
                if (match is None or m is None or not m.out or m.seed or (match[1] and match[1] != "true")
                        or (match[2] and match[2] != m.chat)):
                    raise SimError(404, "unknown_message", "The account sent no message with this waId.")
                targets = [m]
            else:
                targets = [m for m in self._by_chat.get(to or "", []) if m.out and not m.seed]
                if not targets:
                    raise SimError(404, "unknown_chat", f"The account sent nothing to {to}.")
            now, moved = time.time(), False
            for m in targets:
                if ACKS.index(ack) > ACKS.index(m.ack):
                    m.ack = ack
                    m.delivered_at = m.delivered_at or now
                    if ack == "read":
                        m.read_at = now
                    self._touch(m)
                    moved = True
            if moved:
                self._bump()
            return [self._phone_view(m) for m in targets]

    def receive(self, sender: str, text: str | None, name: str | None, kind: str) -> dict:
        """`sender` sends the account a message (`kind` "image": a photo, no text)."""
        with self._changed:
            if sender in self._unregistered:
                raise SimError(409, "not_on_whatsapp", f"{sender} is not on WhatsApp and cannot send.")
            if name:
                self._names[sender] = name
            m = self._add(sender, False, text, kind, time.time(), "3A" + secrets.token_hex(9).upper())
            self._bump()
            return self._inbox_view(m)

    def set_unregistered(self, numbers: list[str]) -> list[str]:
        """These numbers are not on WhatsApp (added to the ones already said)."""
        with self._changed:
            self._unregistered.update(numbers)
            return sorted(self._unregistered)

    def reset(self):
        """Back to the demo conversations; nothing sent, received or unregistered remains."""
        with self._changed:
            self._load()
            self._bump()
