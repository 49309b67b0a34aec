"""The data folder on a small tmpfs of its own, which a ballast file can fill to the last byte.

`SmallDisk(path, size_mb).mount()` mounts a tmpfs (as root: `mount -t tmpfs -o size=...`) on
`path`, owner-only. `fill()` writes `<path>/.soak-ballast` until the file system answers
ENOSPC, ending with 4 KiB pieces so that not even one page is left: every write of the
server (the outbox's WAL growing, the record, a backup, Chromium's profile) then fails the
way it does on a full disk. `free()` deletes the ballast. `unmount()` (idempotent) frees and
unmounts, lazily when something still holds the mount (the caller stops processes first);
`Unavailable` is raised where mounting is refused.
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

from .partition import Unavailable

BALLAST = ".soak-ballast"
_PIECES = (1 << 20, 64 << 10, 4 << 10)


class SmallDisk:
    def __init__(self, path: Path, size_mb: int = 128):
        self.path = Path(path)
        self.size_mb = size_mb
        self.mounted = False
        self.full = False

    def mount(self) -> SmallDisk:
        if os.geteuid() != 0:
            raise Unavailable("a tmpfs data folder needs root (mount -t tmpfs); not root here")
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700", "tmpfs",
                               str(self.path)], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise Unavailable(f"mount -t tmpfs refused: {done.stderr.strip()}")
        self.mounted = True
        return self

    def fill(self) -> int:
        """Fill the file system; returns the bytes the ballast took."""
        written = 0
        with open(self.path / BALLAST, "ab", buffering=0) as ballast:
            for piece in _PIECES:
                block = b"\0" * piece
                while True:
                    try:
                        written += ballast.write(block) or 0
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        self.full = True
        return written

    def free(self) -> None:
        (self.path / BALLAST).unlink(missing_ok=True)
        self.full = False

    def usage(self) -> dict[str, int]:
        stat = os.statvfs(self.path)
        return {"size": stat.f_blocks * stat.f_frsize, "free": stat.f_bavail * stat.f_frsize}

    def unmount(self) -> None:
        if not self.mounted:
            return
        try:
            self.free()
        except OSError:
            pass
        done = subprocess.run(["umount", str(self.path)], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:  # still busy: detach it now, the kernel frees it when unused
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, text=True, timeout=10, check=True)
        self.mounted = False

    def __enter__(self) -> SmallDisk:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.unmount()


def mounted_under(folder: Path) -> list[str]:
    """Mount points at or under `folder` (from /proc/self/mounts): a cleanup check."""
    root = str(Path(folder).resolve())
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found
