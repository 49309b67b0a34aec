"""Chromium's major version, for the user agent, without running Chromium on a launch's way.

`chromium --version` through Debian's wrapper script takes about 0.15 s, on the critical
path of every start (the user agent is a command-line flag). The answer is kept in
`<data dir>/chromium-version.json` beside the identity of the binary (path, size, mtime
and inode of it, and of every executable an interpreter script names: the wrapper's
`/usr/lib/chromium/chromium`), so a restart reads a small file, and an upgrade of the
package (a new binary) is noticed and read afresh. On a first start (no cache yet) the read
runs on a thread from the worker's first line (`warm_up_soon`), while the session's code
imports, and the launch waits for that same read instead of starting another.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
from functools import lru_cache
from pathlib import Path

from ..persistence.files import write_atomic

log = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
_lock = threading.Lock()  # one read at a time: a second caller gets the first one's answer
_warming_lock = threading.Lock()  # not `_lock`: starting the thread never waits for a read
_warming: threading.Thread | None = None


def which_chrome(chrome_bin: str | None) -> str | None:
    """CHROME_BIN when set, else the first Chromium on PATH; None when there is none."""
    if chrome_bin:
        return chrome_bin
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def cache_path(session_dir: Path) -> Path:
    return session_dir / "chromium-version.json"


def warm_up(chrome_bin: str | None, session_dir: Path) -> None:
    """Learn Chromium's version now (from the cache, or by asking it), for a launch to come."""
    found = which_chrome(chrome_bin)
    if found:
        major_version(found, cache_path(session_dir))


def warm_up_soon(chrome_bin: str | None, session_dir: Path) -> None:
    """`warm_up` on a thread of its own, once per process."""
    global _warming
    with _warming_lock:
        if _warming is not None:
            return
        _warming = threading.Thread(target=warm_up, args=(chrome_bin, session_dir), name="chromium-version",
                                    daemon=True)
    _warming.start()

_PATHS_IN_SCRIPT = re.compile(r"(/[\w./+-]+)")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=([^\s;\"'`]+)\s*$", re.MULTILINE)
_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _script_paths(text: str) -> list[str]:
    """The absolute paths a shell script names, with its simple `NAME=value` variables
    expanded (Debian's wrapper execs `$LIBDIR/$APPNAME`)."""
    names: dict[str, str] = {}
    for name, value in _ASSIGNMENT.findall(text):
        names.setdefault(name, _REFERENCE.sub(lambda m: names.get(m[1], m[0]), value))
    expanded = _REFERENCE.sub(lambda m: names.get(m[1], m[0]), text)
    return list(dict.fromkeys(_PATHS_IN_SCRIPT.findall(expanded)))


def identity(chrome_bin: str) -> list[list]:
    """What must not change for a cached version to hold: the binary and, for a script, the
    executables it names."""
    found = []
    real = os.path.realpath(chrome_bin)
    paths = [real]
    try:
        with open(real, "rb") as binary:
            head = binary.read(64 * 1024)
        if head.startswith(b"#!"):
            paths += [path for path in _script_paths(head.decode("utf-8", "replace"))
                      if path != real and os.path.isfile(path) and os.access(path, os.X_OK)]
    except OSError:
        pass
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        found.append([path, stat.st_size, stat.st_mtime_ns, stat.st_ino])
    return found


def major_version(chrome_bin: str, cache: Path | None = None) -> int | None:
    """The major version (156), from the cache file when its identity still matches; None
    when Chromium does not say."""
    with _lock:
        return _major(chrome_bin, str(cache) if cache else "")


@lru_cache(maxsize=8)
def _major(chrome_bin: str, cache: str) -> int | None:
    key = identity(chrome_bin)
    if cache:
        try:
            kept = json.loads(Path(cache).read_text())
            if kept.get("identity") == key and isinstance(kept.get("major"), int):
                return kept["major"]
        except (OSError, ValueError):
            pass  # absent or unreadable: ask Chromium
    major = _ask(chrome_bin)
    if cache and major is not None:
        try:
            write_atomic(Path(cache), json.dumps({"identity": key, "major": major}).encode())
        except OSError as exc:
            log.info("could not keep Chromium's version in %s: %s", cache, exc)
    return major


def _ask(chrome_bin: str) -> int | None:
    try:
        out = subprocess.run([chrome_bin, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)\.\d+\.\d+", out)
    return int(match.group(1)) if match else None
