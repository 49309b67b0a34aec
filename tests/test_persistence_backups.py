"""Local backups of the login parts of a (fake) Chromium profile: take, verify, restore,
prune, and the login parts a restore moves aside."""
from __future__ import annotations

import json
import os
import stat
from datetime import timedelta

import pytest
from profiles import IDB, LOGIN, LS, Clock, log_bytes, login_storage, make_profile, tree

from whatsapp.persistence import backups as backup_module
from whatsapp.persistence.backups import BackupCorrupt, BackupError, LocalBackups
from whatsapp.persistence.manifest import verify
from whatsapp.persistence.profile import COMPANIONS, LOGIN_PARTS, login_files

LINK = "15550001111:3@c.us"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return LocalBackups(tmp_path / "backups" / "test", "test", keep=3, clock=clock)


@pytest.fixture
def profile(tmp_path):
    return make_profile(tmp_path)


def test_take_copies_only_the_login_parts(store, profile):
    info = store.take(profile, link=LINK)
    assert tree(info.path) == {**LOGIN, "manifest.json": (info.path / "manifest.json").read_bytes()}
    assert not any(info.path.glob("Singleton*"))
    manifest = json.loads((info.path / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["clientId"] == "test" and manifest["link"] == LINK
    assert sorted(f["path"] for f in manifest["files"]) == sorted(LOGIN)
    assert manifest["totalSize"] == sum(map(len, LOGIN.values()))
    assert info.file_count == len(LOGIN) and info.size > manifest["totalSize"]
    assert info.seconds is not None and info.link == LINK
    assert verify(info.path).files == tuple(sorted(verify(info.path).files, key=lambda e: e.path))
    assert [b.name for b in store.list_backups()] == [info.name]
    assert not list(store.root.glob(".tmp-*"))


def test_take_refuses_a_profile_without_login(store, tmp_path):
    (tmp_path / "empty" / "Default").mkdir(parents=True)
    with pytest.raises(BackupError, match="IndexedDB"):
        store.take(tmp_path / "empty")
    assert store.list_backups() == []


@pytest.mark.parametrize("lost", ["WANoiseInfo", "last-wid-md"])
def test_take_refuses_files_whose_localstorage_lost_the_login(store, tmp_path, lost):
    """The files are all there, but Chromium lost a marker (it could not write them: a full
    disk) while the page stayed logged in: such a copy would restore to a QR (the soak's
    finding, seed 1919), and kept, would push a good backup out."""
    kept = {k: v for k, v in login_storage().items() if not k.endswith(lost.encode())}
    profile = make_profile(tmp_path, {f"{LS}/000003.log": log_bytes([kept])})
    with pytest.raises(BackupError, match="holds no login"):
        store.take(profile, link=LINK)
    assert store.list_backups() == [] and not list(store.root.glob(".tmp-*"))


def test_permissions_are_owner_only(store, profile, tmp_path):
    old = os.umask(0)
    try:
        info = store.take(profile, link=LINK)
        result = store.restore(info, tmp_path / "fresh" / "session-test")
    finally:
        os.umask(old)
    for folder in (store.root, info.path, result.profile_dir):
        for path in [folder, *folder.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), path


def corrupt_cases():
    def flip(path):
        data = bytearray((path / f"{IDB}/000005.ldb").read_bytes())
        data[100] ^= 0xFF
        (path / f"{IDB}/000005.ldb").write_bytes(bytes(data))

    def truncate(path):
        with open(path / f"{IDB}/000003.log", "r+b") as f:
            f.truncate(10)

    def bad_manifest(path):
        (path / "manifest.json").write_text('{"format": 1, "files": [')

    def escaping(path):
        body = json.loads((path / "manifest.json").read_text())
        body["files"][0]["path"] = "../../etc/passwd"
        (path / "manifest.json").write_text(json.dumps(body))

    def outside_login(path):
        body = json.loads((path / "manifest.json").read_text())
        body["files"][0]["path"] = "SingletonLock"
        (path / "manifest.json").write_text(json.dumps(body))

    return {
        "flipped byte": (flip, "000005.ldb does not match its sha256"),
        "truncated": (truncate, "000003.log has 10 bytes"),
        "missing file": (lambda p: (p / "Local State").unlink(), "missing file Local State"),
        "extra file": (lambda p: (p / "Default/extra").write_bytes(b"x"), "extra file Default/extra"),
        "link": (lambda p: (p / "Default/link").symlink_to("/etc/passwd"), "Default/link is a link"),
        "no manifest": (lambda p: (p / "manifest.json").unlink(), "manifest.json is missing"),
        "bad manifest": (bad_manifest, "manifest.json is unreadable"),
        "escaping path": (escaping, "escapes the backup folder"),
        "not a login path": (outside_login, "is not a login file"),
    }


@pytest.mark.parametrize("case", list(corrupt_cases()))
def test_verify_names_the_problem(store, profile, case):
    damage, problem = corrupt_cases()[case]
    info = store.take(profile, link=LINK)
    damage(info.path)
    with pytest.raises(BackupCorrupt, match=problem.replace(".", r"\.")) as caught:
        verify(info.path)
    assert caught.value.name == info.name and problem in caught.value.problem


def test_candidates_skip_a_corrupt_newest(store, profile, caplog):
    older = store.take(profile, link=LINK)
    newer = store.take(profile, link=LINK)
    (newer.path / "Local State").write_bytes(b"torn")
    assert [b.name for b in store.list_backups()] == [newer.name, older.name]
    assert [b.name for b in store.candidates()] == [older.name]
    assert "Local State" in caplog.text and newer.name in caplog.text
    assert list(store.candidates(skip={older.name})) == []


def test_a_file_changing_during_the_copy_is_rejected(store, profile, monkeypatch):
    real_copy = backup_module.copy_file

    def copy_while_the_browser_writes(src, dst):
        if src.name == "000003.log" and "IndexedDB" in str(src):
            with open(src, "ab") as f:
                f.write(b"new record")
        return real_copy(src, dst)

    monkeypatch.setattr(backup_module, "copy_file", copy_while_the_browser_writes)
    with pytest.raises(BackupError, match=r"000003\.log changed while it was copied"):
        store.take(profile, link=LINK)
    assert store.list_backups() == [] and not list(store.root.glob(".tmp-*"))


def test_a_file_vanishing_or_appearing_during_the_copy_is_rejected(store, profile, monkeypatch):
    real_copy = backup_module.copy_file

    def copy_and_compact(src, dst):
        result = real_copy(src, dst)
        if src.name == "000005.ldb":  # LevelDB compaction writes a new table meanwhile
            (src.parent / "000007.ldb").write_bytes(b"compacted")
        return result

    monkeypatch.setattr(backup_module, "copy_file", copy_and_compact)
    with pytest.raises(BackupError, match="changed while they were copied"):
        store.take(profile)
    monkeypatch.setattr(backup_module, "copy_file",
                        lambda src, dst: (src.unlink(), real_copy(src, dst))[1])
    with pytest.raises(BackupError, match="vanished"):
        store.take(profile)
    assert store.list_backups() == [] and not list(store.root.glob(".tmp-*"))


def test_restore_puts_exact_bytes_back_and_moves_the_broken_parts_aside(store, profile, tmp_path):
    info = store.take(profile, link=LINK)
    broken_login = {f"{LS}/000003.log": b"torn", f"{IDB}/000009.ldb": b"junk"}
    for rel, data in broken_login.items():
        (profile / rel).write_bytes(data)
    (profile / "Default/Preferences").unlink()
    before_other = {k: v for k, v in tree(profile).items()
                    if not any(k.startswith(p) for p in LOGIN_PARTS + COMPANIONS)}

    result = store.restore(info, profile)

    after = tree(profile)
    assert {k: after[k] for k in LOGIN} == LOGIN
    assert set(login_files(profile)) == set(LOGIN)  # the junk table is gone
    assert {k: v for k, v in after.items() if k not in LOGIN and "LOCK" not in k} == before_other
    assert os.readlink(profile / "SingletonLock") == "otherhost-12345"  # never touched
    assert not (profile / "Default/Network/Cookies-journal").exists()  # moved with Cookies
    aside = tree(result.moved_aside)
    assert aside[f"{IDB}/000009.ldb"] == b"junk" and aside[f"{LS}/000003.log"] == b"torn"
    assert result.moved_aside.parent == tmp_path / "broken" / "test"
    assert result.file_count == len(LOGIN) and result.link == LINK
    assert not list(profile.glob(".restore-*"))


def test_restore_into_a_missing_profile(store, profile, tmp_path):
    info = store.take(profile, link=LINK)
    fresh = tmp_path / "new-machine" / "session-test"
    assert store.restore(info, fresh).moved_aside is None
    assert tree(fresh) == LOGIN
    assert store.broken.entries() == []


def test_broken_keeps_the_original_login_of_an_episode_and_the_newest(store, profile, tmp_path, clock):
    """Issue 21: with two entries kept, a third restore in one episode deleted the original
    login parts (the first entry holds them; the later ones hold restored backups)."""
    first = store.take(profile, link=LINK)
    second = store.take(profile, link=LINK)
    (profile / f"{IDB}/000009.ldb").write_bytes(b"the original, broken login")
    original = {k: v for k, v in tree(profile).items() if k.startswith(("Default/IndexedDB", "Default/Local"))}
    moved = [store.restore(info, profile).moved_aside for info in (first, second, first, second)]
    entries = store.broken.entries()
    assert [p.name for p in entries] == [moved[-1].name, moved[0].name]
    assert {k: v for k, v in tree(moved[0]).items() if k in original} == original

    # A restart in the middle of the episode (a new store on the same folders) changes nothing.
    again = LocalBackups(store.root, "test", broken_root=store.broken_root, clock=clock)
    latest = again.restore(first, profile).moved_aside
    assert [p.name for p in again.broken.entries()] == [latest.name, moved[0].name]

    # Ready: the next restore starts an episode of its own, whose first entry is kept.
    again.end_episode()
    fresh = [again.restore(info, profile).moved_aside for info in (second, first, second)]
    assert [p.name for p in again.broken.entries()] == [fresh[-1].name, fresh[0].name]


def test_restore_of_a_corrupt_backup_leaves_the_profile_alone(store, profile):
    info = store.take(profile, link=LINK)
    (info.path / f"{LS}/CURRENT").write_bytes(b"MANIFEST-000002\n")
    (profile / f"{LS}/000003.log").write_bytes(b"current")
    before = tree(profile)
    with pytest.raises(BackupCorrupt, match="CURRENT"):
        store.restore(info, profile)
    assert tree(profile) == before and not store.broken_root.exists()


def test_prune_keeps_n_and_drops_old_ones_except_the_newest(store, profile, clock):
    names = []
    for _ in range(5):
        names.append(store.take(profile).name)
    assert store.prune(keep=3) == [names[1], names[0]]
    assert [b.name for b in store.list_backups()] == names[:1:-1]
    clock.now += timedelta(days=8)
    fresh = store.take(profile).name
    assert sorted(store.prune(keep=3)) == names[2:]  # one by count, two older than 7 days
    assert [b.name for b in store.list_backups()] == [fresh]
    clock.now += timedelta(days=30)
    assert store.prune(keep=3) == []  # the newest stays however old


def test_stale_temporary_folders_are_swept(store, profile):
    (store.root / ".tmp-dead" / "Default").mkdir(parents=True)
    assert store.list_backups() == []  # listing ignores them
    store.take(profile)
    assert not (store.root / ".tmp-dead").exists()


def test_delete_and_delete_all(store, profile, tmp_path):
    first = store.take(profile, link=LINK)
    other = store.take(profile, link="15550002222:1@c.us")
    store.take(profile, link=LINK)
    store.restore(other, tmp_path / "restored")
    store.restore(other, tmp_path / "restored")
    assert store.delete([first.name, "not-a-backup", "../escape"]) == 1
    assert first.name not in [b.name for b in store.list_backups()]
    assert store.delete_all() == 2 and store.list_backups() == []
    assert not store.broken_root.exists()


def test_a_file_changed_after_its_copy_is_caught(store, profile, monkeypatch):
    """Issue 21: the final check compared names only, so a file written after it was copied
    (while later files were copied) gave a torn backup."""
    real_copy = backup_module.copy_file

    def copy_while_the_browser_writes(src, dst):
        result = real_copy(src, dst)
        if src.name == "Local State":  # the last file: an early one changes meanwhile
            with open(profile / f"{IDB}/000003.log", "ab") as f:
                f.write(b"a record written after this file was copied")
        return result

    monkeypatch.setattr(backup_module, "copy_file", copy_while_the_browser_writes)
    with pytest.raises(BackupError, match=r"000003\.log changed while the backup was taken"):
        store.take(profile, link=LINK)
    assert store.list_backups() == [] and not list(store.root.glob(".tmp-*"))


def test_a_file_replaced_after_its_copy_is_caught(store, profile, monkeypatch):
    """Same size, same content length: a rename over the file (LevelDB's CURRENT) is caught too."""
    real_copy = backup_module.copy_file

    def copy_and_replace(src, dst):
        result = real_copy(src, dst)
        if src.name == "Local State":
            current = profile / f"{LS}/CURRENT"
            (current.parent / "CURRENT.new").write_bytes(current.read_bytes())
            os.replace(current.parent / "CURRENT.new", current)
        return result

    monkeypatch.setattr(backup_module, "copy_file", copy_and_replace)
    with pytest.raises(BackupError, match="CURRENT changed"):
        store.take(profile)


def test_prune_never_deletes_the_newest_verified_backup(store, profile):
    """Issue 21: with keep 1, an unreadable newest backup was counted as the one kept and
    the only verified one was deleted."""
    good = store.take(profile, link=LINK)
    broken = store.take(profile, link=LINK)
    (broken.path / "manifest.json").write_text("{torn")
    assert store.prune(keep=1) == []
    assert [b.name for b in store.list_backups()] == [broken.name, good.name]
    assert [b.name for b in store.candidates()] == [good.name]

    newer = store.take(profile, link=LINK)
    corrupt = store.take(profile, link=LINK)
    (corrupt.path / "Local State").write_bytes(b"torn")
    # Neither unusable one counts; the one older than a verified backup is of no use.
    assert sorted(store.prune(keep=1)) == sorted([good.name, broken.name])
    assert [b.name for b in store.list_backups()] == [corrupt.name, newer.name]
