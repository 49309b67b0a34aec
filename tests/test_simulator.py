"""The WhatsApp Web simulator, checked in real headless Chromium through Selenium.

Every screen is recognised by the markers of docs/whatsapp-web.md alone (`screen()`), the
way the product's page code must. One browser is shared by the module (each test gets a
fresh simulator on a new port, so a new origin with empty storage); tests about the
profile on disk start browsers of their own. No sleeps: every wait is a bounded loop.
"""

import http.client
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from PIL import Image
from pyzbar import pyzbar
from selenium import webdriver
from selenium.common.exceptions import JavascriptException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from simulator.testing import PhoneError, start

REPO = Path(__file__).resolve().parent.parent
DESKTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/156.0.0.0 Safari/537.36")
# The product's flags, minus --disable-crashpad-for-testing: with it, Chromium 156 on this
# machine never finishes loading any page (even data: URLs; checked 3 of 3 times).
CHROME_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
    "--disable-blink-features=AutomationControlled", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
WAIT_S = 10
PAYLOAD_RE = re.compile(r"^2@[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]{44},[A-Za-z0-9+/=]{44},[A-Za-z0-9+/=]{44},android$")
LOGIN_KEYS = ("last-wid-md", "WANoiseInfo", "last-pushname", "mobile-platform")

# What the product would do: name the screen from the documented markers only.
SCREEN_JS = r"""
const q = (sel, node) => (node || document).querySelector(sel);
const text = document.body ? document.body.innerText : '';
if (text.includes('WhatsApp works with Google Chrome')
    && q('a[href="https://support.google.com/chrome/answer/95414"]')) return 'unsupported';
for (const d of document.querySelectorAll('div[role="dialog"]')) {
  if (q('div[data-animate-modal-popup]', d) && d.innerText.includes('WhatsApp is open in another window')) return 'conflict';
}
const ref = q('div[data-ref]');
if (ref) {
  const button = q('button', ref);
  if (button && q('span[data-icon="refresh-large"] svg', button)) {
    if (button.innerText.includes('No internet connection')) return 'qr-offline';
    if (button.innerText.includes('Click to reload QR code')) return 'qr-expired';
  }
  if (q('canvas[aria-label="Scan this QR code to link a device!"][role="img"]', ref)
      && text.includes('Scan to log in')) return 'qr';
}
if (q('#pane-side') && q('div[aria-label="Chat list"]')) return 'chats';
const logout = [...document.querySelectorAll('button')].some((b) => b.innerText.trim() === 'Log out');
if (q('progress[max="100"]') && text.includes('End-to-end encrypted') && logout) return 'loading';
return null;
"""


# -- browsers ----------------------------------------------------------------------------

@contextmanager
def browser(profile: Path, user_agent: str | None = DESKTOP_UA):
    """A headless Chromium on `profile`; its whole process group is killed on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in CHROME_ARGS + [f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    if user_agent:
        options.add_argument(f"--user-agent={user_agent}")
    service = Service("/usr/bin/chromedriver", popen_kw={"process_group": 0})
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(15)
        driver.set_script_timeout(5)
        yield driver
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            if service.process is not None:
                try:
                    os.killpg(service.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    """Root of every profile this module uses; at the end no process may still use one."""
    root = tmp_path_factory.mktemp("profiles")
    yield root
    deadline = time.monotonic() + 10
    while True:
        left = [p.pid for p in psutil.process_iter(["cmdline"])
                if any(str(root) in part for part in (p.info["cmdline"] or []))]
        if not left or time.monotonic() > deadline:
            break
        psutil.wait_procs([psutil.Process(pid) for pid in left if psutil.pid_exists(pid)], timeout=0.2)
    assert not left, f"browser processes left behind: {left}"


@pytest.fixture(scope="module")
def shared(profiles):
    with browser(profiles / "shared") as driver:
        yield driver


@pytest.fixture
def page(shared):
    """The shared browser, back on one blank tab after the test."""
    yield shared
    for handle in shared.window_handles[1:]:
        shared.switch_to.window(handle)
        shared.close()
    shared.switch_to.window(shared.window_handles[0])
    shared.get("about:blank")


@pytest.fixture
def make_sim():
    sims = []

    def make(**options):
        options.setdefault("sync_seconds", 0.3)
        sims.append(start(**options))
        return sims[-1]

    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def sim(make_sim):
    return make_sim()


# -- reading the page ----------------------------------------------------------------------

def screen(driver):
    return driver.execute_script(SCREEN_JS)


def wait_until(driver, condition, what: str, timeout: float = WAIT_S):
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException, JavascriptException)
                         ).until(condition, message=f"{what} within {timeout} s")


def wait_screen(driver, name: str, timeout: float = WAIT_S):
    seen = []

    def check(d):
        seen.append(screen(d))
        return seen[-1] == name

    try:
        wait_until(driver, check, f"screen {name!r}", timeout)
    except Exception as exc:
        raise AssertionError(f"screen {name!r} not shown; last seen {seen[-1:]}") from exc


def wait_for(condition, what: str, timeout: float = WAIT_S):
    """A bounded loop on a condition that needs no browser."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        threading.Event().wait(0.05)
    return value


