"""Keeping the login beyond the browser: the session record, verified backups, and their
copy in PostgreSQL when `WHATSAPP_BACKUP_DATABASE_URL` is set.

Like whatsapp-web.js's auth strategies, the session calls lifecycle hooks (before launch,
on ready, on logout, on shutdown...) and this class decides what to keep. All hooks run on
the session's owner thread; `status()` only reads values cached by them.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from . import backups as backups_mod
from . import archive
from .backups import BackupCorrupt, BackupError, BackupStore
from ..bus import Bus
from ..config import Config
from ..failures import ProfileLocked
from .record import RecordFile
from ..states import Account, utcnow
from .profile import delete_profile, has_login

log = logging.getLogger(__name__)

BACKUP_RETRY_S = 60.0
LOCAL_STORAGE_FLUSH_S = 6.0  # see seconds_to_backup  # a backup that failed (the browser was writing) is tried again after this


class Keeper:
    def __init__(self, config: Config, bus: Bus):
        self.config = config
        self.bus = bus
        self.record = RecordFile(config.record_path)
        self.backups = BackupStore.for_config(config)
        self.remote = None  # RemoteBackups, with a database
        if config.database_url:
            from .remote import RemoteBackups, RemoteStore

            self.remote = RemoteBackups(RemoteStore(config.database_url, config.client_id,
                                                    keep=config.backup_keep,
                                                    timeout_s=config.database_timeout_s))
        self._last_backup_at: float | None = None   # monotonic, this run
        self._last_backup_try: float | None = None
        self._backup_status: dict = {}
        self._sources: dict[str, str] = {}  # backup name -> "database" when it came from there

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        record = self.record.load()
        if record.previous_run_unclean:
            log.warning("the previous run did not shut down cleanly (no clean-shutdown mark since %s)",
                        record.last_started_at)
        self._refresh_backup_status()
        if self.remote is not None:
            self.remote.start()

    def stop(self, timeout: float) -> None:
        if self.remote is not None:
            self.remote.flush(timeout / 2)  # the clean-shutdown backup, if the database answers
            self.remote.stop(timeout=timeout / 2)
            self.remote.store.release_owner()

    def check_owner(self) -> None:
        """With a database: only the server holding its advisory lock drives this client id.

        A database that does not answer never blocks the start: the profile's own lock still
        keeps one browser per machine, and ownership is checked again at the next launch.
        """
        if self.remote is None:
            return
        from .remote import RemoteUnavailable

        store = self.remote.store
        try:
            owner = store.acquire_owner()
        except RemoteUnavailable as exc:
            log.warning("database unreachable, starting without its ownership lock: %s", exc)
            return
        if not owner:
            holder = store.owner_status()
            raise ProfileLocked(f"another server owns this session in the database "
                                f"(pid {holder.get('holderPid')} at {holder.get('holderAddress')})")

    def keep_owner(self) -> None:
        """While the session runs: is the database's owner lock still ours? (bounded)

        The lock dies with its connection (a database restart): take it back, or raise
        `ProfileLocked` when another server took it meanwhile. An unreachable database
        never stops the session.
        """
        if self.remote is None:
            return
        store = self.remote.store
        # A lost connection is noticed by one call and the lock retaken by the next.
        if store.check_owner() or store.check_owner():
            return
        holder = store.owner_status()
        if holder.get("database") == "ok" and holder.get("holderPid") is not None:
            raise ProfileLocked(f"another server took this session over in the database "
                                f"(pid {holder.get('holderPid')} at {holder.get('holderAddress')})")

    def on_launch(self) -> None:
        self.record.update(last_started_at=utcnow())

    def expects_login(self) -> bool:
        return self.record.expects_login

    def restore_unresolved(self) -> bool:
        """No login here, and the database that may hold one could not be asked yet."""
        return False

    # -- restoring -----------------------------------------------------------------------------
    def before_launch(self, profile_dir: Path) -> None:
        """A profile with no login (a fresh machine): restore the newest verified backup."""
        if has_login(profile_dir):
            return
        name = self.next_restore(set())
        if name is not None:
            log.info("the profile holds no login: restoring backup %s before launching", name)
            self.restore(name, profile_dir)

    def next_restore(self, tried: set[str]) -> str | None:
        """The newest backup that verifies and was not tried yet: local first, then the database."""
        for info in self.backups.candidates(skip=tried):
            return info.name
        if self.remote is None:
            return None
        from .remote import RemoteUnavailable

        try:
            for row_id, created, _manifest, blob in self.remote.store.newest_blobs():
                if f"db-{row_id}" in tried:
                    continue
                tried.add(f"db-{row_id}")
                try:
                    info = self.backups.unpack(blob)
                except BackupCorrupt as exc:
                    log.warning("skipping database backup %s of %s: %s", row_id, created, exc)
                    continue
                self._sources[info.name] = "database"
                return info.name
        except RemoteUnavailable as exc:
            log.warning("database backups not reachable: %s", exc)
        return None

    def restore(self, name: str, profile_dir: Path) -> None:
        source = self._sources.pop(name, "local")
        result = self.backups.restore(name, profile_dir)
        self.record.increment("restores_from_backup")
        self._refresh_backup_status()
        self.bus.publish("backup_restored", name=result.name, source=source, seconds=round(result.seconds, 3))

    # -- on ready: the record and backups --------------------------------------------------------
    def on_ready(self, account: Account, linked_now: bool) -> None:
        self.record.mark_ready(account.wid)
        if not linked_now:
            self.record.increment("restored_without_qr")

    def seconds_to_backup(self, ready_for: float) -> float:
        """Seconds until `backup_due` turns true for a session ready for `ready_for` seconds."""
        now = time.monotonic()
        # runtime.md: localStorage reaches disk lazily (lost when killed within ~5 s of a
        # write): a running browser's copy taken sooner may lack last-wid-md.
        delay = max(self.config.backup_delay_s, LOCAL_STORAGE_FLUSH_S)
        due = now + max(0.0, delay - ready_for)
        if self._last_backup_at is not None:
            due = max(due, self._last_backup_at + self.config.backup_interval_s)
        if self._last_backup_try is not None:
            due = max(due, self._last_backup_try + min(BACKUP_RETRY_S, self.config.backup_interval_s))
        return due - now

    def backup_due(self, ready_for: float) -> bool:
        # whatsapp-web.md: a copy taken in the first minute after ready often fails to restore.
        return self.seconds_to_backup(ready_for) <= 0

    def take_backup(self, profile_dir: Path, account: Account) -> None:
        self._last_backup_try = time.monotonic()
        try:
            info = self.backups.take(profile_dir, link=account.wid)
        except BackupError as exc:
            log.warning("backup not taken (tried again later): %s", exc)
            self._backup_status["lastError"] = str(exc)
            return
        self._last_backup_at = time.monotonic()
        self._last_backup_try = None
        self.backups.prune()
        self.record.update(last_backup_at=utcnow(), last_backup_name=info.name)
        self._refresh_backup_status(last_error=None)
        log.info("backup %s: %d bytes in %.2f s", info.name, info.size, info.seconds or 0.0)
        self.bus.publish("backup_created", name=info.name, size=info.size, seconds=round(info.seconds or 0.0, 3))
        if self.remote is not None:
            self.remote.submit_backup(archive.pack(info), backups_mod.read_manifest(info.path).to_json(),
                                      account.wid)

    # -- ending the login ----------------------------------------------------------------------
    def on_logged_out(self) -> None:
        """The phone removed this device: its backups would be refused anyway; delete them."""
        count = self.backups.delete_all()
        self._reset_backup_schedule()
        self.record.clear_link(logged_out=True, reason="logged_out")
        self._delete_remote()
        log.info("deleted %d backups of the logged-out link", count)
        self._refresh_backup_status()

    def forget(self, profile_dir: Path) -> None:
        """disconnect / clear-session: the profile, the link and every backup of it go."""
        delete_profile(profile_dir)
        count = self.backups.delete_all()
        self._reset_backup_schedule()
        self.record.clear_link(reason="disconnected")
        self._delete_remote()
        log.info("deleted the saved login and %d backups", count)
        self._refresh_backup_status()

    def _reset_backup_schedule(self) -> None:
        # The backups are gone: a login linked next in this run is backed up after
        # `backup_delay_s` again, not a whole `backup_interval_s` after the deleted one.
        self._last_backup_at = self._last_backup_try = None
        self._backup_status.pop("lastError", None)

    def on_clean_shutdown(self, profile_dir: Path, account: Account, ready_for: float) -> None:
        """After the browser closed: a backup from a quiet profile, then the clean-shutdown mark."""
        if ready_for >= self.config.backup_delay_s and has_login(profile_dir):
            self.take_backup(profile_dir, account)
        self.record.update(last_clean_shutdown_at=utcnow())

    def _delete_remote(self) -> None:
        if self.remote is None:
            return
        from .remote import RemoteUnavailable

        try:
            count = self.remote.delete_all()
            log.info("deleted %d database backups of this client id", count)
        except RemoteUnavailable as exc:
            log.error("database backups NOT deleted (database unreachable): %s", exc)
            self._backup_status["databaseDeleteError"] = str(exc)

    # -- /status -------------------------------------------------------------------------------
    def status(self) -> dict:
        body = {"record": self.record.to_status(), "backups": dict(self._backup_status)}
        if self.remote is not None:
            body["database"] = self.remote.status()
        return body

    def _refresh_backup_status(self, **changes) -> None:
        backups = self.backups.list_backups()
        status = {**self._backup_status, **changes, "count": len(backups),
                  "latest": backups[0].name if backups else None,
                  "latestSize": backups[0].size if backups else None}
        self._backup_status = status
