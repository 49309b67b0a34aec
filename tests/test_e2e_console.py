"""The console page (`GET /api/whatsapp/qr` once linked), end to end, in real headless Chromium.

The server runs as the Procfile starts it, with its own Chromium against the simulator; the
page is opened in a second headless Chromium of the test's own, sized like a phone, with
`WHATSAPP_LOCAL_ONLY=1` so that it needs no key (as `make demo` serves it). One test takes
the console through qr -> ready -> a message sent -> reconnecting -> ready and checks what
it shows at each step, without a reload. Every wait is a WebDriverWait or `wait_for` with a
deadline; both browsers and the server are stopped at teardown.

`CONSOLE_SCREENSHOT=docs/console.png pytest tests/test_e2e_console.py` also writes the
ready console's screenshot there (the README's picture); otherwise it goes to tmp_path.
"""
from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import signal
from pathlib import Path

from harness import ROOT, browser_tree, decode_qr_png, login_on_disk, wait_for

from whatsapp.web.browser import BASE_ARGS

# A phone's viewport (CSS pixels); the page must fit it without sideways scrolling.
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


@contextlib.contextmanager
def headless_chromium(tmp_path: Path):
    """A headless Chromium of our own (not the server's) with its console log kept; the same
    setup as test_e2e_notify's QR page test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (*BASE_ARGS, "--headless=new", f"--user-data-dir={tmp_path / 'viewer-profile'}",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # webdriver.Chrome starts the service itself: starting it here too would leak a driver.
    service = Service("/usr/bin/chromedriver", popen_kw={"process_group": 0})
    try:
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            with contextlib.suppress(Exception):  # the group kill below is the guarantee
                driver.quit()
    finally:
        process = getattr(service, "process", None)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def text_of(driver, element_id: str) -> str:
    """The element's rendered text, read in one script (the page may redraw it meanwhile)."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
                                 element_id)


def message_row(driver, list_id: str, message_id: str) -> str | None:
    """The text of the row of `message_id` in the list `list_id`, or None when not shown."""
    return driver.execute_script(
        "const li = [...document.getElementById(arguments[0]).children]"
        ".find((x) => x.dataset.id === arguments[1]); return li ? li.innerText : null;", list_id, message_id)


