"""The login's markers as real Chromium writes them to disk (issue 21): the QR page's Local
Storage is no login, a linked profile is, a logged-out one (the keys deleted inside the same
files) is not, and the markers are still found once LevelDB has compacted them into a table."""
from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

from harness import CLIENT_ID, link_phone
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from whatsapp.persistence.profile import LOCAL_STORAGE, has_login, stored_login


def profile_of(data: Path) -> Path:
    return data / f"session-{CLIENT_ID}"


def storage_files(profile: Path) -> list[Path]:
    folder = profile / LOCAL_STORAGE
    return sorted(p for p in folder.iterdir() if p.suffix in (".log", ".ldb")) if folder.is_dir() else []


def test_the_markers_of_a_qr_page_a_link_and_a_logout(servers, sim, tmp_path):
    data = tmp_path / "data"
    env = {"WHATSAPP_WEB_URL": sim.url}
    first = servers(env=env, data_dir=data)
    first.wait_status(lambda s: s["status"] == "qr", timeout=60, message="a QR")
    first.stop()  # a clean quit writes what the QR page stored
    assert storage_files(profile_of(data)), "Chromium wrote no Local Storage for the QR page"
    assert not has_login(profile_of(data))

    second = servers(env=env, data_dir=data)
    link_phone(second, sim)
    wid = second.wait_status(lambda s: s["record"]["wid"], timeout=30, message="the link recorded")["record"]["wid"]
    second.stop()
    assert stored_login(profile_of(data)).wid == wid

    third = servers(env=env, data_dir=data)
    third.wait_status(lambda s: s["status"] == "ready", timeout=60, message="ready")
    sim.logout()
    third.wait_status(lambda s: s["reason"] == "logged_out", timeout=60, message="the phone's logout")
    third.stop()
    raw = b"".join(p.read_bytes() for p in storage_files(profile_of(data)))
    assert b"last-wid-md" in raw  # the key's bytes are still there: deleted by a later record
    assert stored_login(profile_of(data)) is None


@contextmanager
def chromium(profile: Path):
    """A headless Chromium on `profile`; its whole process group is killed on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-background-networking", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    service = Service("/usr/bin/chromedriver", popen_kw={"process_group": 0})
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(15)
        yield driver
    finally:
        try:
            if driver is not None:
                driver.quit()  # a clean quit: localStorage reaches disk
        finally:
            if service.process is not None:
                try:
                    os.killpg(service.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_the_markers_in_a_table_compacted_by_chromium(sim, tmp_path):
    profile = tmp_path / "profile"
    wid = "15550001111:7@c.us"
    with chromium(profile) as driver:
        driver.get(sim.url + "phone")  # the simulator's origin, as WhatsApp Web's page uses
        driver.execute_script(
            "localStorage.setItem('WANoiseInfo', arguments[1]);"
            "localStorage.setItem('last-wid-md', arguments[0]);"
            "for (let i = 0; i < 300; i++) localStorage.setItem('last-filler-' + i, 'abc'.repeat(3000) + i);",
            json.dumps(wid), json.dumps({"staticKeyPair": {}}))
    with chromium(profile) as driver:  # reopening turns the big log into a sorted table
        driver.get(sim.url + "phone")
    tables = [p for p in storage_files(profile) if p.suffix == ".ldb"]
    assert tables, storage_files(profile)
    assert stored_login(profile).wid == wid

    with chromium(profile) as driver:
        driver.get(sim.url + "phone")
        driver.execute_script("localStorage.removeItem('last-wid-md')")
    assert stored_login(profile) is None
