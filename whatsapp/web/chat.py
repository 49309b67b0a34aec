"""Reading and driving WhatsApp Web's chats: the inbox, opening a chat, sending a text.

Page objects (selenium.dev): they return data and never assert. Each read is one
`execute_script`; each wait runs one cheap script again whenever the page has changed (a
MutationObserver in the page wakes it, at most `POLL_S` apart when nothing changes) on a
monotonic deadline: a row or a tick is seen when the page draws it, not at a polling tick
(issue 20: the chat-already-open send took 1.3-1.7x a raw script). Selectors come
from `locators` only. What the markers are, and what differs between builds:
whatsapp-web.md, "Messaging", and `locators`.

- `read_inbox`: the open chat's message rows and every chat-list row with a badge. A
  message arriving in the chat open in `#main` gets no badge (it is read at once), so a
  reader must look at both.
- Sending: `open_by_url` (or `open_chat`), `type_text`, then, with the ids already in the
  chat (`find_outgoing` before typing), `press_send` and `wait_outgoing`. A row found by
  `wait_outgoing` is on the page; its `ack` says whether WhatsApp has it ("pending" is the
  clock: it may go out later by itself, even after a restart).
"""
from __future__ import annotations

import time
from typing import Literal
from urllib.parse import quote

from selenium.common.exceptions import JavascriptException, TimeoutException, WebDriverException

from . import locators as L
from .compose import box_text, normalise, press_send, type_text
from .rows import (
    ARGS,
    PRELUDE,
    READ,
    Inbox,
    OpenChat,
    Row,
    UnreadChat,
    ack_state,
    bare_id,
    inbox_from_raw,
    parse_pre,
    phone_digits,
    read_options,
    row_from_raw,
)

__all__ = [
    "Inbox", "OpenChat", "Row", "UnreadChat", "ack_state", "bare_id", "box_text", "dismiss_dialog",
    "find_outgoing", "open_by_url", "open_chat", "parse_pre", "phone_digits", "press_send", "read_inbox",
    "send_url", "type_text", "wait_ack", "wait_outgoing",
]

POLL_S = 0.1
# Resolves on the page's next DOM change, or after arguments[0] ms without one.
_NEXT_CHANGE = r"""
const done = arguments[arguments.length - 1];
let timer = null;
const observer = new MutationObserver(() => { observer.disconnect(); clearTimeout(timer); done(true); });
observer.observe(document.documentElement, {childList: true, subtree: true, attributes: true, characterData: true});
timer = setTimeout(() => { observer.disconnect(); done(false); }, arguments[0]);
"""
OpenResult = Literal["ready", "invalid", "timeout"]


def read_inbox(driver, max_rows: int = 60) -> Inbox:
    """The open chat (title, its newest `max_rows` message rows, oldest first), every chat
    with an unread badge, and what the compose box holds. One script."""
    raw = driver.execute_script(READ, ARGS, read_options(rows=max_rows, unread=True, compose=True))
    return inbox_from_raw(raw)


def find_outgoing(driver, text: str, window: int = 0) -> list[Row]:
    """Outgoing rows of the open chat whose text is exactly `text`, oldest first, among the
    newest `window` message rows (0: every row the page has loaded). For "was it sent
    before the crash?"."""
    return _rows(driver, read_options(rows=window, match=text))


def wait_outgoing(driver, text: str, known_ids, timeout: float, window: int = 60) -> Row | None:
    """The newest outgoing row with exactly `text` whose `wa_id` is not in `known_ids`,
    polled until `timeout`; None if none showed up (ambiguous: look again before resending).

    Only the newest `window` message rows are looked at, so `known_ids` may be the ids of
    `read_inbox(driver, max_rows=window)` taken before sending: an older row with the same
    text lies outside the window and can never pass for the new one.
    """
    known = set(known_ids)

    def fresh() -> Row | None:
        rows = [r for r in find_outgoing(driver, text, window) if r.wa_id not in known]
        return rows[-1] if rows else None
    return _poll(driver, fresh, timeout)


def wait_ack(driver, wa_id: str, timeout: float) -> Row | None:
    """The row `wa_id` once it shows a tick (sent, delivered or read), polled until
    `timeout`; None if it stayed on the clock (or left the page)."""
    def ticked() -> Row | None:
        rows = _rows(driver, read_options(wa_id=wa_id))
        return rows[-1] if rows and rows[-1].ack not in (None, "pending") else None
    return _poll(driver, ticked, timeout)


def _rows(driver, options: dict) -> list[Row]:
    raw = driver.execute_script(READ, ARGS, options) or {}
    return [row_from_raw(r, raw.get("title")) for r in raw.get("rows") or () if r.get("id")]


