"""The simulator's messaging, checked in real headless Chromium through Selenium, for both
web versions where the markup differs.

The page is read the way the product's page code must read it: only the markers of
docs/whatsapp-web.md (`MESSAGE_ROWS_JS`). One browser is shared by the module (each test
gets a fresh simulator on a new port, so a new origin with empty storage); the restart test
starts browsers of its own on one profile. No sleeps: every wait is a bounded loop.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
from selenium import webdriver
from selenium.common.exceptions import JavascriptException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from simulator import chats
from simulator.__main__ import parse
from simulator.options import Options, SimError
from simulator.testing import PhoneError, start

REPO = Path(__file__).resolve().parent.parent
DESKTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/156.0.0.0 Safari/537.36")
# As in test_simulator.py (the product's flags, minus --disable-crashpad-for-testing), plus
# the language pin the messaging notes ask for.
CHROME_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
    "--disable-blink-features=AutomationControlled", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--lang=en-US",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
WAIT_S = 15  # generous: other browser tests share this machine
VERSIONS = [2025, 2026]
PUSHNAME = "Demo Phone"
ALICE = "447700900123"  # a demo chat (simulator/seed.py)

COMPOSE = 'footer div[contenteditable="true"][role="textbox"][data-tab="10"][aria-placeholder="Type a message"]'
SEND_ICON = {2026: 'button[aria-label="Send"] span[data-icon="wds-ic-send-filled"]',
             2025: 'button span[data-icon="send"]'}
DATA_ID = {2026: re.compile(r"^[0-9A-F]{20,22}$"),
           2025: re.compile(r"^(true|false)_\d+@c\.us_[0-9A-F]{20,22}$")}
PRE_PLAIN = {2026: re.compile(r"^\[(\d{2}:\d{2}), (\d{2}/\d{2}/\d{4})\] (.+): $"),
             2025: re.compile(r"^\[(\d{1,2}:\d{2} [ap]m), (\d{2}/\d{2}/\d{4})\] (.+): $")}

# What the product's page code would read: rows of #main, the message ones only.
MESSAGE_ROWS_JS = r"""
const out = [];
for (const row of document.querySelectorAll('#main [role="row"]')) {
  const pre = row.querySelector('div.copyable-text[data-pre-plain-text]');
  const idEl = row.querySelector('div[data-id]');
  const bubble = idEl && idEl.querySelector('.message-in, .message-out');
  if (!idEl || !bubble) { out.push({kind: 'other', text: row.innerText}); continue; }
  const span = row.querySelector('span[data-testid="selectable-text"]') || row.querySelector('span.selectable-text');
  const ack = row.querySelector('span[data-icon^="msg-"]');
  out.push({
    kind: 'message', id: idEl.getAttribute('data-id'),
    dir: bubble.classList.contains('message-out') ? 'out' : 'in',
    bubbleOnIdElement: idEl.classList.contains('message-in') || idEl.classList.contains('message-out'),
    pre: pre ? pre.getAttribute('data-pre-plain-text') : null,
    text: span ? span.innerText : null,
    testid: span ? span.getAttribute('data-testid') : null,
    classes: span ? span.className : null,
    time: ([...bubble.querySelectorAll('span')].find((s) => !s.closest('.copyable-text')
            && /^\d{1,2}:\d{2}( [ap]m)?$/.test(s.innerText.trim())) || {}).innerText || null,
    ack: ack ? [ack.getAttribute('data-icon'), ack.getAttribute('aria-label')] : null,
    media: Boolean(row.querySelector('span[data-icon^="media-"]')),
  });
}
return out;
"""

# The chat list: each row's title, badge label and position, found by either role.
CHAT_LIST_JS = r"""
const list = document.querySelector('div[aria-label="Chat list"]');
if (!list) return null;
return [...list.querySelectorAll('[role="row"], [role="listitem"]')].map((row) => {
  const title = row.querySelector('span[title]');
  const badge = row.querySelector('span[aria-label$="unread message"], span[aria-label$="unread messages"]');
  return {role: row.getAttribute('role'), title: title && title.getAttribute('title'),
          badge: badge && badge.getAttribute('aria-label'), text: row.innerText};
});
"""


# -- browsers and simulators -----------------------------------------------------------------

@contextmanager
def browser(profile: Path):
    """A headless Chromium on `profile`; its whole process group is killed on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in CHROME_ARGS + [f"--user-data-dir={profile}", f"--user-agent={DESKTOP_UA}"]:
        options.add_argument(arg)
    service = Service("/usr/bin/chromedriver", popen_kw={"process_group": 0})
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(20)
        driver.set_script_timeout(10)
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
    root = tmp_path_factory.mktemp("messaging-profiles")
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
        options.setdefault("sync_seconds", 0.2)
        options.setdefault("pushname", PUSHNAME)
        sims.append(start(**options))
        return sims[-1]

    yield make
    for sim in sims:
        sim.stop()


