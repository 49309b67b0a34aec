"""Webhooks, the event stream, /metrics and the QR page, end to end.

The server runs as the Procfile starts it (gunicorn), with real Chromium against the
simulator; webhook receivers are `ThreadingHTTPServer`s on 127.0.0.1:0 in this process, the
event stream is read over a socket by `http.client`, and the QR page is opened in a
separate headless Chromium. Every wait is on a condition with a deadline; every receiver,
reader, browser and server is stopped at teardown. Unit-level behaviour of the same parts
(retry statuses, queue limits, stream limits...) is in test_notify.py and not repeated here.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import threading
from pathlib import Path

import psutil
import pytest
from harness import ServerProcess, decode_qr_png, link_phone, login_on_disk, main_browsers, wait_for
from prometheus_client.parser import text_string_to_metric_families
from webhooks import HANG, Receiver

from whatsapp.notify.webhooks import verify
from whatsapp.web.browser import BASE_ARGS

SECRET = "e2e-hook-secret"
# What a person or a pager cares about; browser_started, backup_created... are left out.
MEANINGFUL = ("status", "qr", "ready", "reconnecting", "logged_out", "failed")


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(answer=200) -> Receiver:
        made.append(Receiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def slow_sync_sim():
    """The simulator with a 2 s "Loading your chats" screen, so that `syncing` is always seen
    by the session's 0.5 s page reads and the event sequence is the same on every run."""
    from simulator.testing import start

    with start(qr_ttl=20, qr_first_ttl=60, sync_seconds=2, pushname="Energenie Phone",
               phone="15550001111", platform="android") as running:
        yield running


# -- helpers -------------------------------------------------------------------------------

def describe(event: dict) -> str:
    """`status:qr`, `ready(restored=False)`... a compact name for sequence comparisons."""
    name, data = event["event"], event.get("data", {})
    if name == "status":
        return f"status:{data.get('status')}"
    if name == "ready":
        return f"ready(restored={data.get('restored')})"
    return name


def names(events: list[dict]) -> list[str]:
    return [describe(e) for e in events]


def check_signed(headers: dict, body: bytes) -> None:
    timestamp, signature = headers.get("X-Whatsapp-Timestamp"), headers.get("X-Whatsapp-Signature")
    assert timestamp and signature, headers
    assert verify(SECRET, timestamp, body, signature), (headers, body)
    # And independently of the product's helper, as a receiver in another language would:
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, "sha256=" + expected)
    assert not verify("another secret", timestamp, body, signature)


def scrape(server: ServerProcess) -> dict:
    """/metrics parsed by Prometheus' own parser: {(sample name, sorted labels): value}."""
    status, headers, body = server.request("GET", "/metrics", timeout=10)
    assert status == 200, (status, body)
    assert headers["Content-Type"].startswith("text/plain"), headers
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels) -> float:
    """A sample's value; a labelled counter that never moved has no sample: 0."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def main_browser(data_dir: Path) -> psutil.Process:
    """The one main Chromium process on the server's profile."""
    found = main_browsers(data_dir)
    assert len(found) == 1, found
    return found[0]


# -- 1 + 4: webhooks and metrics through link, browser crash, recovery, phone logout ---------

