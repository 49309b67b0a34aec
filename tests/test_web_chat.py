"""The messaging page code (whatsapp.web.chat) in real headless Chromium against the
simulator, for both web versions; and its pure helpers without a browser.

One browser for the module; one simulator per web version, linked once through the phone
API (each on its own port, so each has its own storage and login). Every test talks to
numbers of its own, so the order of tests does not matter. Imports only whatsapp.web.* and
simulator.*: the rest of the tree may be mid-change. No sleeps: every wait is bounded.
"""
from __future__ import annotations

import os
import re
import signal
import threading
import time
from contextlib import contextmanager

import psutil
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from simulator.testing import start
from whatsapp.web import chat, locators, page
from whatsapp.web.rows import ack_state, bare_id, inbox_from_raw, parse_pre, phone_digits

# As tests/test_simulator_messaging.py starts its browser (the product's flags, the
# language pin, no traffic outside 127.0.0.1, a desktop user agent).
DESKTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/156.0.0.0 Safari/537.36")
CHROME_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
    "--disable-blink-features=AutomationControlled", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--lang=en-US",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
WAIT_S = 15  # generous: other browser tests share this machine
PUSHNAME = "Demo Phone"
VERSIONS = [pytest.param(v, marks=pytest.mark.e2e, id=str(v)) for v in ("2025", "2026")]

OUT_ID = {"2026": re.compile(r"^3EB0[0-9A-F]{18}$"), "2025": re.compile(r"^true_\d+@c\.us_3EB0[0-9A-F]{18}$")}
IN_ID = {"2026": re.compile(r"^3A[0-9A-F]{18}$"), "2025": re.compile(r"^false_\d+@c\.us_3A[0-9A-F]{18}$")}
SHOWN = {"2026": re.compile(r"^\d{2}:\d{2}, \d{2}/\d{2}/\d{4}$"),
         "2025": re.compile(r"^\d{1,2}:\d{2} [ap]m, \d{2}/\d{2}/\d{4}$")}


# -- the browser and the simulators ------------------------------------------------------------

@contextmanager
def browser(profile):
    """A headless Chromium on `profile`; its whole process group is killed on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in [*CHROME_ARGS, f"--user-data-dir={profile}", f"--user-agent={DESKTOP_UA}"]:
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
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("web-chat-profile")
    with browser(root / "profile") as driver:
        yield driver
    deadline = time.monotonic() + 10
    while left := [p.pid for p in psutil.process_iter(["cmdline"])
                   if any(str(root) in part for part in (p.info["cmdline"] or []))]:
        assert time.monotonic() < deadline, f"browser processes left behind: {left}"
        threading.Event().wait(0.1)


@pytest.fixture(scope="module")
def sims():
    started: dict[str, object] = {}
    yield started
    for sim in started.values():
        sim.stop()


def wait_for(condition, what: str, timeout: float = WAIT_S):
    """A bounded loop on `condition` (browser or not); returns its first truthy value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        threading.Event().wait(0.05)
    return value


def screen(driver):
    return page.read_state(driver).screen


@pytest.fixture
def wa(request, shared, sims):
    """(driver, sim) for the test's web version: the chat list of a linked page."""
    version = request.param
    sim = sims.get(version)
    if sim is None:
        sim = sims[version] = start(web_version=int(version), sync_seconds=0.2, pushname=PUSHNAME,
                                    phone="15550001111")
        shared.get(sim.url)
        payload = sim.wait_qr(WAIT_S)
        state = wait_for(lambda: (s := page.read_state(shared)).screen is page.Screen.QR and s.qr and s,
                         "the QR screen")
        assert state.qr == payload and not state.stored_login
        sim.scan(payload)
    else:
        shared.get(sim.url)
    wait_for(lambda: screen(shared) is page.Screen.CHATS, "the chat list")
    assert page.read_state(shared).stored_login
    return shared, sim


def parametrize_wa(test):
    return pytest.mark.parametrize("wa", VERSIONS, indirect=True)(test)


