"""A backup as one blob (the database's format) and back: round trip, and archives that
must be refused."""
from __future__ import annotations

import io
import json
import stat
import tarfile
from pathlib import Path

import pytest
from profiles import LOGIN, Clock, make_profile, tree

from whatsapp.persistence.archive import pack, unpack
from whatsapp.persistence.backups import BackupCorrupt, LocalBackups
from whatsapp.persistence.manifest import read_manifest

LINK = "15550001111:3@c.us"


@pytest.fixture
def store(tmp_path):
    return LocalBackups(tmp_path / "backups" / "test", "test", keep=3, clock=Clock())


@pytest.fixture
def profile(tmp_path):
    return make_profile(tmp_path)


def test_pack_unpack_round_trip(store, profile, tmp_path):
    info = store.take(profile, link=LINK)
    blob, manifest = pack(info.path)
    assert manifest == read_manifest(info.path)
    assert read_manifest(info.path).to_json() == json.loads((info.path / "manifest.json").read_text())
    assert store.pack(info.name) == (blob, manifest)
    elsewhere = tmp_path / "dyno2" / "backups"
    copy = unpack(blob, elsewhere)
    assert copy.name == info.name and read_manifest(copy).link == LINK
    assert tree(copy) == tree(info.path)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o700
    assert unpack(blob, elsewhere) == copy  # idempotent
    (copy / "Local State").write_bytes(b"torn")
    assert tree(unpack(blob, elsewhere)) == tree(info.path)  # a corrupt copy is replaced
    assert not list(elsewhere.glob(".tmp-*"))
    unpacked = store.unpack(blob)  # already there and sound: kept
    assert unpacked.path == info.path and unpacked.link == LINK
    (info.path / "Local State").unlink()
    with pytest.raises(BackupCorrupt, match="missing file Local State"):
        pack(info.path)  # a corrupt backup is never shipped


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
        "dotdot": lambda: tar_of([*good[:1], member(f"{info.name}/../../evil", b"x")]),
        "absolute": lambda: tar_of([member("/tmp/evil", b"x")]),
        "symlink": lambda: tar_of([*good[:1], member(f"{info.name}/Local State", kind=tarfile.SYMTYPE,
                                                     target="/etc/passwd")]),
        "hardlink": lambda: tar_of([*good[:1], member(f"{info.name}/Local State", kind=tarfile.LNKTYPE,
                                                      target="/etc/passwd")]),
        "device": lambda: tar_of([*good[:1], member(f"{info.name}/Local State", kind=tarfile.CHRTYPE)]),
        "unlisted": lambda: tar_of([*good, member(f"{info.name}/Default/Extra", b"x")]),
        "size": lambda: tar_of([*good[:1], member(f"{info.name}/Local State", b"{}")]),
        "garbage": lambda: b"\x1f\x8b not really gzip" * 20,
        "truncated": lambda: (lambda b: b[:len(b) // 2])(pack(info.path)[0]),
        "bad hash": lambda: tar_of([*good[:-1], member(f"{info.name}/Local State", b"X" * len(LOGIN["Local State"]))]),
    }[case]()
    dest = tmp_path / "dest"
    with pytest.raises(BackupCorrupt):
        unpack(blob, dest)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()
    assert list(dest.iterdir()) == []  # nothing installed, no temporary folder left