def data_ref(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "div[data-ref]").get_attribute("data-ref")


def decode_canvas(driver) -> str:
    canvas = driver.find_element(By.CSS_SELECTOR, 'div[data-ref] canvas[role="img"]')
    found = pyzbar.decode(Image.open(io.BytesIO(canvas.screenshot_as_png)))
    assert len(found) == 1, f"expected one QR code on the canvas, found {len(found)}"
    return found[0].data.decode()


def storage(driver) -> dict:
    return driver.execute_script(
        "return Object.fromEntries(arguments[0].map((k) => [k, localStorage.getItem(k)]));",
        list(LOGIN_KEYS))


def idb_databases(driver) -> list:
    return driver.execute_async_script(
        "const done = arguments[0]; indexedDB.databases().then((l) => done(l.map((d) => d.name)));")


def idb_secret(driver):
    return driver.execute_async_script("""
        const done = arguments[0];
        const q = indexedDB.open('wawc');
        q.onerror = () => done(null);
        q.onsuccess = () => {
          const db = q.result;
          if (!db.objectStoreNames.contains('user')) { db.close(); done(null); return; }
          const g = db.transaction('user').objectStore('user').get('device');
          g.onsuccess = () => { db.close(); done(g.result || null); };
          g.onerror = () => { db.close(); done(null); };
        };""")


def click_button(driver, text: str, within: str = "//"):
    driver.find_element(By.XPATH, f"{within}button[normalize-space()='{text}']").click()


def link(driver, sim) -> dict:
    """Open the page, scan its code, wait for the chat list; the device linked."""
    driver.get(sim.url)
    wait_screen(driver, "qr")
    device = sim.scan(data_ref(driver))["device"]
    wait_screen(driver, "chats")
    return device


def wait_logged_out(driver, sim):
    wait_until(driver, lambda d: "post_logout=1" in d.current_url, "navigation to /?post_logout=1")
    wait_screen(driver, "qr")
    assert storage(driver)["last-wid-md"] is None
    assert sim.phone_state()["qr"] == data_ref(driver)


# -- the web side in a browser -----------------------------------------------------------

def test_qr_screen_shows_a_canvas_that_decodes_to_the_payload(page, sim):
    page.get(sim.url)
    wait_screen(page, "qr")
    payload = data_ref(page)
    assert PAYLOAD_RE.match(payload), payload
    canvas = page.find_element(By.CSS_SELECTOR, "div[data-ref] canvas")
    assert (canvas.size["width"], canvas.size["height"]) == (228, 228)
    assert (canvas.get_attribute("width"), canvas.get_attribute("height")) == ("228", "228")
    assert decode_canvas(page) == payload == sim.phone_state()["qr"]
    assert sim.phone_state()["qr_issued"] == 1


def test_qr_rotates_then_expires_and_reload_starts_a_new_round(page, make_sim):
    sim = make_sim(qr_first_ttl=1.0, qr_ttl=0.5, qr_max=3)
    page.get(sim.url)
    wait_screen(page, "qr")
    first = data_ref(page)
    seen = []

    def expired(d):
        name = screen(d)
        if name == "qr" and data_ref(d) not in seen:
            seen.append(data_ref(d))
            assert decode_canvas(d) == seen[-1]
        return name == "qr-expired"

    wait_until(page, expired, "the reload button after 3 codes")
    assert seen[0] == first and len(seen) == 3, seen
    state = sim.phone_state()
    assert state["qr_issued"] == 3 and state["qr"] is None
    with pytest.raises(PhoneError) as gone:
        sim.scan(first)
    assert gone.value.status == 410 and gone.value.body["error"] == "qr_expired"
    with pytest.raises(PhoneError) as unknown:
        sim.scan(first.replace("2@", "2@x"))
    assert unknown.value.status == 404

    click_button(page, "Click to reload QR code")
    wait_screen(page, "qr")
    fresh = data_ref(page)
    assert fresh not in seen and decode_canvas(page) == fresh
    assert sim.scan(fresh)["linked"] is True
    wait_screen(page, "chats")