def sent_to(sim, number: str) -> list[dict]:
    """What the phone side got from the account for `number` (the simulator is shared)."""
    return [m for m in sim.messages() if m["to"] == number]


def inbox_until(driver, check, what: str, max_rows: int = 60):
    return wait_for(lambda: (box := chat.read_inbox(driver, max_rows)) and check(box) and box, what)


# -- reading -----------------------------------------------------------------------------------

@parametrize_wa
def test_read_inbox_rows_ids_senders_and_unsupported(wa):
    driver, sim = wa
    version = str(sim.state.options.web_version)
    empty = chat.read_inbox(driver)
    assert empty.open.title is None and empty.open.rows == () and empty.compose_text is None

    assert chat.open_chat(driver, "Alice Example", WAIT_S)
    inbox = chat.read_inbox(driver)
    assert inbox.open.title == "Alice Example" and inbox.open.title_digits is None
    assert inbox.compose_text == ""
    # The encryption notice and the date separators are rows of #main too: skipped.
    assert [(r.direction, r.kind, r.text) for r in inbox.open.rows[:3]] == [
        ("in", "text", "Are we still on for tomorrow?"), ("out", "text", "Yes! 10 am at the station."),
        ("in", "text", "See you tomorrow!")]
    ask, answer, see = inbox.open.rows[:3]
    assert IN_ID[version].match(ask.wa_id) and OUT_ID[version].match(answer.wa_id), (ask, answer)
    assert chat.bare_id(answer.wa_id).startswith("3EB0")
    for row in (ask, answer, see):
        assert SHOWN[version].match(row.time) and row.pre == f"[{row.time}] {row.sender}: ", row
    assert (ask.sender, ask.sender_digits, ask.ack) == ("Alice Example", None, None)
    assert (answer.sender, answer.sender_digits, answer.ack) == (PUSHNAME, None, "read")

    assert chat.open_chat(driver, "Bob", WAIT_S)
    photo = chat.read_inbox(driver).open.rows[-1]
    assert (photo.direction, photo.kind, photo.text, photo.pre) == ("in", "unsupported", None, None)
    assert IN_ID[version].match(photo.wa_id)

    # A bare number writes: its chat's title is the formatted number, its digits the sender's.
    got = sim.send("15550004444", "from a bare number")
    inbox = inbox_until(driver, lambda b: b.unread, "the new chat's badge")
    assert inbox.unread == (chat.UnreadChat("+1 555-000-4444", 1),)
    assert chat.open_chat(driver, "+1 555-000-4444", WAIT_S)
    inbox = inbox_until(driver, lambda b: not b.unread, "the badge gone")
    assert (inbox.open.title, inbox.open.title_digits) == ("+1 555-000-4444", "15550004444")
    [row] = inbox.open.rows
    assert (row.wa_id, row.direction, row.text) == (got["waId"], "in", "from a bare number")
    assert (row.sender, row.sender_digits) == ("+1 555-000-4444", "15550004444")
    wait_for(lambda: all(m["read"] for m in sim.inbox() if m["from"] == "15550004444"), "the message read")

    # The open chat's rows are read as well as badges: a message arriving there has none.
    sim.send("15550004444", "while open")
    inbox = inbox_until(driver, lambda b: len(b.open.rows) == 2, "the live row")
    assert inbox.unread == () and inbox.open.rows[-1].text == "while open"
    # max_rows keeps the newest.
    assert [r.text for r in chat.read_inbox(driver, max_rows=1).open.rows] == ["while open"]


