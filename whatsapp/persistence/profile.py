"""The profile folder on disk: the exclusive lock, the login's presence, deletion.

Everything this server creates under the data folder is owner-only (0o700 / 0o600).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

# runtime.md: the login lives here in a Chromium profile.
LOGIN_PARTS = ("Default/IndexedDB", "Default/Local Storage")


def private_dir(path: Path) -> Path:
    """Create `path` (and parents under it) owner-only; tighten it if it already exists."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def has_login(profile_dir: Path) -> bool:
    """True when the profile holds login state on disk (the IndexedDB or localStorage files)."""
    for part in LOGIN_PARTS:
        folder = Path(profile_dir) / part
        try:
            if any(folder.iterdir()):
                return True
        except OSError:
            continue
    return False


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
