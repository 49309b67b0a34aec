"""The keeper: what the session calls to keep the login beyond the browser.

It holds the session record, the clearings, and the strategies (strategy.py) in order: the
local backups always, the database when `config.database_url` is set. Each session hook
becomes the same hook on every strategy. All hooks run on the session's owner thread;
`status()`, `expects_login()`, `restore_unresolved()`, `seconds_to_backup()` and
`cleared_elsewhere()` only read values cached by the hooks (they are called constantly).

A cleared login stays cleared: `forget()` and `on_logged_out()` write a clearing to disk
before deleting anything, every strategy then deletes what it keeps (the database in the
background until it lands), and no backup or login that a clearing ends is ever restored
or launched. `cleared_elsewhere()` turns true when a clearing made by another process or
server ends the login this server runs (learnt by `keep_owner()`); the session then runs
the clear-session steps here too.
"""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from ..bus import Bus
from ..config import Config
from ..states import Account, iso, utcnow
from .backups import BackupError, LocalBackups
from .clearings import Clearing, Clearings
from .local import LocalStrategy
from .profile import delete_profile, has_login, stored_login
from .record import RecordFile
from .strategy import DATABASE_SOURCE, LoginHere, Strategy

log = logging.getLogger(__name__)


def strategies_for(config: Config, bus: Bus, record: RecordFile, backups: LocalBackups,
                   clearings: Clearings) -> tuple[LocalStrategy, list[Strategy]]:
    """The local strategy, and every strategy in the order hooks run (the local one first)."""
    local = LocalStrategy(config, bus, backups, clearings)
    chosen: list[Strategy] = [local]
    if config.database_url:
        # Imported only here: psycopg costs ~70 ms, on the way to every launch without a database.
        from .database.strategy import DatabaseStrategy

        chosen.append(DatabaseStrategy(config, backups, clearings, record))
    return local, chosen


