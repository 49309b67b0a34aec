"""The Chromium profile folder: which parts hold the login, whether a login is there, its
exclusive lock, and deleting it.

- `LOGIN_PARTS` is the one list of what holds the login (IndexedDB, localStorage) and the
  small files worth keeping with it: what a backup copies and a restore replaces.
- `stored_login(profile)` reads the login's own markers from localStorage on disk:
  WhatsApp Web treats a browser as logged in when `last-wid-md` and `WANoiseInfo` are both
  stored. Files alone prove nothing: Chromium creates Local Storage for any page, the QR
  page included, and a logout leaves the files with the keys deleted inside them.
- `ProfileLock` is the exclusive `flock` held while a browser runs on the profile.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from . import leveldb
from .files import private_dir

__all__ = ["COMPANIONS", "LOGIN_PARTS", "REQUIRED_PARTS", "ProfileLock", "StoredLogin", "delete_profile",
           "has_login", "login_files", "private_dir", "stored_login"]

# runtime.md: the login lives in IndexedDB and localStorage; cookies, preferences and
# Local State are small and go with them. Chromium 156 keeps cookies in `Default/Cookies`,
# some builds in `Default/Network/`.
LOGIN_PARTS = ("Default/IndexedDB", "Default/Local Storage", "Default/Preferences",
               "Default/Cookies", "Default/Network/Cookies", "Local State")
# Moved aside with the parts but never copied: SQLite would replay a journal left by the old
# Cookies database into the restored one.
COMPANIONS = ("Default/Cookies-journal", "Default/Network/Cookies-journal")
# Without both of these a backup cannot bring the login back.
REQUIRED_PARTS = ("Default/IndexedDB", "Default/Local Storage")
# LevelDB's LOCK files are empty and recreated on open.
SKIPPED_NAMES = frozenset({"LOCK"})
LOCAL_STORAGE = "Default/Local Storage/leveldb"
# locators.py: STORAGE_WID and STORAGE_NOISE, as Chromium keys them on disk ("\x01": Latin-1).
_WID_KEY = b"\x00\x01last-wid-md"
_NOISE_KEY = b"\x00\x01WANoiseInfo"


@dataclasses.dataclass(frozen=True)
class StoredLogin:
    """A login found in the profile's localStorage. `wid` is the link it belongs to."""
    wid: str | None


def stored_login(profile_dir: Path) -> StoredLogin | None:
    """The login on disk, or None. Reading only; run it on a quiet profile for certainty.

    When the files cannot all be decoded (a browser writing, a format this reader does
    not know), a profile with localStorage files is taken to hold a login of unknown link:
    the caller must never replace a login it could not read.
    """
    contents = leveldb.read(Path(profile_dir) / LOCAL_STORAGE)
    wid = noise = None
    for key, value in contents.values.items():
        if value is None or not key.startswith(b"_"):
            continue  # deleted, or Chromium's own META/VERSION keys
        if key.endswith(_WID_KEY):
            wid = _decode(value)
        elif key.endswith(_NOISE_KEY):
            noise = _decode(value)
    if wid and noise:
        return StoredLogin(_unquote(wid))
    if not contents.complete and _has_files(Path(profile_dir) / LOCAL_STORAGE):
        return StoredLogin(None)
    return None


def has_login(profile_dir: Path) -> bool:
    """True when the profile's localStorage holds a login (see `stored_login`)."""
    return stored_login(profile_dir) is not None


def _decode(value: bytes) -> str | None:
    """Chromium's localStorage value: a format byte, then Latin-1 (1) or UTF-16LE (0)."""
    if not value:
        return None
    if value[0] == 1:
        return value[1:].decode("latin-1")
    if value[0] == 0:
        return value[1:].decode("utf-16-le", errors="replace")
    return None


def _unquote(raw: str) -> str | None:
    """`last-wid-md` is JSON: `"15550001111:3@c.us"`."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw or None
    return value if isinstance(value, str) and value else None


def _has_files(folder: Path) -> bool:
    try:
        return any(p.suffix in (".log", ".ldb", ".sst") for p in folder.iterdir())
    except OSError:
        return False


def login_files(profile_dir: Path) -> list[str]:
    """Profile-relative paths of the regular files in `LOGIN_PARTS`, sorted. Links are skipped."""
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


def delete_profile(profile_dir: Path) -> bool:
    """Remove the whole profile (the saved login with it). Only with the browser closed."""
    profile_dir = Path(profile_dir)
    if not profile_dir.exists():
        return False
    # Rename first so a crash half-way never leaves a half-deleted profile behind.
    doomed = profile_dir.with_name(profile_dir.name + ".deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(profile_dir, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    return True


class ProfileLock:
    """An exclusive `flock` on `<session_dir>/session-<id>.lock`, held for the browser's life.

    The kernel releases it when the holder dies, so a killed server never leaves it stale.
    The holder's pid is written into the file so a second server can say who holds it.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
