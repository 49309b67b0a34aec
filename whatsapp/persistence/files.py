"""The one way this package writes to disk: owner-only, atomic, durable.

Contract:
- `private_dir(path)` creates `path` and any missing parents 0o700 and tightens `path`
  itself, whatever the umask. Everything this server keeps is owner-only.
- `write_atomic(path, data)` replaces `path` as a whole: a temporary file in the same folder,
  fsync, `os.replace`, fsync of the folder. A reader sees the old content or the new, and a
  crash (or power cut) never leaves a mix or loses a write that returned.
- `write_new(path, data)` and `copy_stream(source, path)` create a file that must not exist
  yet (0o600, never through a link), fsynced; `copy_stream` returns the size and sha256 of
  the bytes written, so a copy is checked without reading it twice.
- `remove_tree(path)` removes what it can and logs what it could not; it never raises.
- `room_for_chromium(path)` is None when the disk holding `path` has room for Chromium to
  load WhatsApp Web, else why not (see MIN_FREE_BYTES).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Chromium rewrites the login's storage as it starts and as a page loads (LevelDB logs,
# Local State); on a disk without room it can lose what it could not write, or load the page
# without its keys, and a QR shows (the soak's findings, seeds 1919 and 19). Below this much
# free space neither a launch nor a page load is started.
MIN_FREE_BYTES = 64 << 20


def room_for_chromium(path: Path) -> str | None:
    """None when at least MIN_FREE_BYTES are free on the disk of `path`, else why not."""
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        return f"the free space of {path} cannot be read: {exc}"
    if free >= MIN_FREE_BYTES:
        return None
    return (f"only {free >> 20} MiB free in {path}: Chromium could lose the login writing to a full disk; "
            f"it loads WhatsApp Web again once {MIN_FREE_BYTES >> 20} MiB are free")


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0o700; an existing `path` is tightened to 0o700."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made meanwhile by another thread: tightened below all the same
        os.chmod(folder, 0o700)
    os.chmod(path, 0o700)
    return path


def fsync_dir(path: Path) -> None:
    """Make the entries of `path` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_stream(source: IO[bytes], dst: Path) -> tuple[int, str]:
    """Write `source` to the new file `dst` (0o600), fsynced; returns (size, sha256 hex)."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits off
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return size, digest.hexdigest()


def copy_file(src: Path, dst: Path) -> tuple[int, str]:
    """Copy `src` to the new file `dst`; returns the size and sha256 of the bytes read."""
    with open(src, "rb") as source:
        return copy_stream(source, dst)


def write_new(path: Path, data: bytes) -> None:
    """Create `path` (must not exist) holding `data`, fsynced."""
    copy_stream(io.BytesIO(data), path)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (module docstring)."""
    path = Path(path)
    folder = private_dir(path.parent)
    temp = folder / f".{path.name}.tmp-{secrets.token_hex(4)}"
    try:
        write_new(temp, data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)  # the rename is durable only once the folder's entry is on disk


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of the file's bytes."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def signature(path: Path) -> tuple[int, int, int]:
    """(size, mtime in ns, inode): changes whenever a writer touched the file (or replaced it)."""
    stat = os.lstat(path)
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def remove_tree(path: Path) -> None:
    """Remove a folder (or file) and everything in it; log what is left."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
    if path.exists() or path.is_symlink():
        log.warning("could not remove %s", path)
