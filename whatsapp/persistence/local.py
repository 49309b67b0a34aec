"""The local strategy: verified backups in the data folder, taken on a schedule.

A backup is taken once the session has been ready for `WHATSAPP_BACKUP_DELAY_S` (an earlier
copy often fails to restore, and localStorage reaches disk lazily), then at most every
`WHATSAPP_BACKUP_INTERVAL_S`, and on every clean shutdown; a failed one is tried again after
`BACKUP_RETRY_S`. Backups of a cleared login are never restored: they are deleted instead.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..bus import Bus
from ..config import Config
from ..states import Account
from .backups import BackupError, BackupInfo, LocalBackups, RestoreResult
from .clearings import Clearing, Clearings
from .strategy import LoginHere, Strategy

log = logging.getLogger(__name__)

BACKUP_RETRY_S = 60.0        # a backup that failed (the browser was writing) is tried again after this
LOCAL_STORAGE_FLUSH_S = 6.0  # runtime.md: localStorage lost when killed within ~5 s of a write


class LocalStrategy(Strategy):
    source = "local"

    def __init__(self, config: Config, bus: Bus, backups: LocalBackups, clearings: Clearings):
        self.config = config
        self.bus = bus
        self.backups = backups
        self.clearings = clearings
        self._last_backup_at: float | None = None   # monotonic, this run
        self._last_backup_try: float | None = None
        self._status: dict[str, Any] = {}

    # -- hooks ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.clearings.refresh()
        self._delete_cleared()  # a crash between a clearing and its deletions leaves some
        self._refresh_status()

    def check_owner(self, here: LoginHere) -> None:
        self.clearings.refresh()  # another process on this data folder may have cleared

    def keep_owner(self) -> None:
        self.clearings.refresh()

    def next_restore(self, tried: set[str]) -> str | None:
        for info in self.backups.candidates(skip=tried):
            tried.add(info.name)
            clearing = self.clearings.ending(info.link, info.login_since, info.created)
            if clearing is not None:
                log.warning("not restoring backup %s: its login was cleared at %s (%s); deleting it",
                            info.name, clearing.at, clearing.reason)
                self.backups.delete([info.name])
                continue
            return info.name
        return None

    def on_restored(self, result: RestoreResult) -> None:
        self._refresh_status()

    def on_ready(self, account: Account) -> None:
        self.backups.end_episode()

    def on_clearing(self, clearings: list[Clearing]) -> None:
        count = self.backups.delete_all()
        # The backups are gone: a login linked next in this run is backed up after
        # `backup_delay_s` again, not a whole `backup_interval_s` after the deleted one.
        self._last_backup_at = self._last_backup_try = None
        self._status.pop("lastError", None)
        log.info("deleted %d local backup(s) of the cleared login", count)
        self._refresh_status()

    def status(self) -> dict[str, Any]:
        return {"backups": dict(self._status)}

    # -- the schedule --------------------------------------------------------------------------
    def seconds_to_backup(self, ready_for: float) -> float:
        """Seconds until a backup is due for a session ready for `ready_for` seconds."""
        now = time.monotonic()
        delay = max(self.config.backup_delay_s, LOCAL_STORAGE_FLUSH_S)
        due = now + max(0.0, delay - ready_for)
        if self._last_backup_at is not None:
            due = max(due, self._last_backup_at + self.config.backup_interval_s)
        if self._last_backup_try is not None:
            due = max(due, self._last_backup_try + min(BACKUP_RETRY_S, self.config.backup_interval_s))
        return due - now

    def take_backup(self, profile_dir: Path, account: Account, login_since: datetime | None) -> BackupInfo | None:
        """A backup now (the caller judged it due); None when it failed (tried again later)."""
        self._last_backup_try = time.monotonic()
        try:
            info = self.backups.take(profile_dir, link=account.wid, login_since=login_since)
        except BackupError as exc:
            log.warning("backup not taken (tried again later): %s", exc)
            self._status["lastError"] = str(exc)
            return None
        self._last_backup_at = time.monotonic()
        self._last_backup_try = None
        self.backups.prune()
        self._refresh_status(lastError=None)
        log.info("backup %s: %d bytes in %.2f s", info.name, info.size, info.seconds or 0.0)
        self.bus.publish("backup_created", name=info.name, size=info.size, seconds=round(info.seconds or 0.0, 3))
        return info

    # -- helpers -------------------------------------------------------------------------------
    def _delete_cleared(self) -> None:
        doomed = [b.name for b in self.backups.list_backups()
                  if b.readable and self.clearings.ending(b.link, b.login_since, b.created) is not None]
        if doomed:
            log.warning("deleting %d local backup(s) of a cleared login: %s", len(doomed), ", ".join(doomed))
            self.backups.delete(doomed)

    def _refresh_status(self, **changes: Any) -> None:
        backups = self.backups.list_backups()
        self._status = {**self._status, **changes, "count": len(backups),
                        "latest": backups[0].name if backups else None,
                        "latestSize": backups[0].size if backups else None}