def test_a_rotated_out_code_answers_410_while_the_new_one_links(page, make_sim):
    sim = make_sim(qr_first_ttl=0.5, qr_ttl=5)
    page.get(sim.url)
    wait_screen(page, "qr")
    old = data_ref(page)
    wait_until(page, lambda d: screen(d) == "qr" and data_ref(d) != old, "a rotated code")
    with pytest.raises(PhoneError) as gone:
        sim.scan(old)
    assert gone.value.status == 410
    assert sim.scan(data_ref(page))["device"]["wid"].startswith("15550001111:")


def test_linking_goes_through_loading_to_chats_and_stores_the_login(page, make_sim):
    sim = make_sim(sync_seconds=1.5, phone="19995550000", pushname="Test Phone", platform="iphone")
    page.get(sim.url)
    wait_screen(page, "qr")
    device = sim.scan(data_ref(page))["device"]
    wait_screen(page, "loading")
    assert re.search(r"Loading your chats \[\d{1,3}%\]", page.find_element(By.TAG_NAME, "body").text)
    wait_screen(page, "chats")
    assert page.find_elements(By.CSS_SELECTOR, 'input[placeholder="Search or start a new chat"]')
    assert page.find_elements(By.CSS_SELECTOR, 'span[data-icon="menu"] svg')
    stored = storage(page)
    assert stored["last-wid-md"] == f'"19995550000:{device["id"]}@c.us"' == json.dumps(device["wid"])
    assert json.loads(stored["last-pushname"]) == "Test Phone"
    assert json.loads(stored["mobile-platform"]) == "iphone"
    assert isinstance(json.loads(stored["WANoiseInfo"]), dict)
    assert idb_secret(page)["device"] == device["id"]
    assert [d["wid"] for d in sim.phone_state()["devices"]] == [device["wid"]]


def test_phone_logout_reaches_an_open_page_and_a_later_load(page, sim):
    link(page, sim)
    sim.logout()
    wait_logged_out(page, sim)
    assert "wawc" not in idb_databases(page)

    link(page, sim)  # a new link, then the phone removes it while no page is open
    page.get("about:blank")
    sim.logout()
    page.get(sim.url)
    wait_logged_out(page, sim)
    assert "wawc" not in idb_databases(page)
    assert sim.phone_state()["devices"] == []


def test_outage_on_the_qr_screen(page, sim):
    page.get(sim.url)
    wait_screen(page, "qr")
    sim.outage(60)
    wait_screen(page, "qr-offline")
    assert sim.phone_state()["outage"] is True
    with pytest.raises(OSError):
        urllib.request.urlopen(sim.url, timeout=5)
    with urllib.request.urlopen(sim.url + "phone", timeout=5) as resp:
        assert resp.status == 200

    page.switch_to.new_window("tab")  # a load during the outage: Chromium's error page
    page.get(sim.url)
    assert screen(page) is None
    assert "ERR_EMPTY_RESPONSE" in page.page_source
    page.close()
    page.switch_to.window(page.window_handles[0])

    sim.outage(0)
    wait_screen(page, "qr")
    assert data_ref(page) == sim.phone_state()["qr"] == decode_canvas(page)


def test_outage_on_a_linked_page_keeps_the_login_and_ends_by_itself(page, sim):
    device = link(page, sim)
    before = storage(page)
    sim.outage(1.5)
    wait_until(page, lambda d: "Computer not connected" in d.find_element(By.TAG_NAME, "body").text,
               "the offline notice")
    assert screen(page) == "chats"
    wait_until(page, lambda d: "Computer not connected" not in d.find_element(By.TAG_NAME, "body").text,
               "the notice gone after the outage")
    assert screen(page) == "chats" and storage(page) == before
    assert sim.phone_state()["devices"] == [device] and sim.phone_state()["outage"] is False


