"""A backup's manifest (`manifest.json`), its folder names, and checking a folder against it.

A backup is a folder named `<UTC time>-<random>` (`NAME_RE`) holding copies of the
profile's login files at their profile-relative paths, plus `manifest.json`:

    {"format": 1, "clientId": "...", "created": "<ISO time>", "link": "<wid or null>",
     "loginSince": "<ISO time or null>",
     "files": [{"path": "...", "size": n, "sha256": "..."}, ...], "totalSize": n}

`loginSince` is when the login in the backup was linked (clearings.py); backups taken
before it existed do not have it.

`Manifest.parse` checks the structure (every path inside `LOGIN_PARTS`, never escaping the
folder; both required parts present) and `verify(folder)` checks the files too; either raises
`BackupCorrupt(name, problem)`. A backup is trusted only after `verify`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..states import iso
from .files import hash_file
from .profile import LOGIN_PARTS, REQUIRED_PARTS

FORMAT = 1
MANIFEST = "manifest.json"
MAX_MANIFEST = 16 << 20
NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-[0-9a-f]{6}$")
_STAMP = "%Y%m%dT%H%M%S.%fZ"


class BackupError(Exception):
    """A backup could not be taken or restored (I/O error, the source changed meanwhile)."""


class BackupCorrupt(BackupError):
    """A backup failed verification. `name` is the backup, `problem` one line saying what."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"backup {name}: {problem}")
        self.name = name
        self.problem = problem


def new_name(moment: datetime) -> str:
    """A fresh backup (or broken/) folder name for `moment`: sorts by time."""
    return f"{moment.astimezone(UTC).strftime(_STAMP)[:-4]}Z-{secrets.token_hex(3)}"


def created_from_name(name: str) -> datetime:
    match = NAME_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"not a backup name: {name!r}")
    stamp = match.group(1)
    return datetime.strptime(stamp[:-1] + "000", _STAMP[:-1]).replace(tzinfo=UTC)


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
    login_since: datetime | None = None

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "clientId": self.client_id, "created": iso(self.created, "milliseconds"),
                "link": self.link, "loginSince": iso(self.login_since, "milliseconds"),
                "files": [dataclasses.asdict(e) for e in self.files],
                "totalSize": self.total_size}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), indent=1).encode()

    @classmethod
    def parse(cls, name: str, raw: bytes) -> Manifest:
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
            moment = _aware(datetime.fromisoformat(str(created)))
            since = None if body.get("loginSince") is None else _aware(datetime.fromisoformat(body["loginSince"]))
        except (TypeError, ValueError):
            raise bad("has a bad created or loginSince time") from None
        if not isinstance(files, list):
            raise bad("has no file list")
        entries, seen = [], set()
        for item in files:
            if not isinstance(item, dict):
                raise bad("has a bad file entry")
            path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
            problem = path_problem(path)
            if problem:
                raise bad(f"lists {path!r}: {problem}")
            assert isinstance(path, str)  # path_problem said so
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
        return cls(client_id, moment, link, tuple(entries), since)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def path_problem(path: object) -> str | None:
    """Why `path` may not appear in a backup, or None. Only paths inside LOGIN_PARTS pass."""
    if not isinstance(path, str) or not path:
        return "not a path"
    if "\\" in path or "\x00" in path or path.startswith("/") or \
            any(part in ("", ".", "..") for part in path.split("/")):
        return "escapes the backup folder"
    if not any(path == part or path.startswith(part + "/") for part in LOGIN_PARTS):
        return "is not a login file"
    return None


def read_manifest(backup_path: Path) -> Manifest:
    """The parsed manifest, structure checked but files not hashed (`verify` does both)."""
    path = Path(backup_path)
    if (path / MANIFEST).is_symlink():  # never follow it
        raise BackupCorrupt(path.name, f"{MANIFEST} is a link")
    try:
        raw = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise BackupCorrupt(path.name, f"{MANIFEST} is missing") from None
    except OSError as exc:
        raise BackupCorrupt(path.name, f"{MANIFEST} cannot be read: {exc}") from None
    return Manifest.parse(path.name, raw)


def verify(backup_path: Path) -> Manifest:
    """Check a backup folder against its manifest; returns it or raises `BackupCorrupt`.

    Problems: manifest missing or unparseable, a listed path outside the login parts or
    escaping the folder, a file missing, a file not listed, a link, a size or hash mismatch.
    """
    path, name = Path(backup_path), Path(backup_path).name
    manifest = read_manifest(path)
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
    for item in manifest.files:
        try:
            size, digest = hash_file(path / item.path)
        except FileNotFoundError:
            raise BackupCorrupt(name, f"missing file {item.path}") from None
        except OSError as exc:
            raise BackupCorrupt(name, f"{item.path} cannot be read: {exc}") from None
        if size != item.size:
            raise BackupCorrupt(name, f"{item.path} has {size} bytes, the manifest says {item.size}")
        if digest != item.sha256:
            raise BackupCorrupt(name, f"{item.path} does not match its sha256")
    return manifest