def test_webhooks_and_metrics_follow_link_crash_recovery_and_logout(servers, slow_sync_sim, receivers):
    sim = slow_sync_sim
    hook = receivers(200)
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_WEBHOOK_URL": hook.url,
                          "WHATSAPP_WEBHOOK_SECRET": SECRET})

    # Link: QR -> scan -> ready(restored=false).
    link_phone(server, sim)
    hook.wait(lambda ev: "ready(restored=False)" in names(ev), message="ready(restored=False)")
    linked = scrape(server)
    assert metric(linked, "whatsapp_browser_starts_total") == 1
    assert metric(linked, "whatsapp_ready_total", restored="false") == 1
    assert metric(linked, "whatsapp_ready_total", restored="true") == 0
    assert metric(linked, "whatsapp_reconnect_attempts_total") == 0
    assert metric(linked, "whatsapp_logged_out_total") == 0
    assert metric(linked, "whatsapp_qr_codes_total") >= 1
    assert metric(linked, "whatsapp_status", status="ready") == 1
    assert metric(linked, "whatsapp_status", status="qr") == 0

    # Crash: SIGKILL the main Chromium process; the session relaunches on the saved login.
    wait_for(lambda: login_on_disk(server.data_dir), 30, interval=0.2, message="the login on disk")
    main_browser(server.data_dir).send_signal(signal.SIGKILL)
    hook.wait(lambda ev: "ready(restored=True)" in names(ev), message="ready(restored=True)")
    recovered = server.wait_status(lambda s: s["status"] == "ready", timeout=30)
    assert recovered["session"]["phone"] == "15550001111"
    after_crash = scrape(server)
    assert metric(after_crash, "whatsapp_browser_starts_total") == 2
    assert metric(after_crash, "whatsapp_reconnect_attempts_total") == 1
    assert metric(after_crash, "whatsapp_ready_total", restored="false") == 1
    assert metric(after_crash, "whatsapp_ready_total", restored="true") == 1
    assert metric(after_crash, "whatsapp_session_restores_total") == 1
    assert metric(after_crash, "whatsapp_status_changes_total", status="reconnecting") == 1
    assert metric(after_crash, "whatsapp_status", status="ready") == 1

    # The phone removes the device: logged_out, then a fresh QR is offered.
    sim.logout()
    hook.wait(lambda ev: "logged_out" in names(ev) and "qr" in names(ev)[names(ev).index("logged_out"):],
              message="logged_out then qr")
    after = server.wait_status(lambda s: s["status"] == "qr" and s["reason"] == "logged_out", timeout=30)
    assert after["session"]["hasSession"] is False
    final = scrape(server)
    assert metric(final, "whatsapp_logged_out_total") == 1
    assert metric(final, "whatsapp_status", status="qr") == 1
    assert metric(final, "whatsapp_failed_total") == 0
    assert metric(final, "whatsapp_reconnect_attempts_total") == 1
    assert metric(final, "whatsapp_events_total", event="logged_out") == 1
    assert metric(final, "whatsapp_browser_start_seconds_count") == 2

    # The exact sequence, each request signed, in publication order, once each.
    hits = hook.snapshot()
    events = [json.loads(body) for _, body in hits]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), f"not in publication order or repeated: {seqs}"
    assert len({e["instance"] for e in events}) == 1
    for headers, body in hits:
        check_signed(headers, body)
        event = json.loads(body)
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Whatsapp-Event"] == event["event"]
        assert headers["X-Whatsapp-Delivery"] == f"{event['instance']}-{event['seq']}"
        assert headers["X-Whatsapp-Attempt"] == "1"
        assert event["data"]["clientId"] == "energenie-whatsapp"
    meaningful = [e for e in events if e["event"] in MEANINGFUL]
    observed = names(meaningful)
    end = observed.index("logged_out") + 2  # the fresh QR; later rotations are not the story
    assert observed[:end] == [
        "status:starting", "status:qr", "qr", "status:syncing", "status:ready", "ready(restored=False)",
        "status:reconnecting", "reconnecting", "status:syncing", "status:ready", "ready(restored=True)",
        "status:qr", "logged_out", "qr",
    ], observed
    by_name = {describe(e): e["data"] for e in meaningful}
    assert by_name["reconnecting"]["attempt"] == 1
    assert by_name["reconnecting"]["reason"] == "browser_crashed"
    assert by_name["logged_out"]["phone"] == "15550001111"
    assert by_name["ready(restored=True)"]["phone"] == "15550001111"
    logout_status = meaningful[observed.index("logged_out") - 1]["data"]
    assert (logout_status["previous"], logout_status["reason"]) == ("ready", "logged_out")
    first_qr, last_qr = meaningful[observed.index("qr")]["data"]["qr"], meaningful[end - 1]["data"]["qr"]
    assert first_qr != last_qr, "the QR after logging out must be a new code"
    assert sum(1 for e in events if e["event"] == "browser_started") == 2

    # Every delivery is counted by the server itself.
    wait_for(lambda: metric(scrape(server), "whatsapp_webhook_deliveries_total", receiver="0")
             >= len(hook.snapshot()), 10, message="deliveries counted")
    assert metric(scrape(server), "whatsapp_webhook_failures_total", receiver="0") == 0


# -- 2: a hung receiver and a failing one delay nothing -------------------------------------

