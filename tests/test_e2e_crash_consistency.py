"""kill -9 at random points of a backup, a restore and a record write (issue 19).

A real child process (this file run as a script) runs the product's own code in a loop:
`LocalBackups.take`, `LocalBackups.restore` or `RecordFile.increment`, printing a line
before each call and one after it returns. The test SIGKILLs it at a random moment of a
call (seeded; the delay drawn within the call's measured length), several rounds on the
same folders, and then checks what a restarted server would meet:

- no folder with a backup's name is ever half-written (each verifies against its
  manifest: `candidates()`, what restores are offered, yields only those), also when the
  kill lands in the prune that follows a take; the newest backup whose `take` returned is
  offered; a crashed take's `.tmp-*` folder is swept by the next one;
- a restore killed midway leaves the backup itself untouched, and the next restore puts
  exactly the backup's bytes in place;
- the record always loads, never set aside as corrupt, and keeps every increment that
  returned (the write is atomic and durable).

The outbox's own kill -9 test is tests/test_messages_durability.py (every accepted id
survives, SQLite and PostgreSQL); the soak (tests/test_e2e_soak.py, make soak) kills the
whole server while it writes all of these at once.
"""
from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from profiles import make_profile

from whatsapp.persistence.backups import LocalBackups
from whatsapp.persistence.files import hash_file
from whatsapp.persistence.manifest import NAME_RE, verify
from whatsapp.persistence.record import RecordFile

E2E = True  # real processes killed with SIGKILL
ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 12
LINE_TIMEOUT_S = 30.0


def big_login() -> dict[str, bytes]:
    """5 MiB of login data in 20 files: a copy long enough to be killed inside."""
    return {f"Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb/{n:06d}.ldb": os.urandom(256 << 10)
            for n in range(7, 27)}


def _child(kind: str, folder: str) -> None:
    """Loop forever, calls back to back: `start` before each, `done <detail> <seconds>` after
    it returned. Almost all of the child's time is inside a call, so a kill at any moment
    lands in one."""
    base = Path(folder)
    record = RecordFile(base / "session-test.json")
    backups = LocalBackups(base / "backups" / "test", "test")
    while True:
        print("start", flush=True)
        started = time.monotonic()
        if kind == "record":
            detail = str(record.increment("restored_without_qr").restored_without_qr)
        elif kind == "take":  # and prune, as the product does after every backup
            detail = backups.take(base / "session-test").name
            backups.prune()
        else:
            backups.restore(backups.list_backups()[-1], base / "restored")
            detail = "-"
        print(f"done {detail} {time.monotonic() - started:.6f}", flush=True)


class Child:
    def __init__(self, kind: str, folder: Path):
        self.proc = subprocess.Popen([sys.executable, __file__, kind, str(folder)], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def line(self) -> str:
        """The next line, bounded (a child stuck in I/O fails the test instead of hanging it)."""
        import selectors
        with selectors.DefaultSelector() as selector:
            assert self.proc.stdout is not None
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(LINE_TIMEOUT_S):
                raise AssertionError(f"no line from the child within {LINE_TIMEOUT_S:.0f} s")
            return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def rest(self) -> list[str]:
        """What the killed child printed and was not read yet."""
        assert self.proc.stdout is not None
        lines = self.proc.stdout.read().splitlines()
        self.proc.stdout.close()
        return lines


def call_seconds(kind: str, folder: Path, calls: int = 4) -> float:
    """The median length of one call, measured in a child: the range of the kill points."""
    child = Child(kind, folder)
    try:
        times = []
        for _ in range(calls):
            assert child.line() == "start"
            done = child.line().split()
            assert done[0] == "done", done
            times.append(float(done[2]))
        return statistics.median(times)
    finally:
        child.kill()
        child.rest()


def kill_rounds(kind: str, folder: Path, seed: int, after_each) -> list[str]:
    """ROUNDS children, each killed at a random moment of its calls; `after_each()` checks
    the folder after every kill. Returns the `done` lines read (calls that returned)."""
    rng = random.Random(seed)
    length = call_seconds(kind, folder)
    done = []
    for _ in range(ROUNDS):
        child = Child(kind, folder)
        try:
            assert child.line() == "start"  # it runs: calls follow back to back
            time.sleep(rng.uniform(length, length * 4))  # the kill point: the test's own schedule
        finally:
            child.kill()
        done += [line for line in child.rest() if line.startswith("done")]
        after_each()
    return done


def test_a_backup_killed_at_any_point_is_never_offered_half_written(tmp_path):
    make_profile(tmp_path, big_login())
    backups = LocalBackups(tmp_path / "backups" / "test", "test")
    inside = []

    def check() -> None:
        inside.append(bool(list(backups.root.glob(".tmp-*"))))  # killed inside a copy
        for folder in backups.root.iterdir():
            if NAME_RE.fullmatch(folder.name):
                verify(folder)  # raises BackupCorrupt naming the problem
        for info in backups.candidates():
            assert NAME_RE.fullmatch(info.name)

    done = kill_rounds("take", tmp_path, seed=1901, after_each=check)
    assert sum(inside) >= 2, f"too few kills landed inside a copy ({sum(inside)} of {ROUNDS}): the test proves little"
    newest = max(line.split()[1] for line in done)
    assert newest in {info.name for info in backups.candidates()}, "the newest backup whose take returned is gone"
    fresh = LocalBackups(backups.root, "test")
    fresh.take(tmp_path / "session-test")
    assert not list(backups.root.glob(".tmp-*")), "a crashed take's folder survived the next take"


def test_a_restore_killed_at_any_point_leaves_the_backup_and_restores_next_time(tmp_path):
    profile = make_profile(tmp_path, big_login())
    backups = LocalBackups(tmp_path / "backups" / "test", "test")
    backup = backups.take(profile)
    before = {p.relative_to(backup.path): hash_file(p) for p in backup.path.rglob("*") if p.is_file()}
    inside = []

    def check() -> None:
        inside.append(bool(list((tmp_path / "restored").glob(".restore-*"))))  # killed while staging
        verify(backup.path)
        assert {p.relative_to(backup.path): hash_file(p) for p in backup.path.rglob("*") if p.is_file()} == before

    kill_rounds("restore", tmp_path, seed=1902, after_each=check)
    assert sum(inside) >= 2, f"too few kills landed inside a restore ({sum(inside)} of {ROUNDS})"
    restored = tmp_path / "restored"
    result = LocalBackups(backups.root, "test").restore(backup, restored)
    for entry in verify(backup.path).files:
        assert hash_file(restored / entry.path) == (entry.size, entry.sha256), entry.path
    assert result.file_count == len(verify(backup.path).files)
    assert not list(restored.glob(".restore-*")), "a crashed restore's staging survived the next restore"


def test_a_record_write_killed_at_any_point_loads_and_keeps_what_returned(tmp_path):
    def check() -> None:
        record = RecordFile(tmp_path / "session-test.json")
        record.load()
        assert record.corrupt_note is None
        assert not list(tmp_path.glob("session-test.json.corrupt-*"))

    done = kill_rounds("record", tmp_path, seed=1903, after_each=check)
    last = max(int(line.split()[1]) for line in done)
    assert RecordFile(tmp_path / "session-test.json").load().restored_without_qr >= last


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
