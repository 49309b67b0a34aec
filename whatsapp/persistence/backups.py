"""Backups of the WhatsApp login held in a Chromium profile, and restoring them.

Only the parts that hold the login are copied (`LOGIN_PARTS`): never caches, never the
`Singleton*` lock files, never LevelDB's `LOCK` files (empty; LevelDB recreates them on open).

Contract:
- A backup is a folder `<root>/<UTC time>-<random>/` holding the copied files at their
  profile-relative paths plus `manifest.json` (path, size and sha256 of every file). It is
  built in `<root>/.tmp-<random>/` and renamed into place, so a reader sees all of it or none.
- `take()` raises `BackupError` (and leaves nothing behind) when a file changed, appeared or
  vanished while it was copied: a copy of a browser that was writing is never kept.
- A backup is trusted only after `verify()`: `BackupCorrupt(name, problem)` otherwise.
- `restore()` verifies, stages a copy inside the profile folder and checks its hashes, and
  only then moves the profile's current login parts aside to `<broken_root>/<time>-<random>/`
  and renames the staged parts into place. Nothing outside `LOGIN_PARTS`/`COMPANIONS` is touched.
- Folders are created 0o700, files 0o600, whatever the umask.
- One `BackupStore` per root in one process (the session holds the profile lock); its
  methods are thread-safe. `whatsapp.archive` turns one backup into one blob and back, for
  the database store.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..states import iso, utcnow

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
# What holds the login (IndexedDB, localStorage) and the small files worth keeping with it.
# Chromium 156 on Linux keeps cookies in `Default/Cookies`; some builds use `Default/Network/`.
LOGIN_PARTS = ("Default/IndexedDB", "Default/Local Storage", "Default/Preferences",
               "Default/Cookies", "Default/Network/Cookies", "Local State")
# Moved aside with the parts but never copied: SQLite would replay a journal left by the old
# Cookies database into the restored one.
COMPANIONS = ("Default/Cookies-journal", "Default/Network/Cookies-journal")
# Without both of these a backup cannot bring the login back: refuse to take one.
REQUIRED_PARTS = ("Default/IndexedDB", "Default/Local Storage")
SKIPPED_NAMES = frozenset({"LOCK"})
NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-[0-9a-f]{6}$")
_STAMP = "%Y%m%dT%H%M%S.%fZ"
_CHUNK = 1 << 20
_MAX_MANIFEST = 16 << 20


class BackupError(Exception):
    """A backup could not be taken or restored (I/O error, the source changed meanwhile)."""


class BackupCorrupt(BackupError):
    """A backup failed verification. `name` is the backup, `problem` one line saying what."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"backup {name}: {problem}")
        self.name = name
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    client_id: str
    created: datetime
    link: str | None
    files: tuple[FileEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> dict:
        return {"format": FORMAT, "clientId": self.client_id, "created": _iso(self.created),
                "link": self.link, "files": [dataclasses.asdict(e) for e in self.files],
                "totalSize": self.total_size}

    @classmethod
    def parse(cls, name: str, raw: bytes) -> "Manifest":
        """Parse and check the structure (not the files); raises `BackupCorrupt`."""
        def bad(problem: str) -> BackupCorrupt:
            return BackupCorrupt(name, f"{MANIFEST} {problem}")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise bad(f"is unreadable: {exc}") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise bad("is not a format-1 manifest")
        client_id, created, link, files = (body.get(k) for k in ("clientId", "created", "link", "files"))
        if not isinstance(client_id, str) or not (link is None or isinstance(link, str)):
            raise bad("has a bad clientId or link")
        try:
            moment = datetime.fromisoformat(created)
        except (TypeError, ValueError):
            raise bad("has a bad created time") from None
        if not isinstance(files, list):
            raise bad("has no file list")
        entries, seen = [], set()
        for item in files:
            if not isinstance(item, dict):
                raise bad("has a bad file entry")
            path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
            problem = _path_problem(path)
            if problem:
                raise bad(f"lists {path!r}: {problem}")
            if type(size) is not int or size < 0 or not isinstance(digest, str) \
                    or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise bad(f"has a bad size or sha256 for {path}")
            if path in seen:
                raise bad(f"lists {path} twice")
            seen.add(path)
            entries.append(FileEntry(path, size, digest))
        for part in REQUIRED_PARTS:  # without them a restore cannot bring the login back
            if not any(path.startswith(part + "/") for path in seen):
                raise bad(f"lists no file under {part}")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return cls(client_id, moment, link, tuple(entries))


@dataclasses.dataclass(frozen=True)
class BackupInfo:
    """A backup folder as listed (manifest read, files not hashed unless said so)."""

    name: str
    path: Path
    created: datetime
    link: str | None = None
    size: int = 0          # bytes of the copied files plus the manifest
    file_count: int = 0
    seconds: float | None = None   # time `take()` needed; None when listed
    readable: bool = True          # False: the manifest could not be read


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    name: str
    profile_dir: Path
    link: str | None           # the account (wid) the restored login belongs to
    moved_aside: Path | None   # where the replaced login parts went (None: there were none)
    file_count: int
    size: int
    seconds: float


_now = utcnow


def _iso(moment: datetime) -> str:
    return iso(moment, "milliseconds")


def _new_name(moment: datetime) -> str:
    return f"{moment.astimezone(timezone.utc).strftime(_STAMP)[:-4]}Z-{secrets.token_hex(3)}"


def _created_from_name(name: str) -> datetime:
    stamp = NAME_RE.fullmatch(name).group(1)
    return datetime.strptime(stamp[:-1] + "000", _STAMP[:-1]).replace(tzinfo=timezone.utc)


def _path_problem(path: object) -> str | None:
    """Why `path` may not appear in a backup, or None. Only paths inside LOGIN_PARTS pass."""
    if not isinstance(path, str) or not path:
        return "not a path"
    if "\\" in path or "\x00" in path or path.startswith("/") or \
            any(part in ("", ".", "..") for part in path.split("/")):
        return "escapes the backup folder"
    if not any(path == part or path.startswith(part + "/") for part in LOGIN_PARTS):
        return "is not a login file"
    return None


# -- file helpers ---------------------------------------------------------------------------

def _mkdir_private(path: Path) -> None:
    """Create `path` and missing parents 0o700 (existing folders are left as they are)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        os.chmod(folder, 0o700)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_stream(source, dst: Path) -> tuple[int, str]:
    """Write `source` (a binary file object) to the new file `dst` (0o600), fsynced."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return size, digest.hexdigest()


def _copy_file(src: Path, dst: Path) -> tuple[int, str]:
    """Copy one file; returns the size and sha256 of the bytes read. Tests replace this."""
    with open(src, "rb") as source:
        return _copy_stream(source, dst)


def _hash_file(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _signature(path: Path) -> tuple[int, int, int]:
    stat = os.lstat(path)
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def login_files(profile_dir: Path) -> list[str]:
    """Profile-relative paths of the regular files to back up, sorted. Links are skipped."""
    profile_dir = Path(profile_dir)
    found = []
    for part in LOGIN_PARTS:
        top = profile_dir / part
        if top.is_symlink() or not top.exists():
            continue
        if top.is_file():
            found.append(part)
            continue
        for folder, dirs, files in os.walk(top):  # does not descend into linked folders
            dirs.sort()
            for name in files:
                full = Path(folder, name)
                if name in SKIPPED_NAMES or full.is_symlink() or not full.is_file():
                    continue
                found.append(full.relative_to(profile_dir).as_posix())
    return sorted(found)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists() or path.is_symlink():
        log.warning("could not remove %s", path)


def verify(backup_path: Path) -> Manifest:
    """Check a backup folder against its manifest; returns it or raises `BackupCorrupt`.

    Problems: manifest missing or unparseable, a listed path outside the login parts or
    escaping the folder, a file missing, a file not listed, a link, a size or hash mismatch.
    """
    path, name = Path(backup_path), Path(backup_path).name
    if (path / MANIFEST).is_symlink():  # do not follow it
        raise BackupCorrupt(name, f"{MANIFEST} is a link")
    try:
        raw = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise BackupCorrupt(name, f"{MANIFEST} is missing") from None
    except OSError as exc:
        raise BackupCorrupt(name, f"{MANIFEST} cannot be read: {exc}") from None
    manifest = Manifest.parse(name, raw)
    listed = {entry.path for entry in manifest.files}
    for folder, dirs, files in os.walk(path):
        for entry in dirs + files:
            full = Path(folder, entry)
            rel = full.relative_to(path).as_posix()
            if full.is_symlink():
                raise BackupCorrupt(name, f"{rel} is a link")
            if entry in files and not full.is_file():
                raise BackupCorrupt(name, f"{rel} is not a regular file")
            if entry in files and rel != MANIFEST and rel not in listed:
                raise BackupCorrupt(name, f"extra file {rel}")
    for entry in manifest.files:
        try:
            size, digest = _hash_file(path / entry.path)
        except FileNotFoundError:
            raise BackupCorrupt(name, f"missing file {entry.path}") from None
        except OSError as exc:
            raise BackupCorrupt(name, f"{entry.path} cannot be read: {exc}") from None
        if size != entry.size:
            raise BackupCorrupt(name, f"{entry.path} has {size} bytes, the manifest says {entry.size}")
        if digest != entry.sha256:
            raise BackupCorrupt(name, f"{entry.path} does not match its sha256")
    return manifest


def read_manifest(backup_path: Path) -> Manifest:
    """The parsed manifest, structure checked but files not hashed (`verify` does both)."""
    path = Path(backup_path)
    try:
        return Manifest.parse(path.name, (path / MANIFEST).read_bytes())
    except OSError as exc:
        raise BackupCorrupt(path.name, f"{MANIFEST} cannot be read: {exc}") from None


def _info(path: Path, seconds: float | None = None) -> BackupInfo:
    """Describe a backup from its manifest without hashing its files."""
    created = _created_from_name(path.name)
    try:
        raw = (path / MANIFEST).read_bytes()
        manifest = Manifest.parse(path.name, raw)
    except (OSError, BackupCorrupt):
        return BackupInfo(path.name, path, created, readable=False)
    size = manifest.total_size + len(raw)
    return BackupInfo(path.name, path, created, manifest.link, size, len(manifest.files), seconds)


class BackupStore:
    """The backups of one client id in `root` (Config.backup_dir). See the module docstring."""

    def __init__(self, root: Path, client_id: str, keep: int = 3, max_age_days: float = 7,
                 *, broken_root: Path | None = None, keep_broken: int = 2,
                 clock: Callable[[], datetime] = _now):
        self.root = Path(root)
        self.client_id = client_id
        self.keep = keep
        self.max_age_days = max_age_days
        # Default matches Config: <session_dir>/backups/<id> -> <session_dir>/broken/<id>.
        self.broken_root = Path(broken_root) if broken_root else self.root.parent.parent / "broken" / client_id
        self.keep_broken = keep_broken
        self._clock = clock
        self._lock = threading.RLock()
        self._swept = False

    @classmethod
    def for_config(cls, config) -> "BackupStore":
        return cls(config.backup_dir, config.client_id, keep=config.backup_keep,
                   broken_root=config.session_dir / "broken" / config.client_id)

    # -- reading --------------------------------------------------------------------------

    def list_backups(self) -> list[BackupInfo]:
        """Every backup folder, newest first (unreadable ones included, `readable=False`)."""
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        found = []
        for path in entries:
            if NAME_RE.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
                found.append(_info(path))
        return sorted(found, key=lambda info: info.name, reverse=True)

    def candidates(self, skip: Iterable[str] = ()) -> Iterator[BackupInfo]:
        """Backups that verify, newest first, verified lazily; corrupt ones are logged and skipped."""
        skip = set(skip)
        for info in self.list_backups():
            if info.name in skip:
                continue
            try:
                verify(info.path)
            except BackupCorrupt as exc:
                log.warning("skipping backup: %s", exc)
                continue
            yield info

    # -- taking ---------------------------------------------------------------------------

    def take(self, profile_dir: Path, *, link: str | None = None) -> BackupInfo:
        """Copy the login parts of a quiet profile into a new backup; returns its info.

        Raises `BackupError` when a required part is missing, a file changed during the
        copy, or on an I/O error; nothing is left behind then.
        """
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
                _mkdir_private(temp)
                entries = [self._copy_checked(profile_dir, rel, temp) for rel in files]
                if login_files(profile_dir) != files:
                    raise BackupError("the login files changed while they were copied")
                created = self._clock()
                manifest = Manifest(self.client_id, created, link, tuple(entries))
                _write_new(temp / MANIFEST, json.dumps(manifest.to_json(), indent=1).encode())
                for folder, _, _ in os.walk(temp, topdown=False):
                    _fsync_dir(Path(folder))
                final = self.root / _new_name(created)
                os.rename(temp, final)
            except BaseException as exc:
                _remove_tree(temp)
                if isinstance(exc, OSError):
                    raise BackupError(f"backup failed: {exc}") from exc
                raise
            _fsync_dir(self.root)  # makes the rename durable
        info = _info(final, seconds=time.monotonic() - started)
        log.info("backup %s taken: %d files, %d bytes, %.1f s", info.name, info.file_count,
                 info.size, info.seconds)
        return info

    def _copy_checked(self, profile_dir: Path, rel: str, temp: Path) -> FileEntry:
        src, dst = profile_dir / rel, temp / rel
        _mkdir_private(dst.parent)
        try:
            before = _signature(src)
            size, digest = _copy_file(src, dst)
            after = _signature(src)
        except FileNotFoundError:
            raise BackupError(f"{rel} vanished while it was copied") from None
        if before != after or size != before[0]:
            raise BackupError(f"{rel} changed while it was copied")
        return FileEntry(rel, size, digest)

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
                _mkdir_private(profile_dir)
                for stale in profile_dir.glob(".restore-*"):  # left by a crash mid-restore
                    _remove_tree(stale)
                _mkdir_private(staging)
                for entry in manifest.files:
                    _mkdir_private((staging / entry.path).parent)
                    if _copy_file(path / entry.path, staging / entry.path) != (entry.size, entry.sha256):
                        raise BackupCorrupt(path.name, f"{entry.path} changed while it was restored")
                for entry in manifest.files:  # what was written, read back
                    if _hash_file(staging / entry.path) != (entry.size, entry.sha256):
                        raise BackupError(f"restored copy of {entry.path} does not match the backup")
                moved = self._move_aside(profile_dir)
                for part in LOGIN_PARTS:
                    if os.path.lexists(staging / part):
                        _mkdir_private((profile_dir / part).parent)
                        os.rename(staging / part, profile_dir / part)
                for folder in (profile_dir, profile_dir / "Default", profile_dir / "Default/Network"):
                    if folder.is_dir():  # make the renames durable
                        _fsync_dir(folder)
            except OSError as exc:
                raise BackupError(f"restore of {path.name} failed: {exc}") from exc
            finally:
                _remove_tree(staging)
            self._prune_broken()
        result = RestoreResult(path.name, profile_dir, manifest.link, moved, len(manifest.files),
                               manifest.total_size, time.monotonic() - started)
        log.info("restored backup %s into %s (%d files); old login parts in %s",
                 result.name, profile_dir, result.file_count, moved)
        return result

    def restore_newest(self, profile_dir: Path, *, skip: Iterable[str] = ()) -> RestoreResult | None:
        """Restore the newest backup that verifies and is not in `skip`; None if there is none."""
        for info in self.candidates(skip):
            try:
                return self.restore(info, profile_dir)
            except BackupCorrupt as exc:  # changed between candidates() and restore()
                log.warning("skipping backup: %s", exc)
        return None

    def _move_aside(self, profile_dir: Path) -> Path | None:
        present = [p for p in LOGIN_PARTS + COMPANIONS if os.path.lexists(profile_dir / p)]
        if not present:
            return None
        folder = self.broken_root / _new_name(self._clock())
        for part in present:
            _mkdir_private((folder / part).parent)
            shutil.move(profile_dir / part, folder / part)  # a rename on one file system
        return folder

    def _prune_broken(self) -> None:
        if self.broken_root.is_dir():
            old = sorted((p for p in self.broken_root.iterdir() if NAME_RE.fullmatch(p.name)), reverse=True)
            for path in old[self.keep_broken:]:
                _remove_tree(path)

    # -- removing -------------------------------------------------------------------------

    def prune(self, keep: int | None = None, max_age_days: float | None = None) -> list[str]:
        """Keep the newest `keep`; of those, drop any older than `max_age_days` except the
        newest one. Returns the names deleted."""
        keep = self.keep if keep is None else keep
        max_age = timedelta(days=self.max_age_days if max_age_days is None else max_age_days)
        now = self._clock()
        with self._lock:
            self._sweep()
            backups = self.list_backups()
            doomed = backups[max(keep, 1):] + [b for b in backups[1:keep] if now - b.created > max_age]
            for info in doomed:
                self._delete(info.path)
        return [info.name for info in doomed]

    def delete_all(self, *, include_broken: bool = True) -> int:
        """Delete every backup (after disconnect, clear-session, phone logout); returns the
        count. `include_broken` also deletes the login parts a restore moved aside."""
        with self._lock:
            self._sweep()
            backups = self.list_backups()
            for info in backups:
                self._delete(info.path)
            if include_broken:
                _remove_tree(self.broken_root)
        return len(backups)

    def delete_for_link(self, link: str) -> int:
        """Delete the backups whose manifest names `link`; returns the count."""
        with self._lock:
            backups = [b for b in self.list_backups() if b.link == link]
            for info in backups:
                self._delete(info.path)
        return len(backups)

    def _delete(self, path: Path) -> None:
        # Rename first: a crash mid-delete leaves a `.tmp-*` (swept later), never half a backup.
        doomed = self.root / f".tmp-del-{secrets.token_hex(4)}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        _remove_tree(doomed)

    def _sweep(self) -> None:
        """Once per store: remove `.tmp-*` folders a crashed take, unpack or delete left."""
        if self._swept:
            return
        self._swept = True
        if self.root.is_dir():
            for path in self.root.glob(".tmp-*"):
                log.info("removing unfinished backup folder %s", path)
                _remove_tree(path)

    def _path_of(self, backup: BackupInfo | Path | str) -> Path:
        if isinstance(backup, BackupInfo):
            return backup.path
        if isinstance(backup, str) and NAME_RE.fullmatch(backup):
            return self.root / backup
        return Path(backup)

    # -- the database store's side --------------------------------------------------------

    def unpack(self, data: bytes) -> BackupInfo:
        """`unpack(data, self.root)` under this store's lock (use this one from the session)."""
        from .archive import unpack

        with self._lock:
            self._sweep()
            _mkdir_private(self.root)
            return unpack(data, self.root)


def _write_new(path: Path, data: bytes) -> None:
    _copy_stream(io.BytesIO(data), path)