def test_a_hung_and_a_failing_receiver_delay_nothing(servers, sim, receivers):
    good, hung, failing = receivers(200), receivers(HANG), receivers(500)
    server = servers(env={
        "WHATSAPP_WEB_URL": sim.url, "WHATSAPP_WEBHOOK_SECRET": SECRET,
        "WHATSAPP_WEBHOOK_URL": f"{good.url},{hung.url},{failing.url}",
        "WHATSAPP_WEBHOOK_TIMEOUT_S": "150",  # the hung receiver holds its first request throughout
        "WHATSAPP_WEBHOOK_RETRIES": "2",
    })

    # /status is polled all along, from another thread, as a dashboard would.
    answers, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                answers.append(server.request("GET", "/api/whatsapp/status", timeout=10)[0])
            except OSError as exc:
                answers.append(repr(exc))
            stop.wait(0.2)  # the poller's pace, not synchronisation

    poller = threading.Thread(target=poll, name="status-poller", daemon=True)
    poller.start()
    try:
        ready = link_phone(server, sim)
        assert ready["session"]["phone"] == "15550001111"
        good.wait(lambda ev: any(describe(e) == "ready(restored=False)" for e in ev), timeout=30,
                  message="ready at the good receiver")
    finally:
        stop.set()
        poller.join(15)
    assert answers and all(a == 200 for a in answers), answers

    # The hung receiver is still on its first request; nothing waited for it.
    assert len(hung.snapshot()) == 1, [describe(e) for e in hung.events()]
    assert hung.events()[0]["event"] == "status"

    # The failing receiver gets 1 + 2 attempts per event, same delivery id, each freshly signed,
    # then moves on to the next event.
    failing.wait(lambda ev: len({e["seq"] for e in ev}) >= 2, timeout=30,
                 message="the failing receiver to move to a second event")
    hits = failing.snapshot()
    first_delivery = hits[0][0]["X-Whatsapp-Delivery"]
    attempts = [h["X-Whatsapp-Attempt"] for h, _ in hits if h["X-Whatsapp-Delivery"] == first_delivery]
    assert attempts == ["1", "2", "3"], attempts
    assert len({body for h, body in hits if h["X-Whatsapp-Delivery"] == first_delivery}) == 1
    for headers, body in hits:
        check_signed(headers, body)
    received = len(good.snapshot())
    samples = scrape(server)
    assert metric(samples, "whatsapp_webhook_failures_total", receiver="2") >= 1
    assert metric(samples, "whatsapp_webhook_failures_total", receiver="0") == 0
    assert metric(samples, "whatsapp_webhook_deliveries_total", receiver="0") >= received - 1  # one in flight
    assert metric(samples, "whatsapp_webhook_deliveries_total", receiver="1") == 0

    # Shutting down does not wait for the hung receiver either.
    server.stop()
    assert server.proc.returncode == 0, server.log()


# -- 3: the event stream, read by a plain HTTP client ----------------------------------------

class StreamReader:
    """Reads `GET /api/whatsapp/events` over a socket in a thread; parses SSE frames."""

    def __init__(self, server: ServerProcess):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.conn.request("GET", "/api/whatsapp/events",
                          headers={"Accept": "text/event-stream", "X-Api-Key": server.api_key() or ""})
        self.response = self.conn.getresponse()
        self.frames: list[dict] = []   # {"event", "id", "data"}
        self.cond = threading.Condition()
        self.ended = False
        self.thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        fields: dict = {}
        try:
            while True:
                line = self.response.fp.readline()
                if not line:
                    return
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if "data" in fields:
                        frame = {"event": fields.get("event", "message"), "id": fields.get("id"),
                                 "data": json.loads(fields["data"])}
                        with self.cond:
                            self.frames.append(frame)
                            self.cond.notify_all()
                    fields = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    fields[key] = value[1:] if value.startswith(" ") else value
        except (OSError, ValueError):
            return  # closed by close() or by the server
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()

    def wait(self, predicate, timeout: float = 60, message: str = "events") -> list[dict]:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.frames) or self.ended, timeout) \
                    or not predicate(self.frames):
                raise AssertionError(f"{message}: got {[(f['event'], f['id']) for f in self.frames]}"
                                     f"{' (stream ended)' if self.ended else ''}")
            return list(self.frames)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.thread.join(10)


