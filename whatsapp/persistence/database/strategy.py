"""The database strategy: backups in PostgreSQL for hosts whose files vanish (Heroku), one
owner per client id, and clearings shared by every server of that client id.

Ownership rules (the lock is the advisory lock of ownership.py):
- A backup is restored from the database only while this server holds the lock.
- A launch needs the lock, except when the database cannot be asked: a login on disk that
  did not come from the database (it was linked here) still launches, and so does a profile
  with no login (a QR is shown; the database is asked again while it waits); a login that
  came from the database waits for the database, since another server may run it.
- Another server holding the lock is a rival (`ProfileLocked`); this server's own stalled
  connection holding it is not (ownership.py ends it).

Every backup taken locally is sent by the uploader (its own retry schedule); every clearing
is sent first and retried until it lands, and the clearings of the database are merged into
the local file at every ownership check, so that a clearing made on any server reaches all.
"""
from __future__ import annotations

import logging
from typing import Any

from ...config import Config
from ...failures import ProfileLocked
from ...states import Account, iso
from ..backups import BackupCorrupt, BackupInfo, LocalBackups, RestoreResult
from ..clearings import Clearing, Clearings
from ..record import RecordFile
from ..strategy import DATABASE_SOURCE, LoginHere, Strategy
from .connection import Database, DatabaseUnavailable
from .ownership import Check, Ownership
from .store import DatabaseStore
from .uploader import Uploader

log = logging.getLogger(__name__)


class DatabaseStrategy(Strategy):
    source = DATABASE_SOURCE

    def __init__(self, config: Config, backups: LocalBackups, clearings: Clearings, record: RecordFile,
                 *, retry_first_s: float = 2.0, retry_max_s: float = 60.0):
        assert config.database_url is not None
        self.db = Database(config.database_url, config.database_timeout_s)
        self.store = DatabaseStore(self.db, config.client_id, keep=config.backup_keep)
        self.ownership = Ownership(self.db, config.client_id)
        self.clearings = clearings
        self.uploader = Uploader(self.store, clearings.merge, retry_first_s=retry_first_s,
                                 retry_max_s=retry_max_s)
        self.backups = backups
        self.record = record
        self._fetched: set[str] = set()  # local names of the backups unpacked from the database
        self._unresolved = False  # a restore was wanted but the database could not be asked
        log.info("backup database %s (from %s) for client id %r (keep %d, timeout %g s)",
                 self.db.safe_url, config.database_url_source, config.client_id, config.backup_keep,
                 config.database_timeout_s)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.uploader.start()
        for clearing in self.clearings.pending():  # left by the last run, or a crash
            self.uploader.submit_clearing(clearing)

    def stop(self, timeout: float) -> None:
        self.uploader.flush(timeout / 2)  # the clean-shutdown backup and clearings, if the database answers
        self.uploader.stop(timeout=timeout / 2)
        self.ownership.release()

    # -- ownership -----------------------------------------------------------------------------
    def check_owner(self, here: LoginHere) -> None:
        try:
            owned = self.ownership.acquire()
        except DatabaseUnavailable as exc:
            if here.present and here.from_database:
                raise ProfileLocked(f"the database is unreachable and the login here came from it: another "
                                    f"server may be running it; waiting for the database ({exc})") from None
            log.warning("database unreachable, launching without its ownership lock (%s); no backup is "
                        "restored from it until it answers: %s",
                        "the login here was linked here" if here.present else "no login here", exc)
            return
        if not owned:
            raise ProfileLocked(self._held_by("owns"))
        self._learn_clearings()

    def keep_owner(self) -> None:
        state, found = self.ownership.check(self.store.read_clearings)
        if state is Check.OWNED and found is not None:
            self.clearings.merge(found)
        elif state is Check.RIVAL:
            raise ProfileLocked(self._held_by("took over"))

    def _held_by(self, verb: str) -> str:
        holder = self.ownership.status()
        return (f"another server {verb} this session in the database "
                f"(pid {holder.get('holderPid')} at {holder.get('holderAddress')})")

    def _learn_clearings(self) -> None:
        try:
            self.clearings.merge(self.store.clearings())
        except DatabaseUnavailable:
            pass  # learnt at the next ownership check; restores are checked row by row anyway

    # -- restoring -----------------------------------------------------------------------------
    def next_restore(self, tried: set[str]) -> str | None:
        """The newest database backup not tried, unpacked into the local store; only while
        this server owns the client id."""
        try:
            if not self.ownership.owned and not self.ownership.acquire():
                log.warning("not restoring from the database: %s", self._held_by("owns"))
                return None
            self._learn_clearings()
            rows = self.store.newest_blobs()
            for row, blob in rows:
                if f"db-{row.id}" in tried:
                    continue
                tried.add(f"db-{row.id}")
                name = self._unpack(row.id, blob)
                if name is not None:
                    self._unresolved = False
                    self._fetched.add(name)
                    return name
        except DatabaseUnavailable as exc:
            log.warning("database backups not reachable: %s", exc)
            self._unresolved = True
            return None
        self._unresolved = False
        return None

    def _unpack(self, row_id: int, blob: bytes) -> str | None:
        try:
            info = self.backups.unpack(blob)
        except BackupCorrupt as exc:
            log.warning("skipping database backup %s: %s", row_id, exc)
            return None
        clearing = self.clearings.ending(info.link, info.login_since, info.created)
        if clearing is not None:  # the database has not learnt of it yet: it is on its way
            log.warning("not restoring database backup %s: its login was cleared at %s", row_id, clearing.at)
            self.backups.delete([info.name])
            return None
        return info.name

    def on_restored(self, result: RestoreResult) -> None:
        if result.name in self._fetched:
            # It may run elsewhere too: never launched again without the lock (module docstring).
            self.record.update(login_source=self.source)

    def restore_unresolved(self) -> bool:
        return self._unresolved

    def on_ready(self, account: Account) -> None:
        self._unresolved = False

    # -- keeping -------------------------------------------------------------------------------
    def after_backup(self, info: BackupInfo) -> None:
        try:
            blob, manifest = self.backups.pack(info.name)
        except BackupCorrupt as exc:  # changed since it was taken: the next one goes instead
            log.warning("backup not sent to the database: %s", exc)
            return
        self.uploader.submit_backup(blob, manifest.to_json(), manifest.link, manifest.created, manifest.login_since)

    def on_clearing(self, clearings: list[Clearing]) -> None:
        for clearing in clearings:
            self.uploader.submit_clearing(clearing)
        # Usually it lands at once; otherwise it is retried in the background until it does.
        # One timeout at most: disconnect answers within its deadline.
        if not self.uploader.flush(self.db.timeout_s, clearings_only=True):
            log.error("the clearing is not yet in the database (unreachable); kept on disk and retried "
                      "until it lands. Until then a server elsewhere could still restore the login")

    def status(self) -> dict[str, Any]:
        body = {**self.db.health(), **self.ownership.status(), **self.uploader.status(),
                "lastBackupAt": iso(self.store.last_backup_at)}
        return {"database": body}
