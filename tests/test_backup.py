"""Backups of the login parts of a (fake) Chromium profile: take, verify, restore, prune, pack."""
from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from whatsapp.persistence import backups as backup_module
from whatsapp.persistence.archive import pack, unpack
from whatsapp.persistence.backups import BackupCorrupt, BackupError, BackupStore, login_files, verify

LINK = "15550001111:3@c.us"
IDB = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"
LS = "Default/Local Storage/leveldb"
LOGIN = {
    f"{IDB}/000003.log": b"idb-log" * 100,
    f"{IDB}/000005.ldb": bytes(range(256)) * 40,
    f"{IDB}/CURRENT": b"MANIFEST-000001\n",
    f"{IDB}/MANIFEST-000001": b"\x00\x01manifest",
    "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.blob/1/00/3": b"blob",
    f"{LS}/000003.log": b"_https://web.whatsapp.com\x00\x01last-wid-md",
    f"{LS}/CURRENT": b"MANIFEST-000001\n",
    "Default/Preferences": b'{"profile":{"exit_type":"Normal"}}',
    "Default/Network/Cookies": b"SQLite format 3\x00cookies",
    "Local State": b'{"browser":{}}',
}
NOT_LOGIN = {
    f"{IDB}/LOCK": b"",
    f"{LS}/LOCK": b"",
    "Default/Cache/Cache_Data/data_0": b"cache",
    "Default/Code Cache/js/index": b"code",
    "Default/Service Worker/CacheStorage/x": b"sw",
    "Default/Network/Cookies-journal": b"",
    "GPUCache/data_1": b"gpu",
    "Default/History": b"history",
}


def make_profile(root: Path, files=None) -> Path:
    profile = root / "session-test"
    for rel, data in {**LOGIN, **NOT_LOGIN, **(files or {})}.items():
        (profile / rel).parent.mkdir(parents=True, exist_ok=True)
        (profile / rel).write_bytes(data)
    (profile / "SingletonLock").symlink_to("otherhost-12345")
    (profile / "SingletonCookie").symlink_to("1234")
    return profile


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


class Clock:
    def __init__(self, start=datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)):
        self.now = start

    def __call__(self):
        self.now += timedelta(milliseconds=1)  # distinct, ordered names
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return BackupStore(tmp_path / "backups" / "test", "test", keep=3, clock=clock)


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
    real_copy = backup_module._copy_file

    def copy_while_the_browser_writes(src, dst):
        if src.name == "000003.log" and "IndexedDB" in str(src):
            with open(src, "ab") as f:
                f.write(b"new record")
        return real_copy(src, dst)

    monkeypatch.setattr(backup_module, "_copy_file", copy_while_the_browser_writes)
    with pytest.raises(BackupError, match="000003.log changed while it was copied"):
        store.take(profile, link=LINK)
    assert store.list_backups() == [] and not list(store.root.glob(".tmp-*"))


def test_a_file_vanishing_or_appearing_during_the_copy_is_rejected(store, profile, monkeypatch):
    real_copy = backup_module._copy_file

    def copy_and_compact(src, dst):
        result = real_copy(src, dst)
        if src.name == "000005.ldb":  # LevelDB compaction writes a new table meanwhile
            (src.parent / "000007.ldb").write_bytes(b"compacted")
        return result

    monkeypatch.setattr(backup_module, "_copy_file", copy_and_compact)
    with pytest.raises(BackupError, match="changed while they were copied"):
        store.take(profile)
    monkeypatch.setattr(backup_module, "_copy_file",
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
                    if not any(k.startswith(p) for p in backup_module.LOGIN_PARTS + backup_module.COMPANIONS)}

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


def test_restore_into_a_missing_profile_and_keep_two_broken(store, profile, tmp_path):
    info = store.take(profile, link=LINK)
    fresh = tmp_path / "new-machine" / "session-test"
    assert store.restore(info, fresh).moved_aside is None
    assert tree(fresh) == LOGIN
    for _ in range(3):
        store.restore(info, fresh)
    assert len(list(store.broken_root.iterdir())) == 2


