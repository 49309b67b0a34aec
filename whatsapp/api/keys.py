"""The API key when `WHATSAPP_API_KEY` is unset: generated once, kept owner-only, reused.

Contract:
- `load_or_create(path)` returns `(key, created)`. A missing file is "fresh": a random key is
  written to a temporary file (0o600) and hard-linked to `path` (folder 0o700), so the key
  appears whole or not at all, and of two processes starting at once exactly one link wins;
  the other reads the winner's key. An existing file is reused, its mode tightened to 0o600.
- A file that is empty, not text, or not one printable word is never replaced silently
  (that would lock out every client holding the old key): `KeyFileError`, one line naming
  the file and what to do.
- `key_digest(configured)` is the sha256 to compare presented keys with: the configured
  `sha256:<hex>` itself, or the digest of a plain key (the environment then holds no
  usable secret, and comparing digests hides the key's length).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from ..config import ConfigError

KEY_BYTES = 32          # 256 bits of randomness, 43 URL-safe characters
MIN_KEY_CHARS = 16      # shorter than this in the file: not a key this module wrote
DIGEST_PREFIX = "sha256:"


class KeyFileError(ConfigError):
    """The generated key's file cannot be used; `str()` is one line naming it."""

    def __init__(self, path: Path, problem: str):
        super().__init__("WHATSAPP_API_KEY", f"unset, and the key file {path} {problem}; fix or delete "
                                             "that file (a new key is then generated), or set WHATSAPP_API_KEY")
        self.path = path


def key_digest(configured: str) -> bytes:
    """The 32-byte sha256 a presented key must hash to (`configured` as config.py validated it)."""
    if configured.lower().startswith(DIGEST_PREFIX):
        return bytes.fromhex(configured[len(DIGEST_PREFIX):])
    return hashlib.sha256(configured.encode("utf-8")).digest()


def load_or_create(path: Path) -> tuple[str, bool]:
    """The key kept in `path`, generated first if the file does not exist (module docstring)."""
    path = Path(path)
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    folder = path.parent
    temp = folder / f".{path.name}.tmp-{secrets.token_hex(4)}"
    key = secrets.token_urlsafe(KEY_BYTES)
    try:
        # The data folder is owner-only like everything in it (the session makes it so too).
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        _write_new(temp, key.encode("ascii") + b"\n")
        try:
            os.link(temp, path)  # fails if another process linked its key first
        except FileExistsError:
            return _read(path), False
        _fsync_dir(folder)  # the new name is durable: a restart finds the same key
    except OSError as exc:
        raise KeyFileError(path, f"cannot be written ({exc.strerror or exc})") from None
    finally:
        temp.unlink(missing_ok=True)
    return key, True


def _write_new(path: Path, data: bytes) -> None:
    """Create `path` (0o600 whatever the umask, never through a link) holding `data`, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    """The key in `path`; FileNotFoundError when it is missing, KeyFileError when unusable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a symlink (ELOOP), a permission problem, a folder...
        raise KeyFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)  # copied in with a loose mode: owner-only again
        raw = os.read(fd, 4096)
    except OSError as exc:
        raise KeyFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    try:
        key = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KeyFileError(path, "is corrupt (not text)") from None
    if not key:
        raise KeyFileError(path, "is empty")
    if len(key) < MIN_KEY_CHARS or not key.isprintable() or any(ch.isspace() for ch in key):
        raise KeyFileError(path, f"is corrupt (expected one word of at least {MIN_KEY_CHARS} characters)")
    return key