def _poll(driver, found, timeout: float):
    """`found()` until it returns something or `timeout` passes (then None), looked at
    again at each change of the page."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = found()
        except JavascriptException:
            value = None  # the page is redrawing
        left = deadline - time.monotonic()
        if value is not None or left <= 0:
            return value
        _next_change(driver, min(POLL_S, left))


def _next_change(driver, seconds: float) -> None:
    """Until the page changes, or `seconds` pass."""
    try:
        driver.execute_async_script(_NEXT_CHANGE, max(1, int(seconds * 1000)))
    except JavascriptException:
        time.sleep(seconds)  # the document is being replaced: nothing to observe yet


def send_url(web_url: str, phone: str, text: str) -> str:
    """`<web_url>/send?phone=<digits>&text=<text, percent-encoded exactly>&type=...`."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not digits:
        raise ValueError(f"not a phone number: {phone!r}")
    query = [("phone", digits), ("text", text), *L.SEND_EXTRA]
    # quote(safe=""): every byte but unreserved ones encoded (a "+" or "&" in the text stays
    # itself, a space is %20 and a newline %0A, UTF-8 for everything else).
    return f"{web_url.rstrip('/')}/{L.SEND_PATH}?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query)


# "invalid" when the invalid-number dialog shows, else the compose box's text, else null.
_OPENED = PRELUDE + r"""
const dialog = all(L.dialog).find((d) => L.invalid.some((t) => (d.innerText || d.textContent || "").includes(t)));
if (dialog) return {invalid: true};
const box = first(L.compose);
return box ? {box: boxText(box)} : null;
"""


def open_by_url(driver, web_url: str, phone: str, text: str, timeout: float) -> OpenResult:
    """Load `/send?phone=&text=` (a full page load) and wait until the chat is open with
    `text` in its compose box ("ready"), or the invalid-number dialog shows ("invalid")."""
    deadline = time.monotonic() + timeout
    try:
        driver.get(send_url(web_url, phone, text))
    except TimeoutException:
        return "timeout"
    want = normalise(text)
    while True:
        try:
            state = driver.execute_script(_OPENED, ARGS)
        except JavascriptException:
            state = None  # the app is still booting
        if state and state.get("invalid"):
            return "invalid"
        if state and state.get("box") is not None and normalise(state["box"]) == want:
            return "ready"
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(POLL_S)  # the app loads, then opens the chat; bounded by `timeout`


_DISMISS = PRELUDE + r"""
const dialog = all(L.dialog).find((d) => L.invalid.some((t) => (d.innerText || d.textContent || "").includes(t)));
if (!dialog) return false;
const ok = all(L.clickable, dialog).find((el) => L.ok.includes((el.innerText || el.textContent || "").trim())
  || L.ok.includes(el.getAttribute("aria-label") || ""));
if (!ok) return false;
(ok.closest(L.button.join(", ")) || ok).click();
return true;
"""


def dismiss_dialog(driver) -> bool:
    """Click the invalid-number dialog's "OK". False when that dialog is not shown."""
    return bool(driver.execute_script(_DISMISS, ARGS))


# The chat-list row's title element for arguments[1] (found by either row role).
_ROW_TITLE = PRELUDE + r"""
const list = first(L.chatList);
if (!list) return null;
const want = arguments[1];
return all(L.chatTitle, list).find((t) => t.getAttribute(L.titleAttr) === want
  && t.closest(L.chatRows.join(", "))) || null;
"""

_HEADER_TITLE = PRELUDE + r"""
const header = first(L.header);
const t = header && first(L.headerTitle, header);
return t ? (t.getAttribute(L.titleAttr) || t.textContent || "").trim() : null;
"""


def open_chat(driver, title: str, timeout: float) -> bool:
    """Click the chat-list row titled `title` and wait until `#main`'s header shows it.
    False when there is no such row, or the chat did not open within `timeout`."""
    deadline = time.monotonic() + timeout
    element = driver.execute_script(_ROW_TITLE, ARGS, title)
    if element is None:
        return False
    try:
        element.click()  # a real click, which bubbles up to the row's handler
    except WebDriverException:
        driver.execute_script("arguments[0].click();", element)
    want = _plain(title)
    while True:
        try:
            shown = driver.execute_script(_HEADER_TITLE, ARGS)
        except JavascriptException:
            shown = None
        if shown is not None and _plain(shown) == want:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)  # the chat opens; bounded by `timeout`


def _plain(title: str) -> str:
    """A title without the directional marks WhatsApp may wrap it in, nor outer spaces."""
    return "".join(ch for ch in title if ch not in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                   "\u2066\u2067\u2068\u2069").strip()
