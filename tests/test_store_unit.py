"""The profile on disk: the exclusive lock, stale Chromium locks, login presence, identity."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from whatsapp.web.processes import clear_stale_singleton
from whatsapp.web.page import account_from_storage
from whatsapp.persistence.profile import ProfileLock, delete_profile, has_login


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


def test_login_presence_and_deletion(tmp_path):
    profile = tmp_path / "p"
    assert not has_login(profile)
    (profile / "Default" / "Local Storage" / "leveldb").mkdir(parents=True)
    assert has_login(profile)
    assert delete_profile(profile)
    assert not profile.exists() and not delete_profile(profile)


def test_account_from_the_page_storage():
    store = {"last-wid-md": '"15550001111:3@c.us"', "last-pushname": '"Shop"', "mobile-platform": '"android"'}
    account = account_from_storage(store)
    assert (account.phone, account.pushname, account.platform) == ("15550001111", "Shop", "android")
    assert account.wid == "15550001111:3@c.us"
    empty = account_from_storage({"last-wid-md": None})
    assert (empty.phone, empty.pushname, empty.platform) == (None, None, None)
    assert account_from_storage({"last-wid-md": '"not-a-number@c.us"'}).phone is None
