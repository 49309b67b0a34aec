"""Writes to the database from a background thread, so that it never blocks the session.

Two kinds of work, retried with the one `Backoff` (exponential, capped) until they land:
- clearings (clearings.py), first and every one of them: a clearing that never lands could
  let a cleared login come back on another machine;
- the newest backup only: a newer one supersedes one still waiting, and a clearing drops
  it (one already being stored is deleted by the clearing when that lands after it).

`flush(timeout)` waits until nothing is left; `stop(timeout)` wakes a retry wait at once and
returns within its timeout even while a call hangs in the network (the thread is a daemon).
`status()` never touches the network.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ...backoff import Backoff
from ...states import iso
from ..clearings import Clearing
from .connection import DatabaseUnavailable
from .store import DatabaseStore

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PendingBackup:
    blob: bytes
    manifest: dict[str, Any]
    link: str | None
    taken_at: datetime | None
    login_since: datetime | None


class Uploader:
    """`on_landed(clearings)` is told of every clearing stored (those it added included)."""

    def __init__(self, store: DatabaseStore, on_landed: Callable[[list[Clearing]], object],
                 *, retry_first_s: float = 2.0, retry_max_s: float = 60.0):
        self.store = store
        self.on_landed = on_landed
        self.backoff = Backoff.exponential(retry_first_s, retry_max_s)
        self._cond = threading.Condition()
        self._backup: PendingBackup | None = None
        self._clearings: dict[str, Clearing] = {}
        self._busy = self._stopping = False
        self._next_retry_at: datetime | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker (idempotent; submitting also starts it)."""
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="whatsapp-database-writer", daemon=True)
                self._thread.start()

    def submit_backup(self, blob: bytes, manifest: dict[str, Any], link: str | None,
                      taken_at: datetime | None = None, login_since: datetime | None = None) -> None:
        """Queue a backup and return at once. Raises TypeError if `manifest` is not JSON."""
        manifest = json.loads(json.dumps(manifest))  # a copy; a non-JSON manifest (a bug) fails here
        with self._cond:
            if self._stopping:
                log.warning("backup not queued for the database: stopping")
                return
            if self._backup is not None:
                log.info("a newer backup supersedes the one still waiting to be stored")
            self._backup = PendingBackup(bytes(blob), manifest, link, taken_at, login_since)
            self._cond.notify_all()
        self.start()

    def submit_clearing(self, clearing: Clearing) -> None:
        """Queue a clearing (the pending backup, older, is dropped) and return at once."""
        with self._cond:
            self._clearings[clearing.id] = clearing
            self._backup = None
            self._cond.notify_all()
        self.start()

    def flush(self, timeout: float, *, clearings_only: bool = False) -> bool:
        """Wait until nothing (or no clearing) is left to store; False if `timeout` passed first."""
        def done() -> bool:
            return not self._clearings and not self._busy and (clearings_only or self._backup is None)
        with self._cond:
            return self._cond.wait_for(done, timeout)

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {"backupPending": self._backup is not None, "backupInFlight": self._busy,
                    "backupFailures": self.backoff.attempts, "nextBackupRetryAt": iso(self._next_retry_at),
                    "clearingsPending": len(self._clearings)}

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the worker; True if it ended within `timeout` (a stuck one is left, daemon)."""
        with self._cond:
            self._stopping = True
            thread, left = self._thread, (self._backup is not None, len(self._clearings))
            self._cond.notify_all()
        if left[0]:
            log.warning("stopping with a backup not yet stored in the database")
        if left[1]:
            log.error("stopping with %d clearing(s) not yet stored in the database; kept on disk and "
                      "sent at the next start", left[1])
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("database writer still busy after %.1f s; not waiting longer", timeout)
            return False
        return True

    # -- the worker ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._backup is not None or bool(self._clearings))
                if self._stopping:
                    return
                work: Clearing | PendingBackup
                if self._clearings:
                    work = next(iter(self._clearings.values()))
                else:
                    assert self._backup is not None
                    work, self._backup = self._backup, None
                self._busy = True
            landed = self._store(work)
            with self._cond:
                self._busy = False
                if landed and isinstance(work, Clearing):
                    self._clearings.pop(work.id, None)
                elif not landed and isinstance(work, PendingBackup) and self._backup is None:
                    self._backup = work  # retried, unless superseded or cleared meanwhile
                self._cond.notify_all()
                if landed:
                    continue
                delay = self.backoff.next_delay() or 0.0
                self._next_retry_at = datetime.fromtimestamp(time.time() + delay, UTC)
                log.warning("database write failed (attempt %d); next try in %.1f s", self.backoff.attempts, delay)
                self._cond.wait_for(lambda: self._stopping, delay)  # wakes at once on stop()
                self._next_retry_at = None

    def _store(self, work: Clearing | PendingBackup) -> bool:
        """One write; True when done with it (landed, or dropped as a bug)."""
        try:
            if isinstance(work, Clearing):
                self.store.land(work)
                self.on_landed([dataclasses.replace(work, synced=True)])
            else:
                self.store.put(work.blob, work.manifest, work.link, work.taken_at, work.login_since)
        except DatabaseUnavailable:
            return False  # the store logged why
        except Exception as exc:  # a bug, not the database: retrying cannot help
            log.exception("database write dropped: it failed unexpectedly")
            self.store.db.note(lastError=f"store: {type(exc).__name__}: {exc}")
            return True
        if self.backoff.attempts:
            log.info("database write done after %d failed attempt(s)", self.backoff.attempts)
        self.backoff.reset()
        return True
