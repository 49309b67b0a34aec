"""The session record: one small JSON file per client id beside the Chromium profile.

It says what the product knows about the login independently of the browser: when it was
linked and to which account, when it was last ready, whether the last stop was clean, how
often a restart kept the login, and whether the phone logged it out.

Contract:
- `RecordFile.load()` never raises for the file's content. A missing file is a fresh record;
  a corrupt one (not UTF-8, not JSON, wrong types) is logged with its name, moved aside as
  `<name>.corrupt-<time>` (newest three kept) and replaced by a fresh record; `corrupt_note`
  then says so for /status. I/O errors other than "missing" (permissions) do raise `OSError`.
- Writes are atomic and durable (`files.write_atomic`), mode 0o600.
  A reader sees the old record or the new one, never a mix.
- One `RecordFile` per process (the session holds the profile lock); its methods are
  thread-safe.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..states import iso, utcnow
from .files import write_atomic

log = logging.getLogger(__name__)

FORMAT = 1
_KEEP_CORRUPT = 3

# Field name -> (JSON name, kind). Kinds: "time" (aware datetime or None, ISO with "Z" on disk),
# "text" (str or None), "count" (int >= 0).
_FIELDS: dict[str, tuple[str, str]] = {
    "linked_at": ("linkedAt", "time"),
    "wid": ("wid", "text"),
    "phone": ("phone", "text"),
    "last_started_at": ("lastStartedAt", "time"),
    "last_ready_at": ("lastReadyAt", "time"),
    "last_clean_shutdown_at": ("lastCleanShutdownAt", "time"),
    "restored_without_qr": ("restoredWithoutQr", "count"),
    "restores_from_backup": ("restoresFromBackup", "count"),
    "last_reason": ("lastReason", "text"),
    "logged_out_at": ("loggedOutAt", "time"),
    "last_backup_at": ("lastBackupAt", "time"),
    "last_backup_name": ("lastBackupName", "text"),
    # The login now in the profile exists since then (linked here, or taken in the backup
    # it was restored from): a clearing asked later ends it (clearings.py).
    "login_since": ("loginSince", "time"),
    # "linked" (by a QR here) or "database" (restored from a database backup): a login from
    # the database may run elsewhere too, so it is never launched without the database's lock.
    "login_source": ("loginSource", "text"),
    "updated_at": ("updatedAt", "time"),
}


class RecordCorrupt(ValueError):
    """The record file's content is unusable; `str()` names the problem (internal to load)."""


_now = utcnow


def _iso(moment: datetime | None) -> str | None:
    return iso(moment, "milliseconds")


def phone_of(wid: str | None) -> str | None:
    """The phone number of a WhatsApp id: "15550001111:3@c.us" -> "15550001111"."""
    if not wid:
        return None
    digits = wid.split("@", 1)[0].split(":", 1)[0]
    return digits or None


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    """An immutable view of the record file. Times are aware UTC datetimes."""

    linked_at: datetime | None = None
    wid: str | None = None
    phone: str | None = None
    last_started_at: datetime | None = None
    last_ready_at: datetime | None = None
    last_clean_shutdown_at: datetime | None = None
    restored_without_qr: int = 0
    restores_from_backup: int = 0
    last_reason: str | None = None
    logged_out_at: datetime | None = None
    last_backup_at: datetime | None = None
    last_backup_name: str | None = None
    login_since: datetime | None = None
    login_source: str | None = None
    updated_at: datetime | None = None

    @property
    def expects_login(self) -> bool:
        """This client id was linked and no phone logout was seen since."""
        if self.linked_at is None:
            return False
        return self.logged_out_at is None or self.logged_out_at < self.linked_at

    @property
    def previous_run_unclean(self) -> bool:
        """A run started and did not record a clean shutdown (Chromium's own flag is unreliable)."""
        if self.last_started_at is None:
            return False
        return self.last_clean_shutdown_at is None or self.last_clean_shutdown_at < self.last_started_at

    def to_json(self) -> dict:
        body: dict[str, Any] = {"format": FORMAT}
        for field, (key, kind) in _FIELDS.items():
            value = getattr(self, field)
            body[key] = _iso(value) if kind == "time" else value
        return body

    @classmethod
    def from_json(cls, body: object) -> SessionRecord:
        """Build from parsed JSON; raises `RecordCorrupt` naming the first bad field.

        Unknown keys are ignored (a newer writer may add some); missing ones take defaults.
        """
        if not isinstance(body, dict):
            raise RecordCorrupt("not a JSON object")
        if body.get("format", FORMAT) != FORMAT:
            raise RecordCorrupt(f"unknown format {body.get('format')!r}")
        values = {}
        for field, (key, kind) in _FIELDS.items():
            if key in body:
                values[field] = _parse(key, kind, body[key])
        return cls(**values)