def save_screenshot(driver, path: Path) -> bytes:
    """The whole page (beyond the viewport) as a small PNG: a palette of 64 colours is
    plenty for flat text and keeps the README's picture to tens of KiB."""
    from PIL import Image

    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=64).save(out, format="PNG", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return out.getvalue()


def test_console_lists_the_newest_messages_of_a_long_history(servers, tmp_path):
    """The list is oldest first, 500 a page at most: the console walks it once, then reads on
    from just before the newest five; messages accepted later come in on top."""
    from selenium.webdriver.support.ui import WebDriverWait

    server = servers(env={"WHATSAPP_AUTO_INIT": "0", "WHATSAPP_LOCAL_ONLY": "1"})  # stopped: all stay queued

    def accept(n: int) -> str:
        code, body = server.post("/api/whatsapp/messages", {"to": "15550002222", "text": f"message {n}"})
        assert code == 202, (code, body)
        return body["id"]

    for n in range(1, 504):  # one page and a bit
        accept(n)

    def shown(d) -> list[str]:
        # Read in one script: the console redraws the list while it reads on, and an element
        # found in one call can be gone by the next (StaleElementReferenceException).
        texts = d.execute_script("return [...document.querySelectorAll('#out li')].map((li) => li.innerText)")
        return [text.rsplit("\n", 1)[-1] for text in texts]

    with headless_chromium(tmp_path) as driver:
        driver.get(server.url + "/api/whatsapp/qr")
        driver.execute_script("performance.setResourceTimingBufferSize(100000);")
        wait = WebDriverWait(driver, 30, poll_frequency=0.2)
        newest = [f"message {n}" for n in range(503, 498, -1)]
        wait.until(lambda d: shown(d) == newest, f"the newest five, newest first: {newest}")
        assert "503 queued" in text_of(driver, "outbox")

        def reads() -> list[str]:
            return driver.execute_script("return performance.getEntriesByType('resource')"
                                         ".map((e) => e.name).filter((n) => n.includes('direction=out'))")
        walked = len(reads())
        accept(504)
        accept(505)
        newest = [f"message {n}" for n in range(505, 500, -1)]
        wait.until(lambda d: shown(d) == newest, f"the two new ones on top: {newest}")
        later = reads()[walked:]
        # Never the whole history again: every later read starts at a cursor.
        assert later and all("after=" in url for url in later), later


def test_console_through_qr_ready_message_reconnecting_ready(servers, sim, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # Many attempts: the outage below keeps the session reconnecting for as long as the test
    # looks at it, and must not run the attempts out into `failed`.
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_LOCAL_ONLY": "1",
                          "WHATSAPP_RECONNECT_MAX_ATTEMPTS": "100", "WHATSAPP_SEND_INTERVAL_S": "0"})
    server.wait_status(lambda s: s["status"] == "qr" and s["qrAvailable"], timeout=60, message="a QR")

    with headless_chromium(tmp_path) as driver:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        # Any CSP violation is recorded by a listener installed before the page's own code.
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "window.__csp = []; document.addEventListener('securitypolicyviolation', "
            "(e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")})
        driver.get(server.url + "/api/whatsapp/qr")
        driver.execute_script("window.__samePage = 'not reloaded';")
        wait = WebDriverWait(driver, 60, poll_frequency=0.2)

        def shows(element_id: str, *parts: str) -> str:
            """Wait until the element's text holds every part; fail with the text it last had."""
            seen = [""]

            def check(d):
                seen[0] = text_of(d, element_id)
                return seen[0] if all(part in seen[0] for part in parts) else None
            try:
                return wait.until(check)
            except TimeoutException:
                raise AssertionError(f"#{element_id} did not show {parts!r} within 60 s; it shows {seen[0]!r}") from None

        def row_shows(list_id: str, message_id: str, part: str) -> str:
            """Wait until the message's row in `list_id` holds `part`."""
            seen = [None]

            def check(d):
                seen[0] = message_row(d, list_id, message_id)
                return seen[0] if part in (seen[0] or "") else None
            try:
                return wait.until(check)
            except TimeoutException:
                raise AssertionError(f"the row of {message_id} in #{list_id} did not show {part!r}; "
                                     f"it shows {seen[0]!r}") from None

        # -- qr: the code (the one the phone sees), the steps, no console yet ---------------------
        def shown_code(d) -> str | None:
            """The QR shown on the page, decoded (read in one script: the page redraws it)."""
            src = d.execute_script("const img = document.getElementById('qr');"
                                   "return img && img.checkVisibility() ? img.src : null") or ""
            if not src.startswith("data:image/png;base64,"):
                return None
            return decode_qr_png(base64.b64decode(src.split(",", 1)[1]))

        def shows_the_live_code(d) -> str | None:
            """The code shown, once it is the one the phone would accept now (the page may hold
            an older one for a moment: a code rotates, a start replaces it)."""
            code = shown_code(d)
            return code if code and code == sim.phone_state()["qr"] else None

        payload = wait.until(shows_the_live_code, "the live QR code as an image on the page")
        shows("state", "Scan this code")
        assert "Since" in text_of(driver, "since")
        assert driver.find_element("id", "steps").is_displayed()
        assert not driver.find_element("id", "console").is_displayed()
        shows("live", "Live")  # the event stream is open

        # -- ready: the console --------------------------------------------------------------------
        sim.scan(payload)
        shows("state", "Connected as +15550001111 (Energenie Phone)")
        assert driver.find_element("id", "console").is_displayed()
        assert not driver.find_element("id", "qr").is_displayed()
        assert not driver.find_element("id", "steps").is_displayed()
        assert text_of(driver, "title") == "WhatsApp · energenie-whatsapp"
        shows("account", "+15550001111", "Energenie Phone", "android")
        shows("restore", "linked with a QR scan")
        shows("database", "not set")  # no database in this test: the console says where backups go
        shows("outbox", "empty")
        shows("out", "No message sent yet.")
        shows("in", "No message received yet.")
        assert driver.find_element("id", "screenshot").get_attribute("href") == server.url + "/api/whatsapp/screenshot"

        # -- a message sent: shown with its status, then its ticks, live -------------------------------
        text = "Meter reading due on Friday.\n<b>not bold</b>"
        code, sent = server.post("/api/whatsapp/messages", {"to": "+1 555 000 2222", "text": text})
        assert code == 202, (code, sent)
        row = row_shows("out", sent["id"], "sent ✓")
        assert "to +15550002222" in row and "Meter reading due on Friday.\n<b>not bold</b>" in row, row
        assert driver.find_elements("css selector", "#out b") == []  # the text stayed text
        wa_id = server.get(f"/api/whatsapp/messages/{sent['id']}")[1]["waId"]
        sim.ack(wa_id=wa_id, ack="delivered")
        row_shows("out", sent["id"], "delivered ✓✓")

        # A stranger's message is untrusted text: shown as is, never run.
        sim.send("15550003333", '<img src=x onerror="window.__pwned = 1">', name="Mallory")
        sim.send("15550004444", "Can you call me back?", name="Carol")
        shows("in", "from Carol", "Can you call me back?")
        shows("in", "from Mallory", '<img src=x onerror="window.__pwned = 1">')
        assert driver.find_elements("css selector", "#in img") == []
        assert driver.execute_script("return window.__pwned") is None

        # -- reconnecting: the browser killed while WhatsApp is unreachable ------------------------------
        # The outage holds the session in `reconnecting` (each attempt fails to load the page)
        # for as long as the test looks at it; the kill is what breaks it.
        # A kill sooner than the login's localStorage reaches the disk tests another story
        # (harness.login_on_disk): wait for it, as conftest.linked_server does.
        wid = server.status()["record"]["wid"]
        wait_for(lambda: login_on_disk(server.data_dir, wid), 30, message="the login written to the profile")
        sim.outage(120)
        os.kill(browser_tree(server)["main"], signal.SIGKILL)
        shows("state", "The connection broke; reconnecting (attempt")
        reason = shows("detail", "Reason: ")
        assert "the browser crashed" in reason or "WhatsApp could not be reached" in reason, reason
        assert driver.find_element("id", "console").is_displayed()
        code, queued = server.post("/api/whatsapp/messages", {"to": "15550002222", "text": "Sent once we are back"})
        assert code == 202, (code, queued)
        shows("outbox", "1 queued", "oldest waiting")
        row_shows("out", queued["id"], "queued")

        # -- ready again, without a QR; the queued message goes out ------------------------------------
        sim.outage(0)
        shows("state", "Connected as +15550001111")
        shows("restore", "restored without a QR", "So far 1 start without a QR")
        shows("detail", "Last interruption:")
        row_shows("out", queued["id"], "sent ✓")
        shows("outbox", "empty")
        # The first backup comes a few seconds after ready (WHATSAPP_BACKUP_DELAY_S and the
        # localStorage flush): the console shows it when it is there.
        server.wait_status(lambda s: s["backups"]["count"] >= 1, timeout=60, message="a backup")
        shows("backups", "1 backup kept; newest")

        assert driver.execute_script("return window.__samePage") == "not reloaded"
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"wider than a phone's screen: {width}"
        target = Path(os.environ.get("CONSOLE_SCREENSHOT") or tmp_path / "console.png")
        png = save_screenshot(driver, target if target.is_absolute() else ROOT / target)
        assert png.startswith(b"\x89PNG") and len(png) < 200_000, len(png)

        # -- the buttons: disconnect only after the confirmation, then start again -----------------------
        initialize, disconnect = (driver.find_element("id", i) for i in ("initialize", "disconnect"))
        assert not initialize.is_enabled()  # ready: starting would do nothing
        disconnect.click()
        assert driver.find_element("id", "confirm").is_displayed()
        driver.find_element("id", "confirm-no").click()
        assert not driver.find_element("id", "confirm").is_displayed()
        assert server.status()["status"] == "ready"  # cancelled: nothing was sent
        disconnect.click()
        driver.find_element("id", "confirm-yes").click()  # a POST from the page: same origin, allowed
        shows("state", "The session is stopped.")
        shows("account", "not linked")
        assert sim.phone_state()["devices"] == [], "the phone still lists the device"
        wait.until(lambda d: initialize.is_enabled(), "the start button enabled")
        initialize.click()
        wait.until(shows_the_live_code, "the new live QR code after starting again")
        assert not driver.find_element("id", "console").is_displayed()

        assert driver.execute_script("return window.__samePage") == "not reloaded"
        violations = driver.execute_script("return window.__csp")
        console = driver.get_log("browser")
    assert violations == [], violations
    problems = [e["message"] for e in console if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]]
    assert problems == [], problems
    # The browser of the server is one again, and the sweep at teardown finds none left.
    wait_for(lambda: browser_tree(server)["main"], 10, message="the server's browser")