@parametrize_wa
def test_acks_from_pending_to_read(wa):
    driver, sim = wa
    assert chat.open_by_url(driver, sim.url, "15550005555", "", WAIT_S) == "ready"
    sim.outage(60)
    try:
        assert chat.type_text(driver, "sent while offline")
        assert chat.press_send(driver)
        row = chat.wait_outgoing(driver, "sent while offline", set(), WAIT_S)
        assert row is not None and row.ack == "pending" and row.direction == "out"
        assert chat.wait_ack(driver, row.wa_id, 0.3) is None  # still on the clock
    finally:
        sim.outage(0)
    sent = chat.wait_ack(driver, row.wa_id, WAIT_S)
    assert sent is not None and sent.ack == "sent" and sent.wa_id == row.wa_id
    [message] = sent_to(sim, "15550005555")
    assert message["waId"] == row.wa_id and message["text"] == "sent while offline"
    sim.ack(wa_id=row.wa_id, ack="delivered")
    inbox_until(driver, lambda b: b.open.rows[-1].ack == "delivered", "delivered (msg-dblcheck)")
    sim.ack(to="15550005555", ack="read")
    inbox_until(driver, lambda b: b.open.rows[-1].ack == "read", "read (msg-dblcheck ' Read ')")


# -- opening chats -----------------------------------------------------------------------------

@parametrize_wa
def test_open_by_url_ready_invalid_and_dismiss(wa):
    driver, sim = wa
    text = "Prefilled & 100% +exact\nsecond line 😀 é"
    assert chat.open_by_url(driver, sim.url, "15550006666", text, WAIT_S) == "ready"
    inbox = chat.read_inbox(driver)
    assert inbox.compose_text == text
    assert (inbox.open.title, inbox.open.title_digits) == ("+1 555-000-6666", "15550006666")
    assert not chat.dismiss_dialog(driver)  # no dialog

    sim.unregistered(["15550009999"])
    for phone in ("15550009999", "12"):  # not on WhatsApp, and not a number at all
        assert chat.open_by_url(driver, sim.url.rstrip("/"), phone, "hello", WAIT_S) == "invalid"
        assert chat.read_inbox(driver).open.title is None
        assert chat.dismiss_dialog(driver)
        wait_for(lambda: not chat.dismiss_dialog(driver), "the dialog gone")
        assert screen(driver) is page.Screen.CHATS
    assert sent_to(sim, "15550009999") == [] and sent_to(sim, "15550006666") == []


@parametrize_wa
def test_open_chat_by_title_reads_an_unread_chat(wa):
    driver, sim = wa
    sent = [sim.send("15550007777", "Hi, it's Carol", name="Carol"), sim.send("15550007777", "नमस्ते 👋🏽")]
    inbox_until(driver, lambda b: chat.UnreadChat("Carol", 2) in b.unread, "Carol's badge saying 2")
    assert not chat.open_chat(driver, "Nobody by that name", 1)
    assert chat.open_chat(driver, "Carol", WAIT_S)
    inbox = inbox_until(driver, lambda b: all(u.title != "Carol" for u in b.unread), "Carol's badge gone")
    assert inbox.open.title == "Carol" and inbox.open.title_digits is None
    assert [(r.wa_id, r.text, r.sender) for r in inbox.open.rows] == [
        (m["waId"], m["text"], "Carol") for m in sent]
    # Carol is named: her number is not on the page (sender and title are her name).
    assert all(r.sender_digits is None for r in inbox.open.rows)
    wait_for(lambda: all(m["read"] for m in sim.inbox() if m["from"] == "15550007777"), "Carol's messages read")


# -- sending -----------------------------------------------------------------------------------

TEXTS = [
    "Emoji outside the BMP: 😀👍🏽🇮🇳 𝄞 and a ZWJ family 👨‍👩‍👧",
    "देवनागरी: नमस्ते दुनिया। क्या हाल है?",
    "العربية: مرحبا بالعالم، كيف حالك؟",
    "three\nlines\n\nwith a blank one and  two spaces",
    "a link https://example.com/a?b=1&c=2 inside, <b>not markup</b> & 'quotes'",
    "y" * 9_990 + " the end.",  # 10,000 characters
]