def test_flaky_login_checks_are_retried_without_touching_storage(page, sim):
    device = link(page, sim)
    before = storage(page)
    sim.flaky(2)
    page.get(sim.url)
    wait_until(page, lambda d: screen(d) == "loading" and "Connecting…" in d.find_element(By.TAG_NAME, "body").text,
               "the loading screen saying Connecting…")
    assert storage(page) == before
    wait_screen(page, "chats")
    state = sim.phone_state()
    assert state["flaky"] == 0 and state["devices"] == [device]
    assert storage(page) == before


def test_conflict_dialog_and_use_here(page, sim):
    device = link(page, sim)
    sim.conflict()
    wait_screen(page, "conflict")
    dialog = "//div[@role='dialog']//div[@data-animate-modal-popup]//"
    page.find_element(By.XPATH, f"{dialog}button[normalize-space()='Log out']")
    click_button(page, "Use here", within=dialog)
    wait_screen(page, "chats")
    assert not page.find_elements(By.CSS_SELECTOR, 'div[role="dialog"]')
    assert sim.phone_state()["devices"] == [device]


def test_menu_log_out_flow_removes_the_device(page, sim):
    link(page, sim)
    page.find_element(By.CSS_SELECTOR, 'span[data-icon="menu"]').click()
    page.find_element(By.XPATH, "//*[@role='button'][normalize-space()='Log out']").click()
    popup = "//div[@role='dialog']//div[@data-animate-modal-popup]//"
    click_button(page, "Log out", within=popup)
    wait_logged_out(page, sim)
    assert sim.phone_state()["devices"] == []


def test_loading_screen_log_out_button(page, make_sim):
    sim = make_sim(sync_seconds=30)
    page.get(sim.url)
    wait_screen(page, "qr")
    sim.scan(data_ref(page))
    wait_screen(page, "loading")
    click_button(page, "Log out")
    wait_logged_out(page, sim)
    assert sim.phone_state()["devices"] == []


def test_login_lives_in_the_profile(profiles, sim):
    profile = profiles / "restart"
    with browser(profile) as driver:
        device = link(driver, sim)
    with browser(profile) as driver:  # a clean restart keeps the login: no QR on the way
        driver.get(sim.url)
        shown = []
        wait_until(driver, lambda d: shown.append(screen(d)) or shown[-1] == "chats", "the chat list")
        assert "qr" not in shown and "loading" in shown
        wid = storage(driver)["last-wid-md"]
        assert json.loads(wid) == device["wid"]
    shutil.rmtree(profile / "Default" / "IndexedDB")  # browser stopped: key material gone
    with browser(profile) as driver:
        driver.get(sim.url)
        wait_screen(driver, "qr")
        assert storage(driver)["last-wid-md"] == wid  # not cleared: it only looks logged in
    assert sim.phone_state()["devices"] == [device]


def test_headless_user_agent_gets_the_unsupported_page(profiles, sim):
    with browser(profiles / "headless", user_agent=None) as driver:
        assert "HeadlessChrome" in driver.execute_script("return navigator.userAgent")
        driver.get(sim.url)
        assert screen(driver) == "unsupported"
        assert re.search(r"WhatsApp works with Google Chrome \d+\+", driver.find_element(By.TAG_NAME, "body").text)
    assert sim.phone_state()["qr_issued"] == 0


# -- the phone side over HTTP ------------------------------------------------------------

BAD_CALLS = [
    ("POST", "/_phone/scan", None, 400),
    ("POST", "/_phone/scan", b"not json", 400),
    ("POST", "/_phone/scan", b'["qr"]', 400),
    ("POST", "/_phone/scan", {"qr": 5}, 400),
    ("POST", "/_phone/scan", {"qr": ""}, 400),
    ("POST", "/_phone/scan", {"qr": "2@never,shown,a,b,android"}, 404),
    ("POST", "/_phone/logout", b"{", 400),
    ("POST", "/_phone/logout", {"device": "one"}, 400),
    ("POST", "/_phone/logout", {"device": -1}, 400),
    ("POST", "/_phone/logout", {"device": 999}, 404),
    ("POST", "/_phone/outage", None, 400),
    ("POST", "/_phone/outage", {"seconds": "5"}, 400),
    ("POST", "/_phone/outage", {"seconds": -1}, 400),
    ("POST", "/_phone/outage", {"seconds": True}, 400),
    ("POST", "/_phone/outage", b'{"seconds": NaN}', 400),
    ("POST", "/_phone/outage", {"seconds": 1e12}, 400),
    ("POST", "/_phone/flaky", {}, 400),
    ("POST", "/_phone/flaky", {"count": 1.5}, 400),
    ("POST", "/_phone/flaky", {"count": -2}, 400),
    ("POST", "/_phone/conflict", b"garbage", 400),
    ("POST", "/_phone/reset", b"[1]", 400),
    ("GET", "/_phone/scan", None, 405),
    ("POST", "/_phone/state", None, 405),
    ("DELETE", "/_phone/reset", None, 405),
    ("GET", "/_phone/nothing", None, 404),
    ("POST", "/_phone/nothing", {}, 404),
    ("GET", "/_wa/poll?page=bad%20id", None, 400),
    ("GET", "/_wa/poll?page=ok&since=-1", None, 400),
    ("POST", "/_wa/login", {"wid": 3}, 400),
]


