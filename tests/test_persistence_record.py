"""The session record file: atomic writes, corrupt files set aside, counters, the link and the
login's origin."""
from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whatsapp.persistence import record as record_module
from whatsapp.persistence.record import RecordFile, SessionRecord, phone_of

WID = "15550001111:3@c.us"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def path(tmp_path):
    return tmp_path / "session-test.json"


@pytest.fixture
def records(path):
    return RecordFile(path, clock=Clock())


def test_missing_file_is_a_fresh_record(records, path):
    assert records.load() == SessionRecord()
    assert not path.exists() and records.corrupt_note is None
    assert records.expects_login is False


def test_update_writes_camel_case_json_owner_only(records, path):
    old = os.umask(0)
    try:
        records.update(last_reason="network")
    finally:
        os.umask(old)
    body = json.loads(path.read_text())
    assert body["lastReason"] == "network" and body["format"] == 1
    assert body["updatedAt"].endswith("Z") and body["linkedAt"] is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert RecordFile(path).load() == records.current  # round trip
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_write_is_atomic_when_it_fails(records, path, monkeypatch):
    records.update(last_reason="network")
    before = path.read_bytes()

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(record_module.os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        records.update(last_reason="conflict")
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_link_ready_and_logout(records, path):
    record = records.mark_ready(WID)
    assert record.wid == WID and record.phone == "15550001111" and record.linked_at is not None
    assert records.expects_login
    linked_at = record.linked_at
    assert records.mark_ready(WID).linked_at == linked_at  # same account: still the same link
    assert records.mark_ready("15550002222:1@c.us").linked_at > linked_at
    records.update(login_since=records._clock(), login_source="database")
    record = records.clear_link(logged_out=True, reason="logged_out")
    assert record.wid is None and record.phone is None and record.linked_at is None
    assert record.login_since is None and record.login_source is None
    assert record.logged_out_at is not None and record.last_reason == "logged_out"
    assert not RecordFile(path).load().expects_login
    status = records.to_status()
    assert status["expectsLogin"] is False and status["loggedOutAt"].endswith("Z")
    assert status["lastReason"] == "logged_out" and status["recordNote"] is None
    assert records.mark_ready(WID).logged_out_at is not None and records.expects_login  # relinked


def test_counters_and_clean_shutdown(records):
    for _ in range(3):
        records.increment("restored_without_qr")
    assert records.increment("restores_from_backup").restores_from_backup == 1
    assert records.load().restored_without_qr == 3
    with pytest.raises(TypeError):
        records.increment("wid")
    with pytest.raises(TypeError):
        records.update(no_such_field=1)
    with pytest.raises(TypeError):
        records.update(restored_without_qr=True)
    records.update(last_started_at=records._clock())
    assert records.current.previous_run_unclean
    records.update(last_clean_shutdown_at=records._clock())
    assert not records.current.previous_run_unclean


def test_increments_from_threads_are_not_lost(records):
    threads = [threading.Thread(target=lambda: [records.increment("restored_without_qr")
                                                for _ in range(10)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert records.load().restored_without_qr == 40


@pytest.mark.parametrize("content", [
    b"{not json", b"\xff\xfe\x00", b"[]", b'{"restoredWithoutQr": -1}',
    b'{"restoredWithoutQr": true}', b'{"linkedAt": "yesterday"}', b'{"wid": 5}',
    b'{"format": 2}', b"[" * 100000, b'{"restoredWithoutQr": ' + b"9" * 5000 + b"}",
])
def test_corrupt_record_is_rebuilt_and_kept_aside(records, path, caplog, content):
    path.write_bytes(content)
    assert records.load() == SessionRecord()
    aside = list(path.parent.glob("session-test.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert "session-test.json" in caplog.text and "corrupt" in caplog.text
    assert records.corrupt_note.startswith("session-test.json was corrupt and was rebuilt")
    assert records.to_status()["recordNote"] == records.corrupt_note
    records.increment("restores_from_backup")
    assert RecordFile(path).load().restores_from_backup == 1


def test_only_three_corrupt_copies_are_kept(records, path):
    for n in range(5):
        path.write_bytes(b"bad %d" % n)
        records.load()
    kept = sorted(p.read_bytes() for p in path.parent.glob("*.corrupt-*"))
    assert kept == [b"bad 2", b"bad 3", b"bad 4"]


def test_unknown_keys_and_naive_times_are_tolerated(records, path):
    path.write_text(json.dumps({"linkedAt": "2026-01-01T00:00:00", "future": [1], "wid": WID}))
    record = records.load()
    assert record.linked_at == datetime(2026, 1, 1, tzinfo=UTC) and record.wid == WID
    assert records.corrupt_note is None


def test_phone_of():
    assert phone_of(WID) == "15550001111"
    assert phone_of("15550001111@c.us") == "15550001111"
    assert phone_of(None) is None and phone_of("") is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(["linkedAt", "wid", "restoredWithoutQr", "loggedOutAt", "format"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
                    max_size=5).map(lambda d: json.dumps(d).encode()),
))
def test_any_bytes_never_crash_load(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("record") / "session-x.json"
    path.write_bytes(content)
    records = RecordFile(path)
    record = records.load()
    assert isinstance(record, SessionRecord)
    assert isinstance(records.to_status(), dict)
    if records.corrupt_note is None:  # accepted content survives a write and a reload
        assert RecordFile(path).load() == record
        records.update(last_reason="x")
        assert RecordFile(path).load().last_reason == "x"
    else:
        assert not path.exists()
