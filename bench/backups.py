"""Backups: `LocalBackups.take` on the linked profile (browser closed), its size on disk, and
`LocalBackups.restore` into an empty profile; the floor is a plain copy of the same files."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .common import CLIENT_ID, Context, Row, copy_profile, profile_of


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under `path` (st_blocks), not the files' lengths."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in [*files, ""]:
            try:
                total += os.lstat(os.path.join(folder, name) if name else folder).st_blocks * 512
            except OSError:
                pass
    return total


def _plain_copy(profile: Path, files: list[str], dst: Path) -> float:
    t0 = time.monotonic()
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(profile / rel, dst / rel)
    return time.monotonic() - t0


def backup_and_restore(ctx: Context, linked: Path, logged: list[tuple[int, float]]) -> dict:
    from whatsapp.persistence.backups import LocalBackups
    from whatsapp.persistence.profile import login_files

    profile = copy_profile(profile_of(linked), ctx.path("backup-source"))
    files = login_files(profile)
    root = ctx.path("backups") / "backups" / CLIENT_ID
    store = LocalBackups(root, CLIENT_ID, keep=ctx.runs + 1)
    take_s, restore_s, copy_s, sizes, on_disk = [], [], [], [], []
    for _ in range(ctx.runs):
        info = store.take(profile)
        take_s.append(info.seconds)
        sizes.append(info.size / 2**10)
        on_disk.append(disk_bytes(info.path) / 2**10)
        copy_s.append(_plain_copy(profile, files, ctx.path("plain-copy")))
        target = ctx.path("restored-profile")  # empty: restore creates it
        restore_s.append(store.restore(info, target).seconds)
    rows = [
        Row("backup take (LocalBackups.take)", "s", take_s, "plain copy of the same files", copy_s,
            note=f"{len(files)} files; hashes, manifest, fsync"),
        Row("backup restore (into empty profile)", "s", restore_s, "plain copy of the same files", copy_s,
            note="verify, stage, hash again, rename"),
        Row("backup size (files + manifest)", "KiB", sizes, "", [],
            note=f"on disk {on_disk[0]:.0f} KiB; whole profile {disk_bytes(profile) / 2**10:.0f} KiB"),
    ]
    if logged:
        rows.append(Row("backup in the server (log line)", "s", [s for _, s in logged], "", [],
                        note=f"{len(logged)} backups logged, {logged[-1][0] / 2**10:.0f} KiB each"))
    return {"rows": rows, "files": len(files), "profile_disk_kib": disk_bytes(profile) / 2**10,
            "backup_disk_kib": on_disk}