def _parse(key: str, kind: str, value: object):
    if kind == "count":
        # bool is an int subclass: `true` is not a count.
        if type(value) is not int or value < 0:
            raise RecordCorrupt(f"{key} must be a whole number >= 0")
        return value
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordCorrupt(f"{key} must be a string or null")
    if kind == "text":
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordCorrupt(f"{key} is not an ISO time") from None
    # A naive time can only come from a hand edit; read it as UTC rather than reject it.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_change(field: str, value: object) -> None:
    """Programming errors in `update()` calls raise at once, before anything is written."""
    if field not in _FIELDS:
        raise TypeError(f"unknown record field {field!r}")
    kind = _FIELDS[field][1]
    ok = {
        "count": type(value) is int and value >= 0,
        "text": value is None or isinstance(value, str),
        "time": value is None or (isinstance(value, datetime) and value.tzinfo is not None),
    }[kind]
    if not ok:
        raise TypeError(f"bad value for record field {field}: {value!r}")


class RecordFile:
    """The record at `path` (Config.record_path). See the module docstring for the contract."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _now):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._current: SessionRecord | None = None
        self._corrupt_note: str | None = None

    @property
    def corrupt_note(self) -> str | None:
        """Set once a load found the file corrupt, e.g. "session-x.json was corrupt and was rebuilt"."""
        return self._corrupt_note

    @property
    def current(self) -> SessionRecord:
        """The last record loaded or written by this object (loaded on first use)."""
        return self._current if self._current is not None else self.load()

    @property
    def expects_login(self) -> bool:
        return self.current.expects_login

    def load(self) -> SessionRecord:
        with self._lock:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                record = SessionRecord()
            else:
                try:
                    record = SessionRecord.from_json(json.loads(raw.decode("utf-8")))
                except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                    # ValueError covers JSONDecodeError, RecordCorrupt and over-long integers;
                    # RecursionError a deeply nested document.
                    record = self._set_aside(exc)
            self._current = record
            return record

    def update(self, **changes) -> SessionRecord:
        """Load, apply `changes` (field names of `SessionRecord`), write atomically, return it.

        Raises `TypeError` for an unknown field or a value of the wrong type, `OSError` when
        the write fails (the old file is then untouched).
        """
        for field, value in changes.items():
            _check_change(field, value)
        with self._lock:
            record = dataclasses.replace(self.load(), **changes, updated_at=self._clock())
            self._write(record)
            self._current = record
            return record

    def increment(self, field: str) -> SessionRecord:
        """Add one to a counter field (`restored_without_qr`, `restores_from_backup`)."""
        if _FIELDS.get(field, ("", ""))[1] != "count":
            raise TypeError(f"{field!r} is not a counter")
        with self._lock:
            return self.update(**{field: getattr(self.load(), field) + 1})

    def mark_ready(self, wid: str | None) -> SessionRecord:
        """Note a `ready` session; a new or different account also sets `linked_at`."""
        now = self._clock()
        with self._lock:
            record = self.load()
            changes: dict[str, Any] = {"last_ready_at": now}
            if wid and (wid != record.wid or record.linked_at is None):
                changes.update(linked_at=now, wid=wid, phone=phone_of(wid))
            return self.update(**changes)

    def clear_link(self, *, logged_out: bool = False, reason: str | None = None) -> SessionRecord:
        """Forget the link (disconnect, clear-session, phone logout); counters are kept.

        `logged_out=True` records that the phone ended the login (sets `logged_out_at`).
        """
        changes: dict[str, Any] = {"linked_at": None, "wid": None, "phone": None, "login_since": None,
                                   "login_source": None}
        if logged_out:
            changes["logged_out_at"] = self._clock()
        if reason is not None:
            changes["last_reason"] = reason
        return self.update(**changes)

    def to_status(self) -> dict:
        """The useful parts for /status (from memory: no disk access once loaded)."""
        record = self.current
        body = record.to_json()
        for key in ("format", "updatedAt"):
            body.pop(key)
        body["expectsLogin"] = record.expects_login
        body["recordNote"] = self._corrupt_note
        return body

    def _set_aside(self, problem: Exception) -> SessionRecord:
        stamp = self._clock().strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            kept = f"kept as {aside.name}"
        except OSError as exc:
            kept = f"could not be moved aside ({exc})"
        log.warning("session record %s was corrupt (%s); %s; starting a fresh record",
                    self.path, problem, kept)
        self._corrupt_note = f"{self.path.name} was corrupt and was rebuilt ({kept})"
        old = sorted(self.path.parent.glob(f"{self.path.name}.corrupt-*"), reverse=True)
        for path in old[_KEEP_CORRUPT:]:
            path.unlink(missing_ok=True)
        return SessionRecord()

    def _write(self, record: SessionRecord) -> None:
        write_atomic(self.path, (json.dumps(record.to_json(), indent=2) + "\n").encode())
