"""The profile on disk: the exclusive lock, stale Chromium locks, the login's markers in
Chromium's LevelDB (log and tables), identity."""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys

import pytest
from profiles import LS, WID, log_bytes, login_storage, make_profile, storage_key, storage_value, table_bytes

from whatsapp.persistence import leveldb
from whatsapp.persistence.profile import ProfileLock, StoredLogin, delete_profile, has_login, stored_login
from whatsapp.web.page import account_from_storage
from whatsapp.web.processes import clear_stale_singleton


def test_profile_lock_is_exclusive_and_released(tmp_path):
    first, second = ProfileLock(tmp_path / "x.lock"), ProfileLock(tmp_path / "x.lock")
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == str(os.getpid())
    first.release()
    assert second.acquire()
    second.release()


def test_profile_lock_dies_with_its_holder(tmp_path):
    lock_path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, fcntl, os; f = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         " fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not ProfileLock(lock_path).acquire()
    finally:
        holder.kill()
        holder.wait(10)
    mine = ProfileLock(lock_path)
    assert mine.acquire()
    mine.release()


def _chromium_lock(profile, target):
    profile.mkdir(exist_ok=True)
    os.symlink(target, profile / "SingletonLock")
    (profile / "SingletonCookie").write_text("x")
    os.symlink("/tmp/nowhere", profile / "SingletonSocket")


def test_lock_from_another_host_is_cleared(tmp_path):
    profile = tmp_path / "p"
    _chromium_lock(profile, "old-dyno-1234-99")
    assert "another host" in clear_stale_singleton(profile, socket.gethostname())
    assert not any(os.path.lexists(profile / n) for n in ("SingletonLock", "SingletonSocket", "SingletonCookie"))


def test_lock_of_a_dead_pid_is_cleared(tmp_path):
    profile = tmp_path / "p"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _chromium_lock(profile, f"{socket.gethostname()}-{dead.pid}")
    assert "gone" in clear_stale_singleton(profile, socket.gethostname())


def test_lock_of_a_live_pid_that_is_not_a_browser_is_cleared(tmp_path):
    profile = tmp_path / "p"
    _chromium_lock(profile, f"{socket.gethostname()}-{os.getpid()}")
    assert "not a browser" in clear_stale_singleton(profile, socket.gethostname())


def test_a_live_browser_lock_is_never_touched(tmp_path):
    profile = tmp_path / "p"
    profile.mkdir()
    # A live process whose command line holds this profile's --user-data-dir.
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()",
                             f"--user-data-dir={profile.resolve()}"], stdin=subprocess.PIPE)
    try:
        _chromium_lock(profile, f"{socket.gethostname()}-{live.pid}")
        assert clear_stale_singleton(profile, socket.gethostname()) is None
        assert os.path.lexists(profile / "SingletonLock")
    finally:
        live.kill()
        live.wait(10)


def write_storage(profile, files: dict[str, bytes]):
    folder = profile / LS
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_chromium_files_without_the_markers_are_no_login(tmp_path):
    """Issue 21: any file in Local Storage counted as a login, but Chromium creates it for
    the QR page too (this is what it writes there), so a fresh machine whose database was
    down at the first start never asked for its backup again."""
    profile = tmp_path / "p"
    assert stored_login(profile) is None and not has_login(profile)
    (profile / "Default" / "Local Storage" / "leveldb").mkdir(parents=True)
    assert not has_login(profile)
    write_storage(profile, {"000003.log": log_bytes([{b"VERSION": b"1"}]), "CURRENT": b"MANIFEST-000001\n",
                            "LOCK": b"", "LOG": b"Recovering log #3", "MANIFEST-000001": b"\x00" * 41})
    assert not has_login(profile)
    # One marker alone is not a login either (WhatsApp Web needs both).
    write_storage(profile, {"000003.log": log_bytes([{storage_key("WANoiseInfo"): storage_value("{}")}])})
    assert not has_login(profile)


def test_the_login_markers_in_the_log(tmp_path):
    profile = tmp_path / "p"
    write_storage(profile, {"000003.log": log_bytes([{b"VERSION": b"1"}, login_storage()])})
    assert stored_login(profile) == StoredLogin(WID) and has_login(profile)
    # Any origin (the web URL is configurable), and values in UTF-16 as Chromium may store them.
    other = {storage_key("last-wid-md", "http://127.0.0.1:3002"): b"\x00" + f'"{WID}"'.encode("utf-16-le"),
             storage_key("WANoiseInfo", "http://127.0.0.1:3002"): storage_value("{}")}
    write_storage(profile, {"000003.log": log_bytes([other])})
    assert stored_login(profile) == StoredLogin(WID)


