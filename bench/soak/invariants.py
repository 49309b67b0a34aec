"""What must hold after every cycle and at the end, counted from outside the product.

Messages out: each accepted text must be on the phone side (`/_phone/messages`, where a
message sent twice is listed twice) exactly once, once the session has had time to drain;
a text there that the soak never had accepted (refused, or never asked for: a mangled
text) breaks the promise too. Accepted messages that failed for a documented reason
(`error.code` in DOCUMENTED) are counted apart, as are refusals (507, 429, 503
`store_unavailable`: nothing stored) and messages whose POST never settled (`unknown`).
Messages in: each text the phone sent must be published (`GET /messages?direction=in`)
exactly once. "Before the cutoff" decides lost versus still on its way: a message settled
(or sent in) before it and still missing is lost; at the end the cutoff is the end of the
final drain.

Files: every backup folder with a backup's name verifies against its manifest (a crash
mid-backup leaves only a `.tmp-*` folder, never offered); the session record parses and
still names the linked account; no record was set aside as corrupt.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from whatsapp.persistence.manifest import NAME_RE, BackupCorrupt, verify

from .traffic import In, Out

DOCUMENTED = ("not_on_whatsapp", "expired", "cancelled", "logged_out")


@dataclasses.dataclass
class Tally:
    accepted: int = 0
    sent_once: int = 0
    sent_twice: list[str] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)
    pending: list[Out] = dataclasses.field(default_factory=list)
    failed: Counter[str] = dataclasses.field(default_factory=Counter)
    refused: Counter[str] = dataclasses.field(default_factory=Counter)
    unknown: int = 0
    unknown_sent: int = 0
    sent_unasked: list[str] = dataclasses.field(default_factory=list)
    in_sent: int = 0
    in_once: int = 0
    in_twice: list[str] = dataclasses.field(default_factory=list)
    in_missed: list[str] = dataclasses.field(default_factory=list)
    in_pending: list[In] = dataclasses.field(default_factory=list)
    in_unasked: int = 0   # published, but not sent by the soak (the demo chats' history)

    @property
    def drained(self) -> bool:
        return not self.pending and not self.in_pending

    def to_json(self) -> dict:
        body = dataclasses.asdict(self)
        body["pending"] = [o.text for o in self.pending]
        body["in_pending"] = [i.text for i in self.in_pending]
        body["failed"], body["refused"] = dict(self.failed), dict(self.refused)
        return body


def tally(outs: list[Out], ins: list[In], phone: list[dict], published: list[dict], cutoff: float,
          failed_codes: dict[str, str] | None = None) -> Tally:
    """Count one moment. `failed_codes`: id -> error code of accepted messages the API lists
    as failed (asked only for the missing ones)."""
    t = Tally()
    on_phone = Counter(m["text"] for m in phone)
    asked = set()
    for out in outs:
        asked.add(out.text)
        count = on_phone[out.text]
        if count > 1:
            t.sent_twice.append(f"{out.text!r} (id {out.id}) x{count}")
        if out.outcome == "accepted":
            t.accepted += 1
            if count == 1:
                t.sent_once += 1
            elif count == 0:
                code = (failed_codes or {}).get(out.id or "")
                if code in DOCUMENTED:
                    t.failed[code] += 1
                elif out.settled is not None and out.settled < cutoff:
                    t.lost.append(f"{out.text!r} (id {out.id}, accepted {out.settled:.0f})")
                else:
                    t.pending.append(out)
        elif out.outcome == "refused":
            t.refused[out.code or "?"] += 1
            if count:
                t.sent_unasked.append(f"{out.text!r} went out although the API refused it ({out.code})")
        elif out.outcome == "unknown":
            t.unknown += 1
            t.unknown_sent += count > 0
    for text in on_phone:
        if text not in asked:
            t.sent_unasked.append(f"{text!r} on the phone side, never asked for")
    published_count = Counter(m.get("text") for m in published)
    sent_in = set()
    for inn in ins:
        sent_in.add(inn.text)
        t.in_sent += 1
        count = published_count[inn.text]
        if count == 1:
            t.in_once += 1
        elif count > 1:
            t.in_twice.append(f"{inn.text!r} x{count}")
        elif inn.sent < cutoff:
            t.in_missed.append(repr(inn.text))
        else:
            t.in_pending.append(inn)
    t.in_unasked = sum(n for text, n in published_count.items() if text not in sent_in)
    return t


def message_violations(t: Tally) -> list[str]:
    found = []
    if t.sent_twice:
        found.append(f"{len(t.sent_twice)} message(s) sent twice: {'; '.join(t.sent_twice[:3])}")
    if t.lost:
        found.append(f"{len(t.lost)} accepted message(s) lost (not on the phone after the drain): "
                     f"{'; '.join(t.lost[:3])}")
    if t.sent_unasked:
        found.append(f"{len(t.sent_unasked)} text(s) sent that were never accepted: {'; '.join(t.sent_unasked[:3])}")
    if t.in_twice:
        found.append(f"{len(t.in_twice)} incoming message(s) published twice: {'; '.join(t.in_twice[:3])}")
    if t.in_missed:
        found.append(f"{len(t.in_missed)} incoming message(s) never published: {'; '.join(t.in_missed[:3])}")
    return found


def file_violations(data_dir: Path, client_id: str, wid: str) -> list[str]:
    """The backups, the record: see the module docstring."""
    found = []
    root = data_dir / "backups" / client_id
    try:
        names = sorted(p.name for p in root.iterdir() if NAME_RE.fullmatch(p.name))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            verify(root / name)
        except BackupCorrupt as exc:
            if (root / name).exists():  # pruned meanwhile: not offered any more
                found.append(f"backup {name} is offered but does not verify: {exc}")
    record_path = data_dir / f"session-{client_id}.json"
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        found.append(f"the session record {record_path.name} is gone")
    except ValueError as exc:
        found.append(f"the session record {record_path.name} does not parse: {exc}")
    else:
        if record.get("wid") != wid:
            found.append(f"the session record names {record.get('wid')!r}, not the linked {wid!r}")
    corrupt = sorted(p.name for p in data_dir.glob(f"session-{client_id}.json.corrupt-*"))
    if corrupt:
        found.append(f"the session record was set aside as corrupt: {', '.join(corrupt)}")
    return found
