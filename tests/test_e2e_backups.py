"""Backups of the login, restore on corruption, and the session record, end to end.

gunicorn as the Procfile runs it, real Chromium, the simulator. TEST_ENV sets
WHATSAPP_BACKUP_DELAY_S=1, so the first backup is taken about a second after `ready`, and a
clean shutdown after that takes one more from the closed (quiet) profile.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from harness import CLIENT_ID, browsers_on, link_phone, ready_without_qr, wait_for

from whatsapp.persistence import manifest as backup_mod

BACKUP_LINE = re.compile(r"backup (\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}): (\d+) bytes in ([\d.]+) s")
RESTORE_LINE = re.compile(r"restored backup (\S+) into")


# -- helpers ----------------------------------------------------------------------------------

def profile_dir(data: Path) -> Path:
    return data / f"session-{CLIENT_ID}"


def backup_root(data: Path) -> Path:
    return data / "backups" / CLIENT_ID


def record_path(data: Path) -> Path:
    return data / f"session-{CLIENT_ID}.json"


def backup_folders(data: Path) -> list[Path]:
    """Backup folders (not `.tmp-*`), newest first, as the product names them."""
    root = backup_root(data)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if backup_mod.NAME_RE.fullmatch(p.name)),
                  key=lambda p: p.name, reverse=True)


def read_record(data: Path) -> dict:
    return json.loads(record_path(data).read_text())


def wait_backups(server, count: int, timeout: float = 90) -> dict:
    return server.wait_status(lambda s: s["backups"]["count"] >= count, timeout=timeout,
                              message=f"{count} backup(s)")


def backup_lines(server) -> list[tuple[str, int, float]]:
    return [(m.group(1), int(m.group(2)), float(m.group(3))) for m in BACKUP_LINE.finditer(server.log())]


def wait_ready_without_qr(server, timeout: float = 90) -> dict:
    ready = ready_without_qr(server, timeout)
    assert ready["reason"] in (None, "auth_failed"), ready
    return ready


def link_and_back_up(servers, sim, data: Path):
    """A linked server with at least one verified backup; returns (server, its newest backup)."""
    server = servers(env={"WHATSAPP_WEB_URL": sim.url}, data_dir=data)
    link_phone(server, sim)
    status = wait_backups(server, 1)
    folders = backup_folders(data)
    assert folders and status["backups"]["latest"] == folders[0].name
    manifest = backup_mod.verify(folders[0])
    assert manifest.client_id == CLIENT_ID
    assert manifest.link and manifest.link.startswith("15550001111")
    paths = {entry.path for entry in manifest.files}
    assert any(p.startswith("Default/IndexedDB/") for p in paths), paths
    assert any(p.startswith("Default/Local Storage/") for p in paths), paths
    assert not any("Singleton" in p or p.endswith("/LOCK") or "Cache" in p for p in paths), paths
    return server, folders[0]


def stop_cleanly(server) -> None:
    server.stop()
    assert server.proc.returncode == 0, server.log()
    assert not browsers_on(server.data_dir)


def leveldb_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.name != "LOCK"]


# -- tests ------------------------------------------------------------------------------------

def test_deleted_indexeddb_is_restored_from_backup(servers, sim, tmp_path):
    data = tmp_path / "data"
    server, first = link_and_back_up(servers, sim, data)
    lines = backup_lines(server)
    assert lines and lines[0][0] == first.name and lines[0][1] > 0, server.log()
    print(f"\nfirst backup {first.name}: {lines[0][1]} bytes in {lines[0][2]:.2f} s")
    stop_cleanly(server)
    # A clean stop after the session was ready >= WHATSAPP_BACKUP_DELAY_S takes one more.
    assert len(backup_folders(data)) >= 2, backup_folders(data)
    for folder in backup_folders(data):
        backup_mod.verify(folder)
    assert read_record(data)["lastCleanShutdownAt"]

    shutil.rmtree(profile_dir(data) / "Default" / "IndexedDB")
    again = servers(env={"WHATSAPP_WEB_URL": sim.url}, data_dir=data)
    ready = wait_ready_without_qr(again)
    assert ready["session"]["phone"] == "15550001111"
    assert ready["record"]["restoresFromBackup"] >= 1, ready["record"]
    assert read_record(data)["restoresFromBackup"] >= 1
    assert RESTORE_LINE.search(again.log()), again.log()
    assert len(sim.phone_state()["devices"]) == 1  # the same device, no new link


def test_garbage_leveldb_is_restored_from_backup(servers, sim, tmp_path):
    data = tmp_path / "data"
    server, _ = link_and_back_up(servers, sim, data)
    stop_cleanly(server)

    damaged = leveldb_files(profile_dir(data) / "Default" / "IndexedDB")
    assert damaged
    for path in damaged:
        size = max(path.stat().st_size, 64)
        path.write_bytes(os.urandom(size))
    again = servers(env={"WHATSAPP_WEB_URL": sim.url}, data_dir=data)
    ready = wait_ready_without_qr(again)
    assert ready["record"]["restoresFromBackup"] >= 1, ready["record"]
    assert read_record(data)["restoresFromBackup"] >= 1
    assert len(sim.phone_state()["devices"]) == 1


def test_corrupt_newest_backup_is_skipped_for_an_older_one(servers, sim, tmp_path):
    data = tmp_path / "data"
    server, _ = link_and_back_up(servers, sim, data)
    stop_cleanly(server)
    # A second run: ready without a QR, then its clean stop takes the newest backup. (The
    # first run's live backup, taken 1 s after linking, may predate localStorage's lazy
    # flush (runtime.md) and hold no `last-wid-md`: only later backups are sure to restore.)
    second = servers(env={"WHATSAPP_WEB_URL": sim.url}, data_dir=data)
    wait_ready_without_qr(second)
    wait_for(lambda: read_record(data)["lastBackupAt"] and len(backup_lines(second)) >= 1,
             timeout=60, message="a backup in the second run")
    stop_cleanly(second)
    folders = backup_folders(data)
    assert len(folders) >= 2, folders
    newest, older = folders[0], folders[1]
    assert backup_lines(second)[-1][0] == newest.name, second.log()
    assert backup_lines(second)[0][0] == older.name, second.log()
    # Flip one byte of a login file in the newest backup.
    victim = next(p for p in leveldb_files(newest / "Default" / "IndexedDB") if p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    # An unfinished backup (a take interrupted mid-copy) is never a candidate: a full,
    # even newer-looking copy in `.tmp-*` must be ignored and swept.
    unfinished = backup_root(data) / ".tmp-0badc0de"
    shutil.copytree(older, unfinished)

    shutil.rmtree(profile_dir(data) / "Default" / "IndexedDB")
    again = servers(env={"WHATSAPP_WEB_URL": sim.url}, data_dir=data)
    ready = wait_ready_without_qr(again)
    assert ready["record"]["restoresFromBackup"] >= 1
    restored = RESTORE_LINE.findall(again.log())
    assert restored and restored[0] == older.name, (restored, newest.name, older.name, again.log())
    assert newest.name not in restored
    assert f"skipping backup: backup {newest.name}" in again.log(), again.log()


def test_phone_logout_deletes_backups(servers, sim, tmp_path):
    data = tmp_path / "data"
    server, _ = link_and_back_up(servers, sim, data)
    sim.logout()
    status = server.wait_status(lambda s: s["status"] == "qr" and s["reason"] == "logged_out",
                                timeout=60, message="qr after the phone logged out")
    assert status["session"]["hasSession"] is False
    assert status["backups"]["count"] == 0, status["backups"]
    assert backup_folders(data) == []
    record = read_record(data)
    assert record["wid"] is None and record["linkedAt"] is None and record["loggedOutAt"], record
    assert record["lastReason"] == "logged_out"
    assert status["record"]["expectsLogin"] is False


def test_disconnect_and_clear_session_delete_backups_and_link(servers, sim, tmp_path):
    data = tmp_path / "data"
    server, _ = link_and_back_up(servers, sim, data)
    code, body = server.post("/api/whatsapp/clear-session", timeout=60)
    assert code == 200 and body["success"] is True, body
    status = server.status()
    assert status["status"] == "stopped"
    assert status["backups"]["count"] == 0 and backup_folders(data) == []
    assert not (data / "broken" / CLIENT_ID).exists()
    record = read_record(data)
    assert record["wid"] is None and record["linkedAt"] is None, record
    assert status["record"]["expectsLogin"] is False

    code, _ = server.post("/api/whatsapp/initialize")
    assert code == 200
    link_phone(server, sim)
    wait_backups(server, 1)
    code, body = server.post("/api/whatsapp/disconnect", timeout=60)
    assert code == 200, body
    status = server.status()
    assert status["status"] == "stopped"
    assert status["backups"]["count"] == 0 and backup_folders(data) == []
    record = read_record(data)
    assert record["wid"] is None and record["linkedAt"] is None and record["lastReason"] == "disconnected"
    # disconnect logged the page out: the phone lists only the device clear-session left.
    wait_for(lambda: len(sim.phone_state()["devices"]) == 1, timeout=10, message="one device left")


def test_corrupt_record_is_named_and_rebuilt(servers, sim, tmp_path):
    data = tmp_path / "data"
    server = servers(env={"WHATSAPP_WEB_URL": sim.url}, data_dir=data)
    link_phone(server, sim)
    stop_cleanly(server)

    record_path(data).write_bytes(b'{"linkedAt": "2026-01-01T00:00:00Z", "wid": \x00\xff garbage')
    again = servers(env={"WHATSAPP_WEB_URL": sim.url}, data_dir=data)
    ready = wait_ready_without_qr(again)
    note = ready["record"]["recordNote"]
    assert note and record_path(data).name in note and "corrupt" in note, ready["record"]
    assert list(data.glob(f"{record_path(data).name}.corrupt-*")), list(data.iterdir())
    record = read_record(data)  # rebuilt, valid JSON, and it knows the account again
    assert record["format"] == 1
    assert record["wid"] and record["wid"].startswith("15550001111"), record
    assert record["lastReadyAt"] and record["linkedAt"]