@parametrize_wa
def test_type_send_and_confirm_exact_text(wa):
    driver, sim = wa
    version = str(sim.state.options.web_version)
    assert chat.open_by_url(driver, sim.url, "917737887058", "", WAIT_S) == "ready"
    assert chat.read_inbox(driver).open.title_digits == "917737887058"
    rows = []
    for n, text in enumerate(TEXTS):
        known = {r.wa_id for r in chat.read_inbox(driver).open.rows}
        assert chat.type_text(driver, "left over from before")  # replaced, not appended to
        assert chat.type_text(driver, text), n
        assert chat.read_inbox(driver).compose_text == text
        if n == 1:  # no send button (a build without one we know): Enter in the box
            driver.execute_script("for (const b of document.querySelectorAll('#main footer button')) "
                                  "if (b.querySelector('span[data-icon]')?.dataset.icon.includes('send')) b.remove();")
            assert not driver.execute_script("return document.querySelector(arguments[0].join(', '))",
                                             list(locators.SEND_BUTTON))
        assert chat.press_send(driver)
        row = chat.wait_outgoing(driver, text, known, WAIT_S)
        assert row is not None and row.text == text and row.direction == "out" and row.kind == "text", n
        assert OUT_ID[version].match(row.wa_id) and row.sender == PUSHNAME and row.sender_digits is None
        rows.append(row)
    assert chat.read_inbox(driver).compose_text == ""
    sent = wait_for(lambda: len(m := sent_to(sim, "917737887058")) >= len(TEXTS) and m, "every message on the phone")
    assert [m["text"] for m in sent] == TEXTS
    assert [m["waId"] for m in sent] == [r.wa_id for r in rows]
    # An empty box: no send button, Enter sends nothing.
    assert chat.type_text(driver, "") and chat.press_send(driver)
    assert chat.wait_outgoing(driver, "", set(), 0.3) is None and len(sent_to(sim, "917737887058")) == len(TEXTS)


@parametrize_wa
def test_find_outgoing_after_a_reload(wa):
    driver, sim = wa
    text = "sent twice, found twice 😀"
    assert chat.open_by_url(driver, sim.url, "15550008888", text, WAIT_S) == "ready"
    assert chat.find_outgoing(driver, text) == []
    ids = []
    for _ in range(2):
        known = {r.wa_id for r in chat.read_inbox(driver).open.rows}
        if chat.read_inbox(driver).compose_text != text:
            assert chat.type_text(driver, text)
        assert chat.press_send(driver)
        row = chat.wait_outgoing(driver, text, known, WAIT_S)
        assert row is not None
        ids.append(row.wa_id)
    assert chat.type_text(driver, "another text") and chat.press_send(driver)
    assert chat.wait_outgoing(driver, "another text", set(ids), WAIT_S) is not None
    for wa_id in ids:
        assert chat.wait_ack(driver, wa_id, WAIT_S) is not None

    driver.refresh()  # as after a crash: the page knows only what WhatsApp kept
    wait_for(lambda: screen(driver) is page.Screen.CHATS, "the chat list again")
    assert chat.read_inbox(driver).open.title is None
    assert chat.open_chat(driver, "+1 555-000-8888", WAIT_S)
    found = wait_for(lambda: chat.find_outgoing(driver, text), "the rows after the reload")
    assert [r.wa_id for r in found] == ids and all(r.ack == "sent" for r in found)
    assert [r.wa_id for r in chat.find_outgoing(driver, text, window=1)] == []  # newest row is another
    assert [m["waId"] for m in sent_to(sim, "15550008888")][:2] == ids and len(sent_to(sim, "15550008888")) == 3


# -- shapes of the real page the simulator does not draw ------------------------------------------

