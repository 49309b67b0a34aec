"""Clearings: the durable memory that a login was ended (disconnect, clear-session, a phone
logout), so that no backup ever brings it back.

A `Clearing` is written BEFORE anything is deleted (a crash half-way then still leaves it)
to `<dir>/session-<id>.clearings.json`, and with a database also to its clearings table
(retried in the background until it lands; `synced` says it has).

A login is known by when it was linked (`login_since`, kept in the record and in every
backup's manifest), so a clearing at time `at` (the asking server's clock) ends every login
linked before it, and every backup of such a login, whenever that backup was taken: a server
that kept running the login must not save it again, and the server asked need not know which
link another server runs. A login linked after the clearing (a QR scanned later) is
untouched. A backup or login whose link time is unknown (taken before `loginSince` existed)
is ended when it was taken before the clearing, or when its link is the clearing's `link`.

`Clearings` is the local file. It is shared with other processes on this data folder (a
second server answering clear-session while the first drives the browser): read-modify-write
runs under an flock of the folder, and `refresh()` picks up another process's changes.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..states import iso, utcnow
from .files import private_dir, write_atomic

log = logging.getLogger(__name__)

FORMAT = 1
KEEP = 100  # the newest: an older clearing's time is covered by a newer one's


@dataclasses.dataclass(frozen=True)
class Clearing:
    id: str                 # random: the same clearing stored twice is one
    at: datetime            # when it was asked
    link: str | None        # the link it ended, when known
    reason: str             # "disconnected", "cleared", "logged_out"
    synced: bool = False    # stored in the database

    @classmethod
    def new(cls, link: str | None, reason: str, at: datetime | None = None) -> Clearing:
        return cls(secrets.token_hex(8), at or utcnow(), link, reason)

    def ends(self, link: str | None, since: datetime | None, taken: datetime | None = None) -> bool:
        """Does this clearing end a login of `link` linked at `since` (or a backup of it
        taken at `taken`)? See the module docstring."""
        if since is not None:
            return since <= self.at
        return (self.link is not None and link == self.link) or (taken is not None and taken <= self.at)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": iso(self.at, "milliseconds"), "link": self.link,
                "reason": self.reason, "synced": self.synced}

    @classmethod
    def from_json(cls, body: Any) -> Clearing:
        """Raises ValueError (or KeyError/TypeError) for a malformed entry."""
        at = datetime.fromisoformat(body["at"])
        link = body.get("link")
        if not isinstance(body["id"], str) or at.tzinfo is None or not (link is None or isinstance(link, str)):
            raise ValueError("bad clearing")
        return cls(body["id"], at, link, str(body.get("reason") or "cleared"), bool(body.get("synced")))


def first_ending(clearings: Iterable[Clearing], link: str | None, since: datetime | None,
                 taken: datetime | None = None) -> Clearing | None:
    """The first of `clearings` that ends (link, since, taken), or None."""
    return next((c for c in clearings if c.ends(link, since, taken)), None)


class Clearings:
    """The clearings file at `path`; thread-safe, shared with other processes (docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._items: dict[str, Clearing] = {}
        self._seen: tuple[int, int] | None = None  # (mtime_ns, inode) of the file last read

    def all(self) -> list[Clearing]:
        with self._lock:
            return sorted(self._items.values(), key=lambda c: c.at, reverse=True)

    def pending(self) -> list[Clearing]:
        """Clearings not yet stored in the database, oldest first."""
        return [c for c in reversed(self.all()) if not c.synced]

    def ending(self, link: str | None, since: datetime | None, taken: datetime | None = None) -> Clearing | None:
        return first_ending(self.all(), link, since, taken)

    def refresh(self) -> bool:
        """Re-read the file when another process changed it; True when it did. Cheap: a stat."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        if (stat.st_mtime_ns, stat.st_ino) == self._seen:
            return False
        with self._lock, self._folder_lock():
            before = set(self._items)
            self._load_locked()
            return set(self._items) != before

    def add(self, clearing: Clearing) -> None:
        """Store one clearing durably (fsynced) before this returns."""
        self.merge([clearing])

    def merge(self, clearings: Iterable[Clearing]) -> list[Clearing]:
        """Add clearings (from the database, or new); returns those that were new here. A
        clearing known both ways is `synced` if either copy says so."""
        incoming = list(clearings)
        with self._lock, self._folder_lock():
            self._load_locked()
            new = [c for c in incoming if c.id not in self._items]
            changed = bool(new)
            for clearing in incoming:
                known = self._items.get(clearing.id)
                if known is None or (clearing.synced and not known.synced):
                    self._items[clearing.id] = dataclasses.replace(
                        clearing, synced=clearing.synced or bool(known and known.synced))
                    changed = True
            if changed:
                self._write_locked()
            return new

    def mark_synced(self, ids: Iterable[str]) -> None:
        with self._lock, self._folder_lock():
            self._load_locked()
            wanted = [i for i in ids if i in self._items and not self._items[i].synced]
            for clearing_id in wanted:
                self._items[clearing_id] = dataclasses.replace(self._items[clearing_id], synced=True)
            if wanted:
                self._write_locked()

    # -- the file ------------------------------------------------------------------------
    @contextmanager
    def _folder_lock(self) -> Iterator[None]:
        # flock of the folder: the file itself is replaced on every write, so its own
        # inode cannot carry a lock across the replace.
        folder = private_dir(self.path.parent)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load_locked(self) -> None:
        try:
            stat = os.stat(self.path)
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            body = json.loads(raw.decode("utf-8"))
            if not isinstance(body, dict) or body.get("format") != FORMAT:
                raise ValueError("not a format-1 clearings file")
            loaded = [Clearing.from_json(item) for item in body["clearings"]]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            # Only a hand edit gets here (writes are atomic). What it held is unknown: keep
            # what this process knew, set the file aside, and say so loudly.
            aside = self.path.with_name(f"{self.path.name}.corrupt")
            os.replace(self.path, aside)
            log.error("clearings file %s is corrupt (%s); kept as %s", self.path, exc, aside.name)
            return
        for clearing in loaded:
            known = self._items.get(clearing.id)
            self._items[clearing.id] = clearing if known is None else dataclasses.replace(
                clearing, synced=clearing.synced or known.synced)
        self._seen = (stat.st_mtime_ns, stat.st_ino)

    def _write_locked(self) -> None:
        newest = sorted(self._items.values(), key=lambda c: c.at, reverse=True)
        # Dropping old ones is safe only once they are in the database (or never will be
        # needed there: the newer ones cover their time).
        kept = newest[:KEEP] + [c for c in newest[KEEP:] if not c.synced]
        self._items = {c.id: c for c in kept}
        body = {"format": FORMAT, "clearings": [c.to_json() for c in kept]}
        write_atomic(self.path, (json.dumps(body, indent=1) + "\n").encode())
        stat = os.stat(self.path)
        self._seen = (stat.st_mtime_ns, stat.st_ino)