class Keeper:
    def __init__(self, config: Config, bus: Bus):
        self.config = config
        self.bus = bus
        self.record = RecordFile(config.record_path)
        self.clearings = Clearings(config.session_dir / f"session-{config.client_id}.clearings.json")
        self.backups = LocalBackups(config.backup_dir, config.client_id, keep=config.backup_keep,
                                    broken_root=config.session_dir / "broken" / config.client_id)
        self.local, self.strategies = strategies_for(config, bus, self.record, self.backups, self.clearings)
        self._sources: dict[str, str] = {}      # backup name -> the strategy that offered it
        self._no_login_here = False             # the last launch found no login on disk
        self._cleared: Clearing | None = None   # a clearing that ends the login running here

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        record = self.record.load()
        if record.previous_run_unclean:
            log.warning("the previous run did not shut down cleanly (no clean-shutdown mark since %s)",
                        record.last_started_at)
        for strategy in self.strategies:
            strategy.start()

    def stop(self, timeout: float) -> None:
        for strategy in reversed(self.strategies):
            strategy.stop(timeout)

    # -- ownership -----------------------------------------------------------------------------
    def check_owner(self) -> None:
        """Before a launch: raises `ProfileLocked` when another server owns the client id."""
        here = LoginHere(present=has_login(self.config.profile_dir),
                         from_database=self.record.current.login_source == DATABASE_SOURCE)
        for strategy in self.strategies:
            strategy.check_owner(here)
        self._judge()

    def keep_owner(self) -> None:
        """While a browser runs (bounded): as `check_owner`, and learns clearings made elsewhere."""
        for strategy in self.strategies:
            strategy.keep_owner()
        self._judge()

    def cleared_elsewhere(self) -> bool:
        """A clearing made by another process or server ends the login running here."""
        return self._cleared is not None

    def _judge(self) -> None:
        clearing = self.clearings.ending(*self._identity(None))
        if clearing is not None and self._cleared is None:
            log.warning("the login here (%s) was cleared elsewhere at %s (%s)",
                        self.record.current.wid, iso(clearing.at), clearing.reason)
        self._cleared = clearing

    # -- launching and restoring -----------------------------------------------------------------
    def on_launch(self) -> None:
        self.record.update(last_started_at=utcnow())

    def expects_login(self) -> bool:
        return self.record.expects_login

    def before_launch(self, profile_dir: Path) -> None:
        """Under the profile lock, before Chromium starts: a login that a clearing ended is
        deleted; a profile with no login gets the newest backup that restores."""
        login = stored_login(profile_dir)
        if login is not None:
            clearing = self.clearings.ending(*self._identity(login.wid))
            if clearing is not None:
                log.warning("the login in the profile was cleared at %s (%s): deleting it",
                            iso(clearing.at), clearing.reason)
                delete_profile(profile_dir)
                self.local.on_clearing([clearing])  # the others learnt it where it came from
                self.record.clear_link(reason=clearing.reason)
                self._cleared, login = None, None
        self._no_login_here = login is None
        if login is not None:
            return
        tried: set[str] = set()
        while (name := self.next_restore(tried)) is not None:
            tried.add(name)
            log.info("the profile holds no login: restoring backup %s before launching", name)
            try:
                self.restore(name, profile_dir)
                return
            except BackupError as exc:
                log.warning("backup %s did not restore: %s", name, exc)

    def _identity(self, wid_here: str | None) -> tuple[str | None, datetime | None]:
        """(link, linked at) of the login here, as far as the record knows it (clearings.py)."""
        record = self.record.current
        since = record.login_since
        if since is None and wid_here in (None, record.wid):
            since = record.linked_at  # a record older than `login_since`, of this same link
        return wid_here or record.wid, since

    def restore_unresolved(self) -> bool:
        """No login here, and a database that may hold a backup could not be asked yet."""
        return self._no_login_here and any(s.restore_unresolved() for s in self.strategies)

    def next_restore(self, tried: set[str]) -> str | None:
        """The newest backup that verifies and was not tried: local first, then the database."""
        for strategy in self.strategies:
            name = strategy.next_restore(tried)
            if name is not None:
                self._sources[name] = strategy.source
                return name
        return None

    def restore(self, name: str, profile_dir: Path) -> None:
        """Put backup `name` into the profile (browser closed); raises `BackupError`."""
        source = self._sources.pop(name, self.local.source)
        result = self.backups.restore(name, profile_dir)
        self.record.increment("restores_from_backup")
        # An older backup does not know when its login was linked: it existed when taken.
        self.record.update(login_since=result.login_since or result.created)
        for strategy in self.strategies:
            strategy.on_restored(result)
        self._no_login_here = False
        self.bus.publish("backup_restored", name=result.name, source=source, seconds=round(result.seconds, 3))

    # -- ready: the record and backups -----------------------------------------------------------
    def on_ready(self, account: Account, linked_now: bool) -> None:
        self.record.mark_ready(account.wid)
        if linked_now:
            self.record.update(login_since=utcnow(), login_source="linked")
        else:
            self.record.increment("restored_without_qr")
        self._no_login_here = False
        for strategy in self.strategies:
            strategy.on_ready(account)

    def seconds_to_backup(self, ready_for: float) -> float:
        return self.local.seconds_to_backup(ready_for)

    def take_backup(self, profile_dir: Path, account: Account) -> None:
        if self._cleared is not None:
            log.info("no backup: the login here was cleared elsewhere")
            return
        info = self.local.take_backup(profile_dir, account, self._identity(account.wid)[1])
        if info is None:
            return
        self.record.update(last_backup_at=utcnow(), last_backup_name=info.name)
        for strategy in self.strategies:
            strategy.after_backup(info)

    def on_clean_shutdown(self, profile_dir: Path, account: Account, ready_for: float) -> None:
        """After the browser closed: a backup from a quiet profile, then the clean-shutdown mark."""
        if ready_for >= self.config.backup_delay_s and has_login(profile_dir):
            self.take_backup(profile_dir, account)
        self.record.update(last_clean_shutdown_at=utcnow())

    # -- ending the login ------------------------------------------------------------------------
    def on_logged_out(self) -> None:
        """The phone removed this device: its backups would be refused anyway; they go."""
        clearings = self._write_clearings(self._links(None), "logged_out")
        self._delete_kept(clearings)
        self.record.clear_link(logged_out=True, reason="logged_out")

    def forget(self, profile_dir: Path, own_profile: bool = True) -> None:
        """disconnect / clear-session: the clearing first, then the profile (left alone when
        another process holds its lock: `own_profile` false), every backup, the link."""
        login = stored_login(profile_dir) if own_profile else None
        clearings = self._write_clearings(self._links(login.wid if login else None), "disconnected")
        if own_profile:
            delete_profile(profile_dir)
        self._delete_kept(clearings)
        self.record.clear_link(reason="disconnected")
        log.info("deleted the saved login (clearing %s)", ", ".join(c.id for c in clearings))

    def _links(self, wid_here: str | None) -> list[str | None]:
        """The links to clear: the record's and the profile's, or one unknown link."""
        links: list[str | None] = [link for link in dict.fromkeys([self.record.current.wid, wid_here]) if link]
        return links or [None]

    def _write_clearings(self, links: list[str | None], reason: str) -> list[Clearing]:
        at = utcnow()
        clearings = [Clearing.new(link, reason, at) for link in links]
        self.clearings.merge(clearings)  # durable (fsynced) before anything is deleted
        self._cleared = None
        self._no_login_here = True
        return clearings

    def _delete_kept(self, clearings: list[Clearing]) -> None:
        for strategy in self.strategies:
            strategy.on_clearing(clearings)

    # -- /status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"record": {**self.record.to_status(),
                                           "clearedElsewhereAt": iso(self._cleared.at) if self._cleared else None}}
        for strategy in self.strategies:
            body.update(strategy.status())
        return body