# Modelled on the 2026 DOM captures in sanand0/tools whatsappscraper (test-messages-2026-04
# and -05-10): the data-id element three levels above the bubble, an author block, a quoted
# message, a link, an emoji drawn as an image, a line break, a preview card (here a link, as
# LINK_PREVIEW supposes), a deleted message, and a row with an id but no text.
CAPTURE = """
<div id="main"><header><div><span dir="auto" title="\u202a+91 77378 87058\u202c">+91 77378 87058</span></div></header>
<div role="row"><div class="_amjv" data-id="3EB00298006A5DC1795156"><div data-virtualized="false"><div>
  <div class="message-in focusable-list-item">
    <div role=""><span data-testid="author" dir="auto" aria-label="Maybe Nirant">Nirant</span></div>
    <div class="_ahy1 copyable-text" data-pre-plain-text="[12:19, 10/05/2026] +91 77378 87058: ">
      <div role="button" aria-label="Quoted message">
        <span data-testid="selectable-text" class="quoted-mention copyable-text">the quote</span></div>
      <a href="https://x.com/a"><span data-testid="selectable-text" class="copyable-text">Preview title</span></a>
      <span data-testid="selectable-text" dir="ltr" class="_ao3e copyable-text">see <a
        href="https://x.com/a">https://x.com/a</a> <img class="emoji" alt="😀" src="data:,"
        >!<br>second line</span>
      <span><span>12:19</span></span>
    </div></div></div></div></div></div>
<div role="row"><div data-id="36959035441778309954"><div class="message-in">
  <span dir="auto">~Aashay</span></div></div></div>
<div role="row"><div data-id="3A4689CE2A81856D4BB0"><div class="message-in">
  <div class="copyable-text" data-pre-plain-text="[12:20, 10/05/2026] +91 77378 87058: ">
    <span data-icon="recalled"></span>
    <span class="selectable-text copyable-text">This message was deleted</span></div></div></div></div>
<div role="row"><div class="sep"><span>TODAY</span></div></div>
<div role="row"><div data-id="3EB0AAAAAAAAAAAAAAAAAA"><div class="message-out">
  <div class="copyable-text" data-pre-plain-text="[12:21, 10/05/2026] Me: ">
    <span data-testid="selectable-text" class="copyable-text">ok</span>
    <span data-icon="msg-dblcheck" aria-label=" Read "></span></div></div></div></div>
</div>
"""


@pytest.mark.e2e
def test_rows_of_real_capture_shapes(shared):
    shared.get("about:blank")
    shared.execute_script("document.body.innerHTML = arguments[0];", CAPTURE)
    inbox = chat.read_inbox(shared)
    assert (inbox.open.title, inbox.open.title_digits) == ("\u202a+91 77378 87058\u202c", "917737887058")
    first, contact, deleted, ok = inbox.open.rows
    assert (first.wa_id, first.direction, first.kind) == ("3EB00298006A5DC1795156", "in", "text")
    assert first.text == "see https://x.com/a 😀!\nsecond line"  # not the quote, not the preview
    assert (first.time, first.sender, first.sender_digits) == ("12:19, 10/05/2026", "+91 77378 87058", "917737887058")
    assert (contact.kind, contact.text, contact.pre) == ("unsupported", None, None)  # reported, not dropped
    assert (deleted.kind, deleted.text) == ("unsupported", None)
    assert (ok.direction, ok.text, ok.ack, ok.sender) == ("out", "ok", "read", "Me")
    assert chat.find_outgoing(shared, "ok") == [ok] and chat.find_outgoing(shared, "see") == []


# -- the screens read_state knows, with tuple locators -------------------------------------------

@parametrize_wa
def test_read_state_conflict_and_use_here(wa):
    driver, sim = wa
    state = page.read_state(driver)
    assert state.account.phone == "15550001111" and state.account.pushname == PUSHNAME
    sim.conflict()
    wait_for(lambda: screen(driver) is page.Screen.CONFLICT, "the conflict dialog")
    assert not chat.dismiss_dialog(driver)  # not the invalid-number dialog: left alone
    assert page.use_here(driver)
    wait_for(lambda: screen(driver) is page.Screen.CHATS, "the chat list back")


# -- without a browser -----------------------------------------------------------------------

