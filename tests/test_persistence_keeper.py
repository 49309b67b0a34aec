"""The keeper's decisions, on real disk: restores before launch, clearings that keep a cleared
login cleared (also when another process on this data folder was asked), and the hooks.
The database's side is in test_persistence_keeper_database.py."""
from __future__ import annotations

import json
import shutil

import pytest
from profiles import WID, make_profile

from whatsapp.bus import Bus
from whatsapp.config import Config
from whatsapp.persistence import keeper as keeper_module
from whatsapp.persistence.keeper import Keeper
from whatsapp.persistence.profile import has_login, stored_login
from whatsapp.persistence.strategy import LoginHere, Strategy
from whatsapp.states import Account

ACCOUNT = Account(wid=WID, phone="15550001111")


def config_for(data, **changes) -> Config:
    return Config(**{"session_dir": data, "client_id": "test", "backup_delay_s": 0.0, **changes})


@pytest.fixture
def make_keeper(tmp_path):
    keepers = []

    def make(data=None, **changes) -> Keeper:
        keeper = Keeper(config_for(data or tmp_path / "data", **changes), Bus("test"))
        keeper.start()
        keepers.append(keeper)
        return keeper

    yield make
    for keeper in keepers:
        keeper.stop(5)


def linked(keeper: Keeper) -> Keeper:
    """A profile with a login, ready, and one backup of it."""
    make_profile(keeper.config.session_dir, name=keeper.config.profile_dir.name)
    keeper.check_owner()
    keeper.before_launch(keeper.config.profile_dir)
    keeper.on_ready(ACCOUNT, linked_now=True)
    keeper.take_backup(keeper.config.profile_dir, ACCOUNT)
    assert keeper.status()["backups"]["count"] == 1
    return keeper


def test_the_base_strategy_does_nothing():
    strategy = Strategy()
    strategy.start()
    strategy.check_owner(LoginHere(present=False))
    strategy.keep_owner()
    assert strategy.next_restore(set()) is None and strategy.restore_unresolved() is False
    assert strategy.status() == {}
    strategy.stop(1)


def test_a_profile_without_a_login_gets_the_newest_backup(make_keeper, tmp_path):
    keeper = linked(make_keeper())
    profile = keeper.config.profile_dir
    newest = keeper.backups.take(profile, link=WID)
    fresh = make_keeper(tmp_path / "other")
    assert not has_login(fresh.config.profile_dir)
    for info in keeper.backups.list_backups():
        fresh.backups.unpack(keeper.backups.pack(info.name)[0])
    fresh.before_launch(fresh.config.profile_dir)
    assert stored_login(fresh.config.profile_dir).wid == WID
    record = fresh.record.current
    assert record.restores_from_backup == 1 and record.login_since is not None
    assert fresh.backups.list_backups()[0].name == newest.name
    assert not fresh.restore_unresolved()


def test_a_login_on_disk_is_launched_as_it_is(make_keeper):
    keeper = linked(make_keeper())
    before = keeper.record.current.restores_from_backup
    keeper.before_launch(keeper.config.profile_dir)
    assert keeper.record.current.restores_from_backup == before


def test_forget_writes_the_clearing_before_deleting_anything(make_keeper, tmp_path, monkeypatch):
    """Issue 21: a crash between deleting the profile and deleting the backups left backups
    that the next start restored."""
    keeper = linked(make_keeper())

    def delete_then_crash(profile_dir):
        shutil.rmtree(profile_dir)
        raise KeyboardInterrupt("killed between deleting the profile and the backups")

    monkeypatch.setattr(keeper_module, "delete_profile", delete_then_crash)
    with pytest.raises(KeyboardInterrupt):
        keeper.forget(keeper.config.profile_dir)
    assert not keeper.config.profile_dir.exists() and keeper.backups.list_backups()  # the crash's state
    body = json.loads((tmp_path / "data" / "session-test.clearings.json").read_text())
    assert [c["link"] for c in body["clearings"]] == [WID]
    monkeypatch.undo()

    again = make_keeper()  # the next start
    assert again.backups.list_backups() == []  # the cleared backups are deleted at start
    again.check_owner()
    again.before_launch(again.config.profile_dir)
    assert not has_login(again.config.profile_dir) and again.record.current.restores_from_backup == 0


def test_a_backup_of_a_cleared_login_is_never_restored(make_keeper, tmp_path):
    keeper = linked(make_keeper())
    since = keeper.record.current.login_since
    blob, _ = keeper.backups.pack(keeper.backups.list_backups()[0].name)
    spare = make_profile(tmp_path / "spare")  # the same login, still running somewhere
    keeper.forget(keeper.config.profile_dir)
    # Its backup copied back, and one taken after the clearing by a server that had not heard.
    keeper.backups.unpack(blob)
    keeper.backups.take(spare, link=WID, login_since=since)
    assert len(keeper.backups.list_backups()) == 2
    keeper.before_launch(keeper.config.profile_dir)
    assert not has_login(keeper.config.profile_dir)
    assert keeper.backups.list_backups() == [] and keeper.next_restore(set()) is None


def test_a_clearing_made_by_another_process_on_this_folder(make_keeper, tmp_path):
    """Issue 21: clear-session answered by a server that does not hold the profile's lock."""
    data = tmp_path / "data"
    running = linked(make_keeper(data))
    assert not running.cleared_elsewhere()
    asked = make_keeper(data)  # another process on the same data folder
    asked.forget(asked.config.profile_dir, own_profile=False)
    assert has_login(running.config.profile_dir)  # not its profile to delete: a browser runs on it
    assert running.backups.list_backups() == []
    assert not running.cleared_elsewhere()  # no I/O in the call itself...
    running.keep_owner()  # ...learnt here
    assert running.cleared_elsewhere()
    assert running.status()["record"]["clearedElsewhereAt"]
    running.take_backup(running.config.profile_dir, ACCOUNT)
    assert running.backups.list_backups() == []  # no backup of a cleared login
    # If it is not told to clear (or restarts first), the next launch deletes the login.
    running.check_owner()
    running.before_launch(running.config.profile_dir)
    assert not has_login(running.config.profile_dir) and not running.cleared_elsewhere()


@pytest.mark.parametrize("wid", ["15550001111:4@c.us", WID], ids=["new wid", "wid seen before"])
def test_a_new_link_after_a_clearing_is_kept(make_keeper, wid):
    keeper = linked(make_keeper())
    keeper.forget(keeper.config.profile_dir)
    new = Account(wid=wid)  # a login is known by when it was linked, not by its wid
    keeper.check_owner()
    keeper.before_launch(keeper.config.profile_dir)  # no login: a QR, and someone scans it
    make_profile(keeper.config.session_dir, name=keeper.config.profile_dir.name, wid=new.wid)
    keeper.on_ready(new, linked_now=True)
    keeper.keep_owner()
    assert not keeper.cleared_elsewhere()
    keeper.take_backup(keeper.config.profile_dir, new)
    assert [b.link for b in keeper.backups.list_backups()] == [new.wid]
    assert keeper.record.current.login_source == "linked"


def test_a_phone_logout_is_a_clearing_too(make_keeper):
    keeper = linked(make_keeper())
    keeper.on_logged_out()
    assert keeper.backups.list_backups() == []
    assert keeper.clearings.ending(WID, None).reason == "logged_out"
    assert keeper.record.current.logged_out_at is not None