# -- reading and driving the page ------------------------------------------------------------

def wait_until(driver, condition, what: str, timeout: float = WAIT_S):
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException, JavascriptException)
                         ).until(condition, message=f"{what} within {timeout} s")


def wait_for(condition, what: str, timeout: float = WAIT_S):
    """A bounded loop on a condition that needs no browser."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        threading.Event().wait(0.05)
    return value


def chat_list(driver):
    return driver.execute_script(CHAT_LIST_JS)


def messages(driver) -> list[dict]:
    return [r for r in driver.execute_script(MESSAGE_ROWS_JS) if r["kind"] == "message"]


def wait_chats(driver):
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#pane-side")
               and chat_list(d), "the chat list with rows")


def link(driver, sim):
    """Open the page, scan its code, wait for the chat list with its rows."""
    driver.get(sim.url)
    ref = wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "div[data-ref] canvas")
                     and d.find_element(By.CSS_SELECTOR, "div[data-ref]").get_attribute("data-ref"), "a QR code")
    sim.scan(ref)
    wait_chats(driver)


def open_send(driver, sim, phone: str, text: str = ""):
    """/send?phone=&text= as alright does; returns the compose box once the chat is open."""
    driver.get(f"{sim.url}send?phone={phone}&text={quote(text)}&type=phone_number&app_absent=1")
    return wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#main {COMPOSE}"), "the compose box")


def compose_text(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, COMPOSE).text


def insert_text(driver, text: str):
    """Type as the product does for any text: focus the box, execCommand('insertText')."""
    box = driver.find_element(By.CSS_SELECTOR, COMPOSE)
    box.click()
    driver.execute_script("arguments[0].focus(); document.execCommand('insertText', false, arguments[1]);", box, text)


def click_row(driver, title: str):
    row = driver.find_element(By.XPATH, f"//div[@aria-label='Chat list']//span[@title='{title}']"
                                        "/ancestor::*[@role='row' or @role='listitem'][1]")
    row.click()
    wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#main header").text.strip() == title,
               f"chat {title!r} open in #main")


def wait_messages(driver, count: int, what: str):
    return wait_until(driver, lambda d: len(found := messages(d)) >= count and found, what)


def wait_ack(driver, wa_id: str, icon: str, label: str):
    def ticked(d):
        row = next((r for r in messages(d) if r["id"] == wa_id), None)
        return row is not None and row["ack"] == [icon, label]
    wait_until(driver, ticked, f"{wa_id} showing {icon}{label!r}")


def outbox_ids(driver) -> list[str]:
    """The message ids the page keeps in its own storage (IndexedDB "model-storage")."""
    return driver.execute_async_script("""
        const done = arguments[0];
        const q = indexedDB.open('model-storage');
        q.onerror = () => done([]);
        q.onsuccess = () => {
          const db = q.result;
          if (!db.objectStoreNames.contains('message')) { db.close(); done([]); return; }
          const g = db.transaction('message').objectStore('message').getAllKeys();
          g.onsuccess = () => { db.close(); done(g.result); };
          g.onerror = () => { db.close(); done([]); };
        };""")


# -- sending ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_send_url_prefills_and_the_send_button_sends(page, make_sim, version):
    sim = make_sim(web_version=version)
    link(page, sim)
    open_send(page, sim, "15550002222", "Hello from /send")
    assert page.find_element(By.CSS_SELECTOR, "#main header").text.strip() == "+1 555-000-2222"
    assert compose_text(page) == "Hello from /send"
    assert page.find_element(By.CSS_SELECTOR, 'input[placeholder="Search or start a new chat"]').get_attribute("data-tab") == "3"
    icon = page.find_element(By.CSS_SELECTOR, SEND_ICON[version])
    button = icon.find_element(By.XPATH, "ancestor::button[1]")
    if version == 2025:
        assert button.get_attribute("aria-label") is None
        assert not page.find_elements(By.CSS_SELECTOR, 'span[data-icon="wds-ic-send-filled"]')
    else:
        assert not page.find_elements(By.CSS_SELECTOR, 'span[data-icon="send"]')
    button.click()

    [row] = wait_messages(page, 1, "the sent row")
    [sent] = wait_for(sim.messages, "the message on the server")
    assert sent["to"] == "15550002222" and sent["text"] == "Hello from /send" and sent["ack"] == "sent"
    assert DATA_ID[version].match(row["id"]) and row["id"] == sent["waId"], (row, sent)
    if version == 2025:
        assert row["id"] == f"true_15550002222@c.us_{sent['id']}"
    wait_ack(page, sent["waId"], "msg-check", " Sent ")
    [row] = messages(page)
    assert row["dir"] == "out" and not row["bubbleOnIdElement"]
    when, _, sender = PRE_PLAIN[version].match(row["pre"]).groups()
    assert sender == PUSHNAME and row["time"] == when, row
    assert row["text"] == "Hello from /send"
    # The box is empty again and holds no send button, only the microphone.
    assert compose_text(page) == ""
    assert not page.find_elements(By.CSS_SELECTOR, SEND_ICON[version])
    assert page.find_elements(By.CSS_SELECTOR, 'footer span[data-icon="ptt"], footer span[data-icon="wds-ic-mic-filled"]')
    assert page.current_url == sim.url  # the /send address is replaced by "/"


@pytest.mark.parametrize("version", VERSIONS)
def test_text_round_trips_exactly_once_with_enter(page, make_sim, version):
    sim = make_sim(web_version=version)
    link(page, sim)
    open_send(page, sim, "917737887058")
    assert not page.find_elements(By.CSS_SELECTOR, SEND_ICON[version])  # empty box: no send button
    texts = [
        "Emoji outside the BMP: 😀👍🏽🇮🇳 and 𝄞",
        "देवनागरी: नमस्ते दुनिया",
        "three\nlines\n\nwith a blank one",
        "spaces  kept   as typed, <b>not markup</b> & 'quotes'",
        "x" * 9_992 + " the end",  # 10,000 characters
    ]
    for n, text in enumerate(texts, 1):
        insert_text(page, text)
        page.find_element(By.CSS_SELECTOR, SEND_ICON[version])  # the send button appeared
        page.find_element(By.CSS_SELECTOR, COMPOSE).send_keys(Keys.ENTER)
        wait_messages(page, n, f"row {n}")
    # Shift+Enter starts a new line instead of sending.
    box = page.find_element(By.CSS_SELECTOR, COMPOSE)
    box.send_keys("first line")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("second line")
    assert len(messages(page)) == len(texts)
    box.send_keys(Keys.ENTER)
    texts.append("first line\nsecond line")
    wait_messages(page, len(texts), "the two-line row")

    sent = wait_for(lambda: len(m := sim.messages()) >= len(texts) and m, "every message on the server")
    assert [m["text"] for m in sent] == texts
    assert len({m["waId"] for m in sent}) == len(texts)
    for m in sent:
        wait_ack(page, m["waId"], "msg-check", " Sent ")
    rows = messages(page)
    assert [r["text"] for r in rows] == texts
    assert [r["id"] for r in rows] == [m["waId"] for m in sent]
    for r in rows:
        if version == 2026:
            assert r["testid"] == "selectable-text"
            assert "copyable-text" in r["classes"].split() and "selectable-text" not in r["classes"].split()
        else:
            assert r["testid"] is None and {"selectable-text", "copyable-text"} <= set(r["classes"].split())
    assert len(sim.messages()) == len(texts)


@pytest.mark.parametrize("version", VERSIONS)
def test_acks_from_the_phone_move_the_ticks(page, make_sim, version):
    sim = make_sim(web_version=version)
    link(page, sim)
    compose = open_send(page, sim, "15550002222", "tick me")
    compose.send_keys(Keys.ENTER)
    [sent] = wait_for(sim.messages, "the message on the server")
    wait_ack(page, sent["waId"], "msg-check", " Sent ")

    assert sim.ack(wa_id=sent["waId"], ack="delivered")[0]["ack"] == "delivered"
    wait_ack(page, sent["waId"], "msg-dblcheck", " Delivered ")
    sim.ack(to="15550002222", ack="read")
    wait_ack(page, sent["waId"], "msg-dblcheck", " Read ")
    sim.ack(wa_id=sent["waId"], ack="delivered")  # acks never move back
    [after] = sim.messages()
    assert after["ack"] == "read" and after["readAt"] and after["deliveredAt"]
    page.refresh()  # the ticks are the server's: a reload shows them too
    wait_chats(page)
    click_row(page, "+1 555-000-2222")
    wait_ack(page, sent["waId"], "msg-dblcheck", " Read ")


@pytest.mark.parametrize("version", VERSIONS)
def test_a_number_not_on_whatsapp_gets_the_invalid_dialog(page, make_sim, version):
    sim = make_sim(web_version=version)
    link(page, sim)
    sim.unregistered(["15550009999"])
    for phone in ("15550009999", "12"):  # unregistered, and not a number at all
        page.get(f"{sim.url}send?phone={phone}&text=hello")
        dialog = wait_until(page, lambda d: next((x for x in d.find_elements(By.CSS_SELECTOR, 'div[role="dialog"]')
                                                  if x.find_elements(By.CSS_SELECTOR, "div[data-animate-modal-popup]")
                                                  and "Phone number shared via url is invalid." in x.text), None),
                            "the invalid-number dialog")
        assert not page.find_elements(By.CSS_SELECTOR, "#main")
        dialog.find_element(By.XPATH, ".//button[normalize-space()='OK']").click()
        wait_until(page, lambda d: not d.find_elements(By.CSS_SELECTOR, 'div[role="dialog"]'), "the dialog gone")
        assert chat_list(page) and not page.find_elements(By.CSS_SELECTOR, "#main")
    assert sim.messages() == []


# -- offline ---------------------------------------------------------------------------------

def test_a_message_typed_during_an_outage_waits_on_the_clock_and_goes_once(page, make_sim):
    sim = make_sim()
    link(page, sim)
    open_send(page, sim, "15550002222")
    sim.outage(60)
    wait_until(page, lambda d: "Computer not connected" in d.find_element(By.TAG_NAME, "body").text,
               "the page noticing the outage")
    insert_text(page, "typed offline 😀")
    page.find_element(By.CSS_SELECTOR, COMPOSE).send_keys(Keys.ENTER)
    [row] = wait_messages(page, 1, "the pending row")
    assert row["ack"] == ["msg-time", " Pending "] and row["dir"] == "out"
    wait_until(page, lambda d: outbox_ids(d) == [row["id"]], "the message in the page's storage")
    # The page retries every second while offline; give it a few tries: still on the clock.
    remaining = sim.phone_state()["outage_remaining"]
    wait_for(lambda: sim.phone_state()["outage_remaining"] < remaining - 2.5, "2.5 s more of the outage")
    assert messages(page)[0]["ack"] == ["msg-time", " Pending "] and sim.messages() == []

    sim.outage(0)
    wait_ack(page, row["id"], "msg-check", " Sent ")
    [sent] = sim.messages()
    assert sent["waId"] == row["id"] and sent["text"] == "typed offline 😀"
    wait_until(page, lambda d: outbox_ids(d) == [], "the page's storage emptied")
    page.refresh()
    wait_chats(page)
    click_row(page, "+1 555-000-2222")
    [again] = wait_messages(page, 1, "the row after a reload")
    assert again["id"] == row["id"] and len(sim.messages()) == 1


def test_a_message_typed_offline_survives_a_browser_restart(profiles, make_sim):
    sim = make_sim(web_version=2025)
    profile = profiles / "restart"
    with browser(profile) as driver:
        link(driver, sim)
        click_row(driver, "Alice Example")
        sim.outage(60)
        wait_until(driver, lambda d: "Computer not connected" in d.find_element(By.TAG_NAME, "body").text,
                   "the page noticing the outage")
        insert_text(driver, "sent after a restart")
        driver.find_element(By.CSS_SELECTOR, COMPOSE).send_keys(Keys.ENTER)
        pending = wait_until(driver, lambda d: next((r for r in messages(d) if r["ack"] == ["msg-time", " Pending "]), None),
                             "the pending row")
        wait_until(driver, lambda d: outbox_ids(d) == [pending["id"].rsplit("_", 1)[1]],
                   "the message in the page's storage")
    assert sim.messages() == []  # the browser is gone with the message unsent
    with browser(profile) as driver:
        driver.get(sim.url)  # still offline: Chromium's error page, nothing sent
        assert "ERR_EMPTY_RESPONSE" in driver.page_source and sim.messages() == []
        sim.outage(0)
        driver.get(sim.url)
        [sent] = wait_for(sim.messages, "the message sent by the restarted page")
        assert sent["text"] == "sent after a restart" and sent["waId"] == pending["id"]
        wait_chats(driver)
        click_row(driver, "Alice Example")
        wait_ack(driver, pending["id"], "msg-check", " Sent ")
        assert [r["id"] for r in messages(driver)].count(pending["id"]) == 1
        wait_until(driver, lambda d: outbox_ids(d) == [], "the page's storage emptied")
    assert len(sim.messages()) == 1


# -- receiving -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_incoming_messages_give_badges_and_opening_the_chat_reads_them(page, make_sim, version):
    sim = make_sim(web_version=version)
    link(page, sim)
    roles = {row["role"] for row in chat_list(page)}
    assert roles == {"listitem" if version == 2026 else "row"}
    carol = [sim.send("15550003333", "Hi, it's Carol", name="Carol"), sim.send("15550003333", "Are you there?")]
    sim.send("917737887058", "नमस्ते")

    def listed(d):
        rows = chat_list(d)
        return len(rows) >= 6 and rows[0]["title"] == "+91 77378 87058" and rows
    rows = wait_until(page, listed, "two new chats on top of the list")
    assert rows[0]["badge"] == "1 unread message" and "नमस्ते" in rows[0]["text"]
    assert rows[1]["title"] == "Carol" and rows[1]["badge"] == "2 unread messages"
    assert not any(row["badge"] for row in rows[2:])

    click_row(page, "Carol")
    wait_until(page, lambda d: not chat_list(d)[1]["badge"], "Carol's badge gone")
    got = messages(page)
    assert [(r["dir"], r["text"]) for r in got] == [("in", "Hi, it's Carol"), ("in", "Are you there?")]
    assert [r["id"] for r in got] == [m["waId"] for m in carol]
    if version == 2025:
        assert got[0]["id"] == f"false_15550003333@c.us_{carol[0]['waId'].rsplit('_', 1)[1]}"
    for r in got:
        when, _, sender = PRE_PLAIN[version].match(r["pre"]).groups()
        assert sender == "Carol" and r["time"] == when and r["ack"] is None
    wait_for(lambda: all(m["read"] for m in sim.inbox() if m["from"] == "15550003333"), "Carol's messages read")
    assert not next(m for m in sim.inbox() if m["from"] == "917737887058")["read"]

    click_row(page, "+91 77378 87058")
    [r] = wait_messages(page, 1, "the +91 message")
    assert PRE_PLAIN[version].match(r["pre"]).group(3) == "+91 77378 87058" and r["text"] == "नमस्ते"
    wait_for(lambda: all(m["read"] for m in sim.inbox()), "every message read")


def test_incoming_to_the_open_chat_appears_at_once_and_is_read(page, make_sim):
    sim = make_sim()
    link(page, sim)
    click_row(page, "Alice Example")
    before = len(messages(page))
    sent = sim.send(ALICE, "Live message\nwith two lines")
    rows = wait_messages(page, before + 1, "the new row")
    assert rows[-1]["dir"] == "in" and rows[-1]["text"] == "Live message\nwith two lines"
    assert rows[-1]["id"] == sent["waId"]
    assert PRE_PLAIN[2026].match(rows[-1]["pre"]).group(3) == "Alice Example"
    wait_for(lambda: sim.inbox()[0]["read"], "the message read by the open page")
    assert not any(row["badge"] for row in chat_list(page))
    photo = sim.send(ALICE, None, kind="image")  # a row with no text: "unsupported" for a reader
    rows = wait_messages(page, before + 2, "the photo row")
    assert rows[-1]["id"] == photo["waId"] and rows[-1]["dir"] == "in" and rows[-1]["media"]
    assert rows[-1]["text"] is None and rows[-1]["pre"] is None


def test_history_has_separators_and_a_notice_and_survives_a_reload(page, make_sim):
    sim = make_sim()
    link(page, sim)
    titles = [row["title"] for row in chat_list(page)]
    assert titles == ["Alice Example", "Bob", "Family", "Energenie team"]
    click_row(page, "Alice Example")
    others = [r["text"] for r in page.execute_script(MESSAGE_ROWS_JS) if r["kind"] == "other"]
    assert "end-to-end encrypted" in others[0]
    day = re.compile(r"^(TODAY|YESTERDAY|[A-Z]+DAY|\d{2}/\d{2}/\d{4})$")
    assert len([t for t in others[1:] if day.match(t)]) >= 2, others  # its history spans two days
    seeded = [(r["dir"], r["text"]) for r in messages(page)]
    assert seeded == [("in", "Are we still on for tomorrow?"), ("out", "Yes! 10 am at the station."),
                      ("in", "See you tomorrow!")]
    assert messages(page)[1]["ack"] == ["msg-dblcheck", " Read "]

    insert_text(page, "kept by the server")
    page.find_element(By.CSS_SELECTOR, COMPOSE).send_keys(Keys.ENTER)
    [sent] = wait_for(sim.messages, "the message on the server")
    wait_ack(page, sent["waId"], "msg-check", " Sent ")
    page.refresh()
    wait_chats(page)
    assert chat_list(page)[0]["title"] == "Alice Example" and "kept by the server" in chat_list(page)[0]["text"]
    click_row(page, "Alice Example")
    after = [(r["dir"], r["text"]) for r in messages(page)]
    assert after == seeded + [("out", "kept by the server")]
    others = [r["text"] for r in page.execute_script(MESSAGE_ROWS_JS) if r["kind"] == "other"]
    assert others[-1] == "TODAY" or "TODAY" in others
    click_row(page, "Bob")  # the demo photo: a message row without text
    photo = messages(page)[-1]
    assert photo["dir"] == "in" and photo["text"] is None and photo["media"]


def test_the_phone_page_acks_and_writes_to_the_account(page, make_sim):
    sim = make_sim()
    sim.state.chats.send("15550002222", "from the web", "3EB0AAAAAAAAAAAAAAAAAA", None)
    page.get(sim.url + "phone")
    wait_until(page, lambda d: "from the web" in d.find_element(By.ID, "sent").text, "the sent message listed")
    page.find_element(By.XPATH, "//ul[@id='sent']//button[normalize-space()='Read']").click()
    wait_for(lambda: sim.messages()[0]["ack"] == "read", "the message read")
    page.find_element(By.ID, "name").send_keys("Carol")
    page.find_element(By.ID, "text").send_keys("from the phone page")
    page.find_element(By.XPATH, "//form[@id='write']//button[normalize-space()='Send']").click()
    [got] = wait_for(sim.inbox, "the message received")
    assert (got["from"], got["name"], got["text"]) == ("15550002222", "Carol", "from the phone page")
    wait_until(page, lambda d: "from the phone page" in d.find_element(By.ID, "inbox").text, "the inbox listed")


# -- without a browser -----------------------------------------------------------------------

@pytest.fixture
def convo():
    """`convo(version)`: conversations on a lock of their own, and the list of their bumps."""
    def make(version=2026):
        bumps = []
        lock = threading.Condition(threading.Lock())
        return chats.Conversations(Options(web_version=version), lock, lambda: bumps.append(1)), bumps
    return make


def test_conversation_rules(convo):
    c, bumps = convo()
    first = c.send("15550002222", "hi", "3EB0AAAAAAAAAAAAAAAAAA", None)
    assert c.send("15550002222", "hi", "3EB0AAAAAAAAAAAAAAAAAA", None) == first  # a retry
    with pytest.raises(SimError) as taken:
        c.send("15550002222", "other text", "3EB0AAAAAAAAAAAAAAAAAA", None)
    assert taken.value.status == 409
    c.send("15550002222", "hi", "3EB0BBBBBBBBBBBBBBBBBB", None)  # the same text twice: two messages
    assert [m["text"] for m in c.sent()] == ["hi", "hi"] and len(bumps) == 2
    assert c.ack(wa_id="3EB0AAAAAAAAAAAAAAAAAA", ack="read")[0]["ack"] == "read"
    assert c.ack(wa_id="3EB0AAAAAAAAAAAAAAAAAA", ack="delivered")[0]["ack"] == "read"
    with pytest.raises(SimError) as unknown:
        c.ack(wa_id="3EB0CCCCCCCCCCCCCCCCCC", ack="read")
    assert unknown.value.status == 404
    with pytest.raises(SimError):
        c.ack(wa_id="3EB0AAAAAAAAAAAAAAAAAA", ack="sent")
    seq = c.seq
    got = c.receive("15550003333", "yo", "Carol", "text")
    with c._changed:
        update = c.updates_locked(seq)
    assert [m["id"] for m in update["updates"]["messages"]] == [got["waId"]]
    assert update["updates"]["chats"][0] == {**update["updates"]["chats"][0], "title": "Carol", "unread": 1}
    assert c.mark_read("15550003333") == 1 and c.inbox()[0]["read"]
    c.set_unregistered(["15550009999"])
    with pytest.raises(SimError) as invalid:
        c.history("15550009999")
    assert invalid.value.error == "not_on_whatsapp"
    c.reset()
    with c._changed:
        assert c.updates_locked(seq)["resync"] is True
    assert c.sent() == [] and c.inbox() == [] and len(c.chat_list()["chats"]) == 4


def test_wa_ids_and_numbers_per_web_version(convo):
    old, _ = convo(2025)
    sent = old.send("15550002222", "hi", "3EB0AAAAAAAAAAAAAAAAAA", None)
    assert old.sent()[0]["waId"] == "true_15550002222@c.us_3EB0AAAAAAAAAAAAAAAAAA"
    got = old.receive("15550003333", "yo", None, "text")
    assert got["waId"].startswith("false_15550003333@c.us_3A")
    old.ack(wa_id="true_15550002222@c.us_3EB0AAAAAAAAAAAAAAAAAA", ack="delivered")
    with pytest.raises(SimError):
        old.ack(wa_id="true_15550004444@c.us_3EB0AAAAAAAAAAAAAAAAAA", ack="read")  # wrong chat
    assert sent["id"] == "3EB0AAAAAAAAAAAAAAAAAA"
    assert chats.format_number("15550002222") == "+1 555-000-2222"
    assert chats.format_number("917737887058") == "+91 77378 87058"
    assert chats.format_number("447700900123") == "+447700900123"


BAD_CALLS = [
    ("POST", "/_phone/ack", {"ack": "read"}),
    ("POST", "/_phone/ack", {"waId": "3EB0AAAAAAAAAAAAAAAAAA", "to": "15550002222", "ack": "read"}),
    ("POST", "/_phone/ack", {"waId": "3EB0AAAAAAAAAAAAAAAAAA", "ack": "seen"}),
    ("POST", "/_phone/ack", {"to": "abc", "ack": "read"}),
    ("POST", "/_phone/send", {"text": "no sender"}),
    ("POST", "/_phone/send", {"from": "15550002222"}),
    ("POST", "/_phone/send", {"from": "15550002222", "text": "x", "kind": "video"}),
    ("POST", "/_phone/send", {"from": "15550002222", "text": "caption", "kind": "image"}),
    ("POST", "/_phone/send", {"from": "15550002222", "text": "x", "name": 5}),
    ("POST", "/_phone/unregistered", {"numbers": "15550002222"}),
    ("POST", "/_phone/unregistered", {"numbers": ["+1 555"]}),
    ("POST", "/_phone/reset", {"messages": "yes"}),
    ("POST", "/_wa/send", {"device": 99, "to": "15550002222", "text": "x", "id": "3EB0AAAAAAAAAAAAAAAAAA"}),
    ("GET", "/_wa/chats?device=99", None),
    ("GET", "/_wa/chat?device=x&with=15550002222", None),
]


@pytest.mark.parametrize("method,path,body", BAD_CALLS)
def test_bad_messaging_calls_are_json_4xx(make_sim, method, path, body):
    sim = make_sim()
    status, answer = sim.request(method, path, body)
    assert 400 <= status < 500 and set(answer) == {"error", "message"}, (status, answer)


def test_phone_messaging_calls(make_sim):
    sim = make_sim()
    with pytest.raises(PhoneError) as unknown:
        sim.ack(wa_id="3EB0AAAAAAAAAAAAAAAAAA", ack="read")
    assert unknown.value.status == 404
    with pytest.raises(PhoneError) as nothing:
        sim.ack(to="15550002222", ack="read")
    assert nothing.value.status == 404
    assert sim.unregistered(["15550009999"]) == ["15550009999"]
    assert sim.unregistered(["15550008888"]) == ["15550008888", "15550009999"]
    got = sim.send("15550003333", "hello", name="Carol")
    assert got["from"] == "15550003333" and got["name"] == "Carol" and got["read"] is False
    assert sim.inbox() == [got] and sim.messages() == []
    sim.reset()  # devices and faults only: conversations are the server's
    assert sim.inbox() == [got]
    sim.reset(messages=True)
    assert sim.inbox() == [] and sim.unregistered([]) == []
    html = sim.request("GET", "/phone")
    assert html[0] == 200


def test_cli_takes_the_web_version():
    bad = subprocess.run([sys.executable, "-m", "simulator", "--web-version", "2024"], cwd=REPO,
                         capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and "--web-version" in bad.stderr
    assert parse(["--web-version", "2025"])[1].web_version == 2025
    assert parse([])[1].web_version == Options().web_version == 2026
    with pytest.raises(ValueError):
        Options(web_version=2024)