def test_send_url_encodes_exactly():
    extra = "&type=phone_number&app_absent=1"
    assert chat.send_url("https://web.whatsapp.com/", "15550002222", "hi") == \
        "https://web.whatsapp.com/send?phone=15550002222&text=hi" + extra
    assert chat.send_url("http://127.0.0.1:3002", "+1 555-000-2222", "a b&c=d+e%f\n😀/?#") == (
        "http://127.0.0.1:3002/send?phone=15550002222&text=a%20b%26c%3Dd%2Be%25f%0A%F0%9F%98%80%2F%3F%23" + extra)
    assert chat.send_url("http://x/", "15550002222", "") == "http://x/send?phone=15550002222&text=" + extra
    with pytest.raises(ValueError):
        chat.send_url("http://x/", "no digits", "hi")


def test_parse_pre_both_clocks():
    assert parse_pre("[12:19, 01/12/2026] Name: ") == ("12:19, 01/12/2026", "Name")
    assert parse_pre("[8:05 pm, 01/12/2026] +1 555-000-2222: ") == ("8:05 pm, 01/12/2026", "+1 555-000-2222")
    assert parse_pre("[8:05 pm, 01/12/2026] Dr. Who: the 2nd: ") == ("8:05 pm, 01/12/2026", "Dr. Who: the 2nd")
    assert parse_pre(None) == (None, None) and parse_pre("no brackets: ") == (None, None)


def test_phone_digits():
    assert phone_digits("+1 555-000-2222") == "15550002222"
    assert phone_digits("+91 77378 87058") == "917737887058"
    assert phone_digits("\u202a+44 7700 900123\u202c") == "447700900123"  # directional marks
    assert phone_digits("+447700900123") == "447700900123"
    for other in ("Alice Example", "Family 2", "+12 34", "", None, "1234567890123456"):
        assert phone_digits(other) is None, other


def test_ack_state_and_bare_id():
    assert [ack_state(i, label) for i, label in [("msg-time", " Pending "), ("msg-check", " Sent "),
                                                 ("msg-dblcheck", " Delivered "), ("msg-dblcheck", " Read "),
                                                 ("msg-dblcheck-ack", None), ("status-check", None), (None, None)]] \
        == ["pending", "sent", "delivered", "read", "read", None, None]
    assert bare_id("true_15550002222@c.us_3EB0AAAAAAAAAAAAAAAAAA") == "3EB0AAAAAAAAAAAAAAAAAA"
    assert bare_id("false_120363@g.us_3A00_15550002222@c.us") == "3A00"
    assert bare_id("3EB0AAAAAAAAAAAAAAAAAA") == "3EB0AAAAAAAAAAAAAAAAAA"


def test_inbox_from_raw():
    raw = {"title": "+1 555-000-2222", "compose": "draft", "rows": [
        {"id": "3A01", "dir": "in", "text": None, "pre": None},
        {"id": "3A02", "dir": "in", "text": "hi", "pre": "[12:19, 01/12/2026] Someone: "},
        {"id": "3EB0", "dir": "out", "text": "yo", "pre": "[12:20, 01/12/2026] Me: ", "ack": "msg-check",
         "label": " Sent "},
        {"id": "", "dir": "in", "text": "no id"},
    ], "unread": [{"title": "Carol", "count": 3}, {"title": None, "count": 1}, {"title": "Dan", "count": None}]}
    inbox = inbox_from_raw(raw)
    assert inbox.open.title_digits == "15550002222" and inbox.compose_text == "draft"
    photo, hi, yo = inbox.open.rows
    assert (photo.kind, photo.text, photo.sender, photo.sender_digits) == ("unsupported", None, None, "15550002222")
    assert (hi.kind, hi.time, hi.sender, hi.sender_digits, hi.ack) == ("text", "12:19, 01/12/2026", "Someone",
                                                                        "15550002222", None)
    assert (yo.direction, yo.ack, yo.sender_digits) == ("out", "sent", None)  # the chat's number is not ours
    assert inbox.unread == (chat.UnreadChat("Carol", 3), chat.UnreadChat("Dan", 1))
    assert inbox_from_raw(None) == chat.Inbox(chat.OpenChat(None, None, ()), (), None)