def test_restore_of_a_corrupt_backup_leaves_the_profile_alone(store, profile):
    info = store.take(profile, link=LINK)
    (info.path / f"{LS}/CURRENT").write_bytes(b"MANIFEST-000002\n")
    (profile / f"{LS}/000003.log").write_bytes(b"current")
    before = tree(profile)
    with pytest.raises(BackupCorrupt, match="CURRENT"):
        store.restore(info, profile)
    assert tree(profile) == before and not store.broken_root.exists()


def test_restore_newest_falls_back_and_honours_skip(store, profile, tmp_path):
    oldest = store.take(profile, link=LINK)
    older = store.take(profile, link=LINK)
    newest = store.take(profile, link=LINK)
    (newest.path / "manifest.json").unlink()
    target = tmp_path / "target"
    assert store.restore_newest(target).name == older.name
    assert store.restore_newest(target, skip={older.name}).name == oldest.name
    assert store.restore_newest(target, skip={older.name, oldest.name}) is None


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


def test_delete_all_and_for_link(store, profile, tmp_path):
    store.take(profile, link=LINK)
    other = store.take(profile, link="15550002222:1@c.us")
    store.take(profile, link=LINK)
    store.restore(other, tmp_path / "restored")
    assert store.delete_for_link(LINK) == 2
    assert [b.name for b in store.list_backups()] == [other.name]
    assert store.delete_all() == 1 and store.list_backups() == []
    assert not store.broken_root.exists()


def test_pack_unpack_round_trip(store, profile, tmp_path):
    info = store.take(profile, link=LINK)
    blob = pack(info)
    assert backup_module.read_manifest(info.path).to_json() == json.loads((info.path / "manifest.json").read_text())
    elsewhere = tmp_path / "dyno2" / "backups"
    copy = unpack(blob, elsewhere)
    assert copy.name == info.name and copy.link == LINK
    assert tree(copy.path) == tree(info.path)
    assert stat.S_IMODE(copy.path.stat().st_mode) == 0o700
    assert unpack(blob, elsewhere).path == copy.path  # idempotent
    (copy.path / "Local State").write_bytes(b"torn")
    assert tree(unpack(blob, elsewhere).path) == tree(info.path)  # a corrupt copy is replaced
    assert not list(elsewhere.glob(".tmp-*"))
    assert store.unpack(blob).path == info.path  # already there and sound: kept
    (info.path / "Local State").unlink()
    with pytest.raises(BackupCorrupt, match="missing file Local State"):
        pack(info)  # a corrupt backup is never shipped


def tar_of(members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name, data=b"", kind=tarfile.REGTYPE, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), target
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink", "device",
                                  "unlisted", "size", "garbage", "truncated", "bad hash"])
def test_unpack_rejects_malicious_or_broken_archives(store, profile, tmp_path, case):
    info = store.take(profile, link=LINK)
    raw_manifest = (info.path / "manifest.json").read_bytes()
    good = [member(f"{info.name}/manifest.json", raw_manifest)] + [
        member(f"{info.name}/{rel}", data) for rel, data in LOGIN.items()]
    blob = {
        "dotdot": lambda: tar_of(good[:1] + [member(f"{info.name}/../../evil", b"x")]),
        "absolute": lambda: tar_of([member("/tmp/evil", b"x")]),
        "symlink": lambda: tar_of(good[:1] + [member(f"{info.name}/Local State", kind=tarfile.SYMTYPE,
                                                     target="/etc/passwd")]),
        "hardlink": lambda: tar_of(good[:1] + [member(f"{info.name}/Local State", kind=tarfile.LNKTYPE,
                                                      target="/etc/passwd")]),
        "device": lambda: tar_of(good[:1] + [member(f"{info.name}/Local State", kind=tarfile.CHRTYPE)]),
        "unlisted": lambda: tar_of(good + [member(f"{info.name}/Default/Extra", b"x")]),
        "size": lambda: tar_of(good[:1] + [member(f"{info.name}/Local State", b"{}")]),
        "garbage": lambda: b"\x1f\x8b not really gzip" * 20,
        "truncated": lambda: (lambda b: b[:len(b) // 2])(pack(info)),
        "bad hash": lambda: tar_of(good[:-1] + [member(f"{info.name}/Local State", b"X" * len(LOGIN["Local State"]))]),
    }[case]()
    dest = tmp_path / "dest"
    with pytest.raises(BackupCorrupt):
        unpack(blob, dest)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()
    assert list(dest.iterdir()) == []  # nothing installed, no temporary folder left
