"""The lifecycle hooks of one way of keeping the login, in the manner of whatsapp-web.js's
auth strategies (`src/authStrategies/BaseAuthStrategy.js`): every hook does nothing here.

The keeper (keeper.py) calls each hook on every strategy it holds, in order: the local
backups, then the database when one is configured, so adding a place to keep the login is
adding a strategy, never a branch. All hooks run on the session's owner thread except
`status()`, which must only read values the hooks cached (no I/O), and `stop()`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..states import Account
from .backups import BackupInfo, RestoreResult
from .clearings import Clearing

DATABASE_SOURCE = "database"  # a login restored from the database says so in the record


@dataclasses.dataclass(frozen=True)
class LoginHere:
    """What the profile holds as a launch begins."""
    present: bool                 # a login is on disk (profile.stored_login)
    from_database: bool = False   # it was restored from a database backup (record.login_source)


class Strategy:
    """A place the login is kept. Subclasses override the hooks they need."""

    #: Named in the `backup_restored` event and the record's `loginSource`.
    source = "none"

    def start(self) -> None:
        """The server starts (before any launch)."""

    def stop(self, timeout: float) -> None:
        """The server stops; return within `timeout` seconds."""

    def check_owner(self, here: LoginHere) -> None:
        """Before a launch: raise `failures.ProfileLocked` when this server may not drive the
        account now. Clearings made elsewhere are learnt here."""

    def keep_owner(self) -> None:
        """Periodically while a browser runs: as `check_owner`, bounded."""

    def next_restore(self, tried: set[str]) -> str | None:
        """The name of a local backup (fetched into the local store if need be) to restore
        next, not in `tried`; adds what it looked at to `tried`. None: nothing (left) here."""
        return None

    def restore_unresolved(self) -> bool:
        """True while a backup may be kept here that could not be asked for yet."""
        return False

    def on_restored(self, result: RestoreResult) -> None:
        """A backup was restored into the profile."""

    def on_ready(self, account: Account) -> None:
        """The session reached the chat list."""

    def after_backup(self, info: BackupInfo) -> None:
        """A verified local backup was just taken."""

    def on_clearing(self, clearings: list[Clearing]) -> None:
        """The login was ended (the clearings are already durable on disk): delete what is kept."""

    def status(self) -> dict[str, Any]:
        """This strategy's blocks of `/status`; no I/O."""
        return {}
