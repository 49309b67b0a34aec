"""Verified backups of the login on this machine (`<dir>/backups/<id>/`), and restoring them.

Contract:
- `take()` copies `LOGIN_PARTS` of a quiet profile into `<root>/.tmp-<random>/`, writes the
  manifest and renames the folder into place, so a reader sees all of a backup or none. It
  raises `BackupError` (leaving nothing behind) when a required part is missing, or when any
  file changed, appeared or vanished between the start of the copy and its end: every
  file's signature is checked again once all are copied, so a browser that was writing
  never yields a backup. The copy must hold the login itself (`stored_login`: both
  markers): Chromium can lose what it could not write (a full disk) while the
  page, logged in from memory, looks fine; such a copy would only bring back a QR and, kept,
  push a good backup out.
- `restore()` verifies, stages a copy inside the profile folder and checks its hashes, and
  only then moves the profile's login parts aside to `<broken>/<time>-<random>/` and renames
  the staged parts into place. Nothing outside `LOGIN_PARTS`/`COMPANIONS` is touched.
- The replaced parts go to `broken/` (broken.py), which keeps the original login parts.
- `prune()` never deletes the newest backup that verifies, and unreadable backups do not
  count towards the number kept.
- One `LocalBackups` per root in one process (the session holds the profile lock); its
  methods are thread-safe.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from ..states import utcnow
from . import archive
from .broken import BrokenParts
from .files import copy_file, fsync_dir, hash_file, private_dir, remove_tree, signature, write_new
from .manifest import (
    MANIFEST,
    NAME_RE,
    BackupCorrupt,
    BackupError,
    FileEntry,
    Manifest,
    created_from_name,
    new_name,
    verify,
)
from .profile import LOGIN_PARTS, REQUIRED_PARTS, login_files, stored_login

__all__ = ["BackupCorrupt", "BackupError", "BackupInfo", "LocalBackups", "RestoreResult", "describe"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BackupInfo:
    """A backup folder as listed (manifest read, files not hashed)."""

    name: str
    path: Path
    created: datetime
    link: str | None = None
    login_since: datetime | None = None  # when the login in it was linked (None: not known)
    size: int = 0          # bytes of the copied files plus the manifest
    file_count: int = 0
    seconds: float | None = None   # time `take()` needed; None when listed
    readable: bool = True          # False: the manifest could not be read


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    name: str
    profile_dir: Path
    link: str | None           # the account (wid) the restored login belongs to
    login_since: datetime | None  # when that login was linked (None: an older backup)
    created: datetime          # when the restored backup was taken
    moved_aside: Path | None   # where the replaced login parts went (None: there were none)
    file_count: int
    size: int
    seconds: float


def describe(path: Path, seconds: float | None = None) -> BackupInfo:
    """A backup folder from its manifest, without hashing its files."""
    created = created_from_name(path.name)
    try:
        raw = (path / MANIFEST).read_bytes()
        manifest = Manifest.parse(path.name, raw)
    except (OSError, BackupCorrupt):
        return BackupInfo(path.name, path, created, readable=False)
    size = manifest.total_size + len(raw)
    return BackupInfo(path.name, path, manifest.created, manifest.link, manifest.login_since, size,
                      len(manifest.files), seconds)


class LocalBackups:
    """The backups of one client id in `root` (Config.backup_dir). See the module docstring."""

    def __init__(self, root: Path, client_id: str, keep: int = 3, max_age_days: float = 7,
                 *, broken_root: Path | None = None, clock: Callable[[], datetime] = utcnow):
        self.root = Path(root)
        self.client_id = client_id
        self.keep = keep
        self.max_age_days = max_age_days
        # Default matches Config: <session_dir>/backups/<id> -> <session_dir>/broken/<id>.
        self.broken_root = Path(broken_root) if broken_root else self.root.parent.parent / "broken" / client_id
        self.broken = BrokenParts(self.broken_root, clock)
        self._clock = clock
        self._lock = threading.RLock()
        self._swept = False

    # -- reading --------------------------------------------------------------------------

    def list_backups(self) -> list[BackupInfo]:
        """Every backup folder, newest first (unreadable ones included, `readable=False`)."""
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        found = [describe(path) for path in entries
                 if NAME_RE.fullmatch(path.name) and path.is_dir() and not path.is_symlink()]
        return sorted(found, key=lambda info: info.name, reverse=True)

    def candidates(self, skip: Iterable[str] = ()) -> Iterator[BackupInfo]:
        """Backups that verify, newest first, verified lazily; corrupt ones are logged and skipped."""
        skipped = set(skip)
        for info in self.list_backups():
            if info.name in skipped:
                continue
            try:
                verify(info.path)
            except BackupCorrupt as exc:
                log.warning("skipping backup: %s", exc)
                continue
            yield info

    # -- taking ---------------------------------------------------------------------------

    def take(self, profile_dir: Path, *, link: str | None = None, login_since: datetime | None = None) -> BackupInfo:
        """Copy the login parts of a quiet profile into a new backup; returns its info."""
        started = time.monotonic()
        profile_dir = Path(profile_dir)
        with self._lock:
            self._sweep()
            files = login_files(profile_dir)
            for part in REQUIRED_PARTS:
                if not any(rel.startswith(part + "/") for rel in files):
                    raise BackupError(f"nothing to back up: {profile_dir / part} is missing or empty")
            temp = self.root / f".tmp-{secrets.token_hex(4)}"
            try:
                private_dir(temp)
                copied = [self._copy_checked(profile_dir, rel, temp) for rel in files]
                # A file copied early may have been written while later ones were copied.
                if login_files(profile_dir) != files:
                    raise BackupError("the login files changed while they were copied")
                for entry, before in copied:
                    if _signature_or_none(profile_dir / entry.path) != before:
                        raise BackupError(f"{entry.path} changed while the backup was taken")
                _check_login(temp)
                created = self._clock()
                manifest = Manifest(self.client_id, created, link, tuple(entry for entry, _ in copied), login_since)
                write_new(temp / MANIFEST, manifest.encode())
                for folder, _, _ in os.walk(temp, topdown=False):
                    fsync_dir(Path(folder))
                final = self.root / new_name(created)
                os.rename(temp, final)
            except BaseException as exc:
                remove_tree(temp)
                if isinstance(exc, OSError):
                    raise BackupError(f"backup failed: {exc}") from exc
                raise
            fsync_dir(self.root)  # makes the rename durable
        info = describe(final, seconds=time.monotonic() - started)
        log.info("backup %s taken: %d files, %d bytes, %.1f s", info.name, info.file_count,
                 info.size, info.seconds or 0.0)
        return info

    def _copy_checked(self, profile_dir: Path, rel: str, temp: Path) -> tuple[FileEntry, tuple[int, int, int]]:
        src, dst = profile_dir / rel, temp / rel
        private_dir(dst.parent)
        try:
            before = signature(src)
            size, digest = copy_file(src, dst)
            after = signature(src)
        except FileNotFoundError:
            raise BackupError(f"{rel} vanished while it was copied") from None
        if before != after or size != before[0]:
            raise BackupError(f"{rel} changed while it was copied")
        return FileEntry(rel, size, digest), before

    # -- restoring ------------------------------------------------------------------------

    def restore(self, backup: BackupInfo | Path | str, profile_dir: Path) -> RestoreResult:
        """Put a backup's login parts into `profile_dir` (created 0o700 if missing).

        The browser must be stopped. Raises `BackupCorrupt` if the backup does not verify,
        `BackupError` on an I/O error; before the swap the profile is then untouched, after
        it (a rename failing) the profile may hold part of the backup, and its old login
        parts are still in `moved_aside`: restoring another backup replaces them cleanly.
        """
        started = time.monotonic()
        path = self._path_of(backup)
        profile_dir = Path(profile_dir)
        with self._lock:
            manifest = verify(path)
            staging = profile_dir / f".restore-{secrets.token_hex(4)}"
            try:
                private_dir(profile_dir)
                for stale in profile_dir.glob(".restore-*"):  # left by a crash mid-restore
                    remove_tree(stale)
                private_dir(staging)
                for entry in manifest.files:
                    private_dir((staging / entry.path).parent)
                    if copy_file(path / entry.path, staging / entry.path) != (entry.size, entry.sha256):
                        raise BackupCorrupt(path.name, f"{entry.path} changed while it was restored")
                for entry in manifest.files:  # what was written, read back
                    if hash_file(staging / entry.path) != (entry.size, entry.sha256):
                        raise BackupError(f"restored copy of {entry.path} does not match the backup")
                moved = self.broken.move_aside(profile_dir)
                for part in LOGIN_PARTS:
                    if os.path.lexists(staging / part):
                        private_dir((profile_dir / part).parent)
                        os.rename(staging / part, profile_dir / part)
                for folder in (profile_dir, profile_dir / "Default", profile_dir / "Default/Network"):
                    if folder.is_dir():  # make the renames durable
                        fsync_dir(folder)
            except OSError as exc:
                raise BackupError(f"restore of {path.name} failed: {exc}") from exc
            finally:
                remove_tree(staging)
        result = RestoreResult(path.name, profile_dir, manifest.link, manifest.login_since, manifest.created, moved,
                               len(manifest.files), manifest.total_size, time.monotonic() - started)
        log.info("restored backup %s into %s (%d files); old login parts in %s",
                 result.name, profile_dir, result.file_count, moved)
        return result

    def end_episode(self) -> None:
        """The session was ready: the next restore starts a new episode of `broken/`."""
        self.broken.end_episode()

    # -- removing -------------------------------------------------------------------------

    def prune(self, keep: int | None = None, max_age_days: float | None = None) -> list[str]:
        """Keep the newest `keep` backups that verify; of those, drop any older than
        `max_age_days` except the newest one. Backups that do not verify never count, and
        go once a newer one verifies. Returns the names deleted."""
        keep = max(self.keep if keep is None else keep, 1)
        max_age = timedelta(days=self.max_age_days if max_age_days is None else max_age_days)
        now = self._clock()
        with self._lock:
            self._sweep()
            good, bad = [], []
            for info in self.list_backups():
                try:
                    verify(info.path)
                    good.append(info)
                except BackupCorrupt as problem:
                    bad.append((info, problem))
            kept = good[:1] + [b for b in good[1:keep] if now - b.created <= max_age]
            doomed = [b for b in good if b not in kept]
            if good:  # unusable ones older than a sound backup are of no use to anyone
                for info, why in bad:
                    if info.name < good[0].name:
                        log.warning("deleting unusable %s", why)
                        doomed.append(info)
            for info in doomed:
                self._delete(info.path)
        return [info.name for info in doomed]

    def delete(self, names: Iterable[str]) -> int:
        """Delete the named backups; returns how many were there."""
        with self._lock:
            paths = [self.root / name for name in names if NAME_RE.fullmatch(name)]
            return sum(self._delete(path) for path in paths)

    def delete_all(self, *, include_broken: bool = True) -> int:
        """Delete every backup (after disconnect, clear-session, phone logout); returns the
        count. `include_broken` also deletes the login parts a restore moved aside."""
        with self._lock:
            self._sweep()
            count = sum(self._delete(info.path) for info in self.list_backups())
            if include_broken:
                self.broken.delete_all()
        return count

    def _delete(self, path: Path) -> bool:
        # Rename first: a crash mid-delete leaves a `.tmp-*` (swept later), never half a backup.
        doomed = self.root / f".tmp-del-{secrets.token_hex(4)}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return False
        remove_tree(doomed)
        return True

    def _sweep(self) -> None:
        """Once per store: remove `.tmp-*` folders a crashed take, unpack or delete left."""
        if self._swept:
            return
        self._swept = True
        if self.root.is_dir():
            for path in self.root.glob(".tmp-*"):
                log.info("removing unfinished backup folder %s", path)
                remove_tree(path)

    def _path_of(self, backup: BackupInfo | Path | str) -> Path:
        if isinstance(backup, BackupInfo):
            return backup.path
        if isinstance(backup, str) and NAME_RE.fullmatch(backup):
            return self.root / backup
        return Path(backup)

    # -- blobs, for the database ----------------------------------------------------------

    def pack(self, name: str) -> tuple[bytes, Manifest]:
        """The backup as one verified blob (`archive.pack`) and its manifest."""
        with self._lock:
            return archive.pack(self.root / name)

    def unpack(self, data: bytes) -> BackupInfo:
        """Install a blob from the database as a local backup (`archive.unpack`)."""
        with self._lock:
            self._sweep()
            private_dir(self.root)
            return describe(archive.unpack(data, self.root))


def _check_login(copy: Path) -> None:
    """Raise `BackupError` unless the copied localStorage holds a login."""
    login = stored_login(copy)
    if login is None:
        raise BackupError("the profile's localStorage on disk holds no login (last-wid-md and WANoiseInfo): "
                          "not a backup that could bring it back")


def _signature_or_none(path: Path) -> tuple[int, int, int] | None:
    try:
        return signature(path)
    except FileNotFoundError:
        return None
