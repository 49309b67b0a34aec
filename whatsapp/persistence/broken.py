"""Login parts a restore replaced, kept aside in `<dir>/broken/<id>/<time>-<random>/`.

A restore moves the profile's login parts here before putting a backup's in place. The
restores of one episode (from a broken login until the session is ready again,
`end_episode()`) can follow each other, each moving aside the backup restored before it: so
the FIRST entry of an episode is the one holding the original login parts, which a person
may still want, and it is kept with the newest entry; the others go. The episode's first
entry is named in `.episode`, so a restart in the middle of an episode changes nothing.
"""
from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .files import private_dir, remove_tree, write_atomic
from .manifest import NAME_RE, new_name
from .profile import COMPANIONS, LOGIN_PARTS

EPISODE = ".episode"


class BrokenParts:
    def __init__(self, root: Path, clock: Callable[[], datetime]):
        self.root = Path(root)
        self._clock = clock
        self._lock = threading.Lock()

    def move_aside(self, profile_dir: Path) -> Path | None:
        """Move the profile's login parts (and their companions) into a new entry; returns it,
        or None when there were none."""
        present = [p for p in LOGIN_PARTS + COMPANIONS if os.path.lexists(profile_dir / p)]
        if not present:
            return None
        with self._lock:
            folder = self.root / new_name(self._clock())
            for part in present:
                private_dir((folder / part).parent)
                shutil.move(profile_dir / part, folder / part)  # a rename on one file system
            if self._original() is None:
                write_atomic(self.root / EPISODE, folder.name.encode())
            self._prune()
        return folder

    def end_episode(self) -> None:
        """The session was ready: the next restore starts a new episode."""
        with self._lock:
            (self.root / EPISODE).unlink(missing_ok=True)

    def entries(self) -> list[Path]:
        """The entries, newest first."""
        try:
            return sorted((p for p in self.root.iterdir() if NAME_RE.fullmatch(p.name)), reverse=True)
        except FileNotFoundError:
            return []

    def delete_all(self) -> None:
        with self._lock:
            remove_tree(self.root)

    def _original(self) -> str | None:
        try:
            name = (self.root / EPISODE).read_text().strip()
        except OSError:
            return None
        return name if NAME_RE.fullmatch(name) and (self.root / name).is_dir() else None

    def _prune(self) -> None:
        entries = self.entries()
        keep = {p.name for p in entries[:1]} | {self._original() or ""}
        for path in entries:
            if path.name not in keep:
                remove_tree(path)
