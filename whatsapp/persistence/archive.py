"""One backup as one blob and back: the format backups take in the database.

The blob is a gzip (level 1) tar whose first member is `<name>/manifest.json`, followed by
the files it lists as `<name>/<path>`. `pack(folder)` verifies the backup first, so a
corrupt backup is never shipped. `unpack(data, root)` accepts nothing the manifest does not
list (no links, devices, `..`, absolute paths, duplicates or wrong sizes: `BackupCorrupt`
before anything is written outside a `.tmp-*` folder), verifies the copy, and only then
renames it into place as `<root>/<name>/`. A sound backup of that name already there is
kept; a corrupt one is replaced.
"""
from __future__ import annotations

import gzip
import io
import logging
import os
import secrets
import tarfile
import zlib
from pathlib import Path
from typing import IO

from .files import copy_stream, fsync_dir, private_dir, remove_tree, write_new
from .manifest import MANIFEST, MAX_MANIFEST, NAME_RE, BackupCorrupt, FileEntry, Manifest, verify

log = logging.getLogger(__name__)


def pack(folder: Path) -> tuple[bytes, Manifest]:
    """The backup at `folder` as a blob, and its manifest; raises `BackupCorrupt`."""
    path = Path(folder)
    manifest = verify(path)
    mtime = int(manifest.created.timestamp())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
        for rel in [MANIFEST] + [entry.path for entry in manifest.files]:
            member = tarfile.TarInfo(f"{path.name}/{rel}")
            member.size, member.mode, member.mtime = (path / rel).stat().st_size, 0o600, mtime
            with open(path / rel, "rb") as source:
                tar.addfile(member, source)
    return buffer.getvalue(), manifest


def unpack(data: bytes, dest_root: Path) -> Path:
    """Install a `pack()` blob as `<dest_root>/<name>/` (module docstring); returns that folder."""
    dest_root = private_dir(Path(dest_root))
    temp = dest_root / f".tmp-{secrets.token_hex(4)}"
    try:
        private_dir(temp)
        name = _extract(io.BytesIO(data), temp)
        try:
            verify(temp)
        except BackupCorrupt as exc:  # it names the temporary folder: name the blob instead
            raise BackupCorrupt(name, exc.problem) from None
        final = dest_root / name
        if final.exists():
            try:
                verify(final)
                remove_tree(temp)
                return final
            except BackupCorrupt as exc:
                log.warning("replacing %s", exc)
                doomed = dest_root / f".tmp-del-{secrets.token_hex(4)}"
                os.rename(final, doomed)
                remove_tree(doomed)
        os.rename(temp, final)
    except BaseException:
        remove_tree(temp)
        raise
    fsync_dir(dest_root)
    return final


def _extract(fileobj: IO[bytes], temp: Path) -> str:
    """Write the tar's members into `temp`; returns the backup's name. Raises `BackupCorrupt`."""
    name, expected, seen = "archive", dict[str, FileEntry](), set[str]()
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for member in tar:
                top, _, rel = member.name.partition("/")
                if not member.isfile():
                    raise BackupCorrupt(name, f"member {member.name!r} is not a regular file")
                source = tar.extractfile(member)
                if source is None:  # only for non-files, refused above
                    raise BackupCorrupt(name, f"member {member.name!r} has no content")
                if not seen:  # the first member: the manifest
                    if not NAME_RE.fullmatch(top) or rel != MANIFEST or member.size > MAX_MANIFEST:
                        raise BackupCorrupt(name, f"first member {member.name!r} is not <name>/{MANIFEST}")
                    name, raw = top, source.read()
                    expected = {e.path: e for e in Manifest.parse(name, raw).files}
                    write_new(temp / MANIFEST, raw)
                    seen.add(MANIFEST)
                    continue
                if top != name or rel in seen or rel not in expected:
                    raise BackupCorrupt(name, f"unexpected member {member.name!r}")
                if member.size != expected[rel].size:
                    raise BackupCorrupt(name, f"{rel} has {member.size} bytes, the manifest says {expected[rel].size}")
                seen.add(rel)
                private_dir((temp / rel).parent)
                copy_stream(source, temp / rel)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupCorrupt(name, f"not a readable archive: {exc}") from None
    if not seen:
        raise BackupCorrupt(name, "empty archive")
    return name
