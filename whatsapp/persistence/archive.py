"""One backup as one blob and back, for the PostgreSQL store.

`pack(backup) -> bytes` and `unpack(data, dest_root) -> BackupInfo` (stable signatures);
`pack_to` / `unpack_from` stream through a file object. The blob is a gzip (level 1) tar
whose first member is the manifest; `unpack` accepts nothing the manifest does not list and
verifies the copy before renaming it into place.
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

from .backups import (_MAX_MANIFEST, MANIFEST, NAME_RE, BackupCorrupt, BackupInfo, Manifest, _copy_stream,
                     _fsync_dir, _info, _mkdir_private, _remove_tree, _write_new, verify)

log = logging.getLogger(__name__)


def pack(backup: BackupInfo | Path) -> bytes:
    """The backup as a gzip (level 1) tar: `<name>/manifest.json` first, then its files.

    Verifies the backup first (raises `BackupCorrupt`): a corrupt backup is never shipped.
    Holds the whole blob in memory; `pack_to` streams into a file object instead.
    """
    buffer = io.BytesIO()
    pack_to(backup, buffer)
    return buffer.getvalue()


def pack_to(backup: BackupInfo | Path, fileobj) -> None:
    path = backup.path if isinstance(backup, BackupInfo) else Path(backup)
    manifest = verify(path)
    mtime = int(manifest.created.timestamp())
    with tarfile.open(fileobj=fileobj, mode="w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
        for rel in [MANIFEST] + [entry.path for entry in manifest.files]:
            member = tarfile.TarInfo(f"{path.name}/{rel}")
            member.size, member.mode, member.mtime = (path / rel).stat().st_size, 0o600, mtime
            with open(path / rel, "rb") as source:
                tar.addfile(member, source)


def unpack(data: bytes, dest_root: Path) -> BackupInfo:
    """Install a `pack()` blob as `<dest_root>/<name>/`; returns its info.

    Only regular files named `<name>/manifest.json` (first) and `<name>/<listed path>` with
    the listed size are accepted; absolute paths, `..`, links, devices, unlisted or duplicate
    members raise `BackupCorrupt` before anything is written outside a `.tmp-*` folder. The
    unpacked copy is verified before it is renamed into place. If a backup of that name
    already exists and verifies, it is kept and returned; a corrupt one is replaced.
    """
    return unpack_from(io.BytesIO(data), dest_root)


def unpack_from(fileobj, dest_root: Path) -> BackupInfo:
    """`unpack` reading from a binary file object (need not be seekable)."""
    dest_root = Path(dest_root)
    _mkdir_private(dest_root)
    temp = dest_root / f".tmp-{secrets.token_hex(4)}"
    try:
        _mkdir_private(temp)
        name = _extract(fileobj, temp)
        try:
            verify(temp)
        except BackupCorrupt as exc:  # it names the temporary folder: name the blob instead
            raise BackupCorrupt(name, exc.problem) from None
        final = dest_root / name
        if final.exists():
            try:
                verify(final)
                _remove_tree(temp)
                return _info(final)
            except BackupCorrupt as exc:
                log.warning("replacing %s", exc)
                doomed = dest_root / f".tmp-del-{secrets.token_hex(4)}"
                os.rename(final, doomed)
                _remove_tree(doomed)
        os.rename(temp, final)
    except BaseException:
        _remove_tree(temp)
        raise
    _fsync_dir(dest_root)
    return _info(final)


def _extract(fileobj, temp: Path) -> str:
    """Write the tar's members into `temp`; returns the backup's name. Raises `BackupCorrupt`."""
    name, expected, seen = "archive", {}, set()
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for member in tar:
                top, _, rel = member.name.partition("/")
                if not member.isfile():
                    raise BackupCorrupt(name, f"member {member.name!r} is not a regular file")
                if not seen:  # the first member: the manifest
                    if not NAME_RE.fullmatch(top) or rel != MANIFEST or member.size > _MAX_MANIFEST:
                        raise BackupCorrupt(name, f"first member {member.name!r} is not <name>/{MANIFEST}")
                    name, raw = top, tar.extractfile(member).read()
                    expected = {e.path: e for e in Manifest.parse(name, raw).files}
                    _write_new(temp / MANIFEST, raw)
                    seen.add(MANIFEST)
                    continue
                if top != name or rel in seen or rel not in expected:
                    raise BackupCorrupt(name, f"unexpected member {member.name!r}")
                if member.size != expected[rel].size:
                    raise BackupCorrupt(name, f"{rel} has {member.size} bytes, the manifest says {expected[rel].size}")
                seen.add(rel)
                _mkdir_private((temp / rel).parent)
                _copy_stream(tar.extractfile(member), temp / rel)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupCorrupt(name, f"not a readable archive: {exc}") from None
    if not seen:
        raise BackupCorrupt(name, "empty archive")
    return name