@pytest.mark.parametrize("method,path,body,status", BAD_CALLS)
def test_bad_input_is_a_json_4xx(sim, method, path, body, status):
    raw = body if isinstance(body, bytes) else None
    got, answer = sim.request(method, path, None if raw else body, raw=raw)
    assert got == status, answer
    assert isinstance(answer, dict) and set(answer) == {"error", "message"}, answer
    assert sim.phone_state()["outage"] is False


def test_phone_calls_and_helper(sim):
    assert set(sim.phone_state()) >= {"qr", "qr_issued", "devices", "outage"}
    status, snap = sim.request("GET", "/_wa/poll?page=p1&since=0")  # a page without a browser
    assert status == 200 and snap["qr"]["payload"] == sim.wait_qr()
    first = sim.scan(snap["qr"]["payload"])
    assert first["linked"] is True and set(first["device"]) >= {"id", "wid", "linked_at"}
    sim.request("GET", "/_wa/poll?page=p2&since=0")
    second = sim.scan(sim.wait_qr())["device"]
    assert sim.logout(device=first["device"]["id"]) == {"removed": [first["device"]["id"]]}
    assert sim.phone_state()["devices"] == [second]
    assert sim.flaky(3) == {"flaky": 3} and sim.phone_state()["flaky"] == 3
    assert sim.conflict() == {"conflict": True}
    assert sim.outage(30)["outage"] is True and sim.phone_state()["outage"] is True
    sim.reset()
    state = sim.phone_state()
    assert state["devices"] == [] and state["outage"] is False and state["flaky"] == 0
    with urllib.request.urlopen(sim.url + "phone", timeout=5) as resp:
        assert "Link this code" in resp.read().decode()


def test_unsupported_page_over_http(sim):
    req = urllib.request.Request(sim.url, headers={"User-Agent": DESKTOP_UA.replace("Chrome/", "HeadlessChrome/")})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read().decode()
    assert "WhatsApp works with Google Chrome" in body and "https://support.google.com/chrome/answer/95414" in body


# -- stopping ----------------------------------------------------------------------------

def _long_poll(url: str, result: list):
    try:
        with urllib.request.urlopen(url + "_wa/poll?page=waiter&since=999999", timeout=30) as resp:
            result.append(resp.status)
    except (OSError, http.client.HTTPException) as exc:
        result.append(exc)


def _waiting_poll(sim_url: str, pages_now) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=_long_poll, args=(sim_url, result), daemon=True)
    thread.start()
    wait_for(lambda: pages_now() >= 1, "the long poll waiting")
    return thread, result


def test_stop_ends_live_connections_promptly():
    sim = start()
    thread, result = _waiting_poll(sim.url, lambda: sim.state.phone_state()["pages"])
    began = time.monotonic()
    sim.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - began < 2, result
    sim.stop()  # idempotent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_stops_on_signal_with_exit_0(sig):
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--port", "0", "--quiet",
                             "--qr-ttl", "0.5", "--sync-seconds", "0.2"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the simulator did not say where it listens"
        url = re.search(r"http://127\.0\.0\.1:\d+/", proc.stdout.readline())[0]

        def pages():
            with urllib.request.urlopen(url + "_phone/state", timeout=5) as resp:
                return json.load(resp)["pages"]

        thread, result = _waiting_poll(url, pages)
        began = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - began < 3
        thread.join(5)
        assert not thread.is_alive(), "the long poll outlived the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def test_cli_rejects_bad_options():
    proc = subprocess.run([sys.executable, "-m", "simulator", "--qr-ttl", "-1"], cwd=REPO,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2 and "qr_ttl" in proc.stderr