def test_event_stream_shows_status_then_qr_then_ready(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_AUTO_INIT": "0"})
    reader = StreamReader(server)
    try:
        assert reader.response.status == 200
        assert reader.response.getheader("Content-Type").startswith("text/event-stream")
        assert reader.response.getheader("Cache-Control") == "no-store"
        first = reader.wait(lambda f: len(f) >= 1, timeout=15, message="the initial status")[0]
        assert first["event"] == "status"
        assert first["data"]["data"]["initial"] is True
        assert first["data"]["data"]["status"] == "stopped"

        code, body = server.post("/api/whatsapp/initialize")
        assert code in (200, 202), (code, body)
        frames = reader.wait(lambda f: any(x["event"] == "qr" for x in f), message="a qr event")
        qr = next(x for x in frames if x["event"] == "qr")
        assert qr["data"]["data"]["qr"] == sim.phone_state()["qr"]

        link_phone(server, sim)
        frames = reader.wait(lambda f: any(x["event"] == "ready" for x in f), message="a ready event")
    finally:
        reader.close()
    kinds = [f["event"] for f in frames]
    assert kinds[0] == "status" and kinds.index("qr") < kinds.index("ready"), kinds
    ids = [int(f["id"]) for f in frames[1:]]
    assert ids == sorted(set(ids)) and ids[0] >= int(frames[0]["id"]), ids
    statuses = [f["data"]["data"]["status"] for f in frames[1:] if f["event"] == "status"]
    assert statuses[0] == "starting" and statuses[-1] == "ready" and "qr" in statuses, statuses
    ready = next(f for f in frames if f["event"] == "ready")["data"]
    assert ready["data"]["restored"] is False and ready["data"]["phone"] == "15550001111"


# -- 5: the QR page in a real browser ---------------------------------------------------------

@contextlib.contextmanager
def headless_chromium(tmp_path: Path):
    """A headless Chromium of our own (not the server's) with its console log kept."""
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


def test_qr_page_shows_the_code_then_the_account_without_a_reload(servers, sim, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # A person's browser on this machine, as `make demo` serves it: no key asked.
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_LOCAL_ONLY": "1"})
    server.wait_status(lambda s: s["status"] == "qr" and s["qrAvailable"], timeout=60, message="a QR")

    # The page is served with a CSP whose nonce is the one its script and style carry.
    code, headers, html = server.request("GET", "/api/whatsapp/qr", headers={"Accept": "text/html"})
    assert code == 200 and headers["Content-Type"].startswith("text/html"), (code, headers)
    csp = headers["Content-Security-Policy"]
    nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "img-src 'self' data:" in csp
    assert f'<script nonce="{nonce}">'.encode() in html and f'<style nonce="{nonce}">'.encode() in html

    with headless_chromium(tmp_path) as driver:
        # Any CSP violation is recorded by a listener installed before the page's own code.
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "window.__csp = []; document.addEventListener('securitypolicyviolation', "
            "(e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")})
        driver.get(server.url + "/api/whatsapp/qr")
        wait = WebDriverWait(driver, 60, poll_frequency=0.2)

        def shown_code(d):
            img = d.find_element(By.ID, "qr")
            src = img.get_attribute("src") or ""
            return src if src.startswith("data:image/png;base64,") and img.is_displayed() else None

        src = wait.until(shown_code, "the QR image on the page")
        payload = decode_qr_png(base64.b64decode(src.split(",", 1)[1]))
        assert payload == sim.phone_state()["qr"]
        assert "Scan this code" in driver.find_element(By.ID, "state").text
        driver.execute_script("window.__samePage = 'not reloaded';")

        sim.scan(payload)
        wait.until(lambda d: "Connected as +15550001111" in d.find_element(By.ID, "state").text,
                   "the page to say 'Connected as +15550001111'")
        assert driver.execute_script("return window.__samePage") == "not reloaded"
        assert not driver.find_element(By.ID, "qr").is_displayed()
        violations = driver.execute_script("return window.__csp")
        console = driver.get_log("browser")
    assert violations == [], violations
    csp_messages = [e["message"] for e in console
                    if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]
    assert csp_messages == [], csp_messages