def test_a_logout_deletes_the_markers_inside_the_same_files(tmp_path):
    """localStorage.clear() at a logout appends deletions: the key's bytes stay in the file."""
    profile = tmp_path / "p"
    deletions = {key: None for key in login_storage() if key != b"VERSION"}
    write_storage(profile, {"000003.log": log_bytes([login_storage(), deletions])})
    assert b"last-wid-md" in (profile / LS / "000003.log").read_bytes()
    assert stored_login(profile) is None
    # Linked again later: the newest record wins.
    write_storage(profile, {"000003.log": log_bytes([login_storage(), deletions, login_storage("1555:9@c.us")])})
    assert stored_login(profile) == StoredLogin("1555:9@c.us")


@pytest.mark.parametrize("snappy", [True, False])
def test_the_login_markers_in_a_compacted_table(tmp_path, snappy):
    """In a table keys share prefixes and blocks are Snappy-compressed: `last-wid-md` need
    not appear in the file at all."""
    profile = tmp_path / "p"
    filler = {storage_key(f"last-{n:03d}"): storage_value("x" * 300) for n in range(30)}
    table = table_bytes({**login_storage(), **filler}, seq=5, snappy=snappy)
    write_storage(profile, {"000005.ldb": table, "000006.log": log_bytes([{b"VERSION": b"1"}], first_seq=60)})
    if snappy:
        assert b"last-wid-md" not in table
    assert stored_login(profile) == StoredLogin(WID)
    # A later deletion in the log beats the table's value, and a newer table beats an older.
    write_storage(profile, {"000006.log": log_bytes([{storage_key("last-wid-md"): None}], first_seq=60)})
    assert stored_login(profile) is None
    write_storage(profile, {"000007.ldb": table_bytes(login_storage("1555:8@c.us"), seq=70, snappy=snappy)})
    assert stored_login(profile) == StoredLogin("1555:8@c.us")


def test_an_unreadable_file_never_reads_as_no_login(tmp_path):
    """A torn tail (a browser writing) or a format this reader does not know: a login of
    unknown link, so that nothing ever replaces a login it could not read."""
    profile = tmp_path / "p"
    whole = log_bytes([{b"VERSION": b"1"}, login_storage()])
    write_storage(profile, {"000003.log": whole + struct.pack("<IHB", 0, 500, 1) + b"torn"})
    assert stored_login(profile) == StoredLogin(WID)  # the whole batches still count
    write_storage(profile, {"000003.log": log_bytes([{b"VERSION": b"1"}]) + struct.pack("<IHB", 0, 500, 1)})
    assert leveldb.read(profile / LS).complete is False
    assert stored_login(profile) == StoredLogin(None)
    write_storage(profile, {"000003.log": log_bytes([{b"VERSION": b"1"}]),
                            "000005.ldb": table_bytes(login_storage(), seq=5, compression=4)})  # zstd, say
    assert stored_login(profile) == StoredLogin(None)
    write_storage(profile, {"000005.ldb": b"not a table" * 10})
    assert stored_login(profile) == StoredLogin(None)


def test_snappy_round_trips():
    from profiles import snappy_compress

    for data in (b"", b"a", b"abcd" * 1000, os.urandom(3000), b"x" * 70000 + os.urandom(100)):
        assert leveldb.snappy_decompress(snappy_compress(data)) == data
    with pytest.raises(leveldb.Corrupt):
        leveldb.snappy_decompress(b"\x05\x09\x00")  # a copy before the start


def test_login_presence_and_deletion(tmp_path):
    profile = make_profile(tmp_path)
    assert has_login(profile)
    assert delete_profile(profile)
    assert not profile.exists() and not delete_profile(profile)
    assert not has_login(profile)


def test_account_from_the_page_storage():
    store = {"last-wid-md": '"15550001111:3@c.us"', "last-pushname": '"Shop"', "mobile-platform": '"android"'}
    account = account_from_storage(store)
    assert (account.phone, account.pushname, account.platform) == ("15550001111", "Shop", "android")
    assert account.wid == "15550001111:3@c.us"
    empty = account_from_storage({"last-wid-md": None})
    assert (empty.phone, empty.pushname, empty.platform) == (None, None, None)
    assert account_from_storage({"last-wid-md": '"not-a-number@c.us"'}).phone is None
