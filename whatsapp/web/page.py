"""Reading WhatsApp Web: which screen is shown, the QR payload, the account.

One `execute_script` per read, so a read is one bounded driver call. Page code returns
data and never asserts; every selector comes from `locators`.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import time

from ..states import Account
from . import locators as L


class Screen(str, enum.Enum):
    QR = "qr"
    QR_EXPIRED = "qr_expired"
    LOADING = "loading"
    CHATS = "chats"
    CONFLICT = "conflict"
    UNSUPPORTED = "unsupported"
    ERROR = "error"      # the browser's own error page: WhatsApp could not be reached
    UNKNOWN = "unknown"  # still loading, or something we do not recognise


@dataclasses.dataclass(frozen=True)
class PageState:
    screen: Screen
    qr: str | None = None
    offline: bool = False
    post_logout: bool = False
    stored_login: bool = False  # last-wid-md and WANoiseInfo both in localStorage
    account: Account = dataclasses.field(default_factory=Account)
    progress: str | None = None
    url: str = ""


# Builds the state in the page. Arguments are the locators, so the selectors stay in one
# module. Storage reads are wrapped: a chrome-error page has no localStorage.
_READ_STATE = """
const L = arguments[0];
const has = (sel) => document.querySelector(sel) !== null;
const text = (el) => (el && (el.innerText || el.textContent) || "");
const bodyText = text(document.body);
let store = {};
try {
  for (const key of [L.wid, L.pushname, L.platform]) store[key] = localStorage.getItem(key);
  // Only whether it is there: it holds the session's private keys, and chromedriver may log
  // every script's result.
  store[L.noise] = localStorage.getItem(L.noise) !== null;
} catch (e) {}
const out = {url: location.href, store: store, screen: "unknown", qr: null, offline: false, progress: null};
const dialog = Array.from(document.querySelectorAll(L.dialog)).find(
  (d) => d.querySelector(L.popup) && L.conflict.some((t) => text(d).includes(t)));
const qrBox = document.querySelector(L.qrBox);
const progress = document.querySelector(L.progress);
if (location.protocol === "chrome-error:") out.screen = "error";
else if (dialog) out.screen = "conflict";
else if (has(L.pane) || has(L.chatList)) out.screen = "chats";
else if (qrBox) {
  const button = qrBox.querySelector("button");
  if (button || qrBox.querySelector(L.reloadIcon)) {
    out.screen = "qr_expired";
    out.offline = text(button).includes(L.offlineText);
  } else {
    out.screen = "qr";
    out.qr = qrBox.getAttribute(L.qrAttr) || null;
  }
} else if (progress || L.loading.some((t) => bodyText.includes(t))) {
  out.screen = "loading";
  out.progress = text(progress && progress.parentElement || document.body).trim().slice(0, 80);
} else if (bodyText.includes(L.unsupported)) out.screen = "unsupported";
return out;
"""

_ARGS = {
    "wid": L.STORAGE_WID, "noise": L.STORAGE_NOISE, "pushname": L.STORAGE_PUSHNAME,
    "platform": L.STORAGE_PLATFORM, "dialog": L.DIALOG, "popup": L.MODAL_POPUP,
    "conflict": list(L.CONFLICT_TEXTS), "pane": L.CHAT_PANE, "chatList": L.CHAT_LIST,
    "qrBox": L.QR_CONTAINER, "qrAttr": L.QR_ATTRIBUTE, "reloadIcon": L.QR_RELOAD_ICON,
    "offlineText": L.QR_OFFLINE_TEXT, "progress": L.LOADING_PROGRESS,
    "loading": list(L.LOADING_TEXTS), "unsupported": L.UNSUPPORTED_TEXT,
}


def read_state(driver) -> PageState:
    raw = driver.execute_script(_READ_STATE, _ARGS) or {}
    store = raw.get("store") or {}
    wid = _unquote(store.get(L.STORAGE_WID))
    return PageState(
        screen=Screen(raw.get("screen", "unknown")),
        qr=raw.get("qr"),
        offline=bool(raw.get("offline")),
        post_logout=L.POST_LOGOUT_QUERY in (raw.get("url") or ""),
        stored_login=bool(wid and store.get(L.STORAGE_NOISE) is True),
        account=account_from_storage(store),
        progress=raw.get("progress"),
        url=raw.get("url") or "",
    )


def _unquote(value: str | None) -> str | None:
    """localStorage values are JSON-encoded strings (`"\\"1555...:3@c.us\\""`)."""
    if not value:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else None


def account_from_storage(store: dict) -> Account:
    """phone from `last-wid-md` (the digits before ':'), pushname and platform from the older keys."""
    wid = _unquote(store.get(L.STORAGE_WID))
    phone = None
    if wid:
        user = wid.split("@", 1)[0].split(":", 1)[0]
        phone = user if user.isdigit() else None
    return Account(wid=wid, phone=phone, pushname=_unquote(store.get(L.STORAGE_PUSHNAME)),
                   platform=_unquote(store.get(L.STORAGE_PLATFORM)))


_CLICK_BY_TEXT = """
const [scope, label] = arguments;
const roots = scope ? Array.from(document.querySelectorAll(scope)) : [document];
for (const root of roots) {
  for (const el of root.querySelectorAll('button, [role="button"], li, div[role="menuitem"], span')) {
    const own = (el.innerText || el.textContent || "").trim();
    if (own === label || (el.getAttribute("aria-label") || "") === label) { el.click(); return true; }
  }
}
return false;
"""


def click_text(driver, label: str, scope: str | None = None) -> bool:
    return bool(driver.execute_script(_CLICK_BY_TEXT, scope, label))


def click_reload(driver) -> bool:
    """Click "Click to reload QR code" inside the QR container (a new round of codes)."""
    return bool(driver.execute_script(
        "const b = document.querySelector(arguments[0]); if (b) { b.click(); return true; } return false;",
        L.QR_RELOAD_BUTTON))


def use_here(driver) -> bool:
    """Take the session over from another window: the conflict dialog's "Use here"."""
    return click_text(driver, L.USE_HERE_TEXT, L.DIALOG)


def log_out(driver, timeout: float) -> bool:
    """Log this device out from the page: menu, "Log out", then confirm "Log out".

    Returns True once the page has left the chat list (WhatsApp then unlinks the device).
    Bounded by `timeout`; every step is one driver call.
    """
    deadline = time.monotonic() + timeout
    state = read_state(driver)
    if state.screen not in (Screen.CHATS, Screen.LOADING, Screen.CONFLICT):
        return False
    if state.screen is Screen.CHATS:
        driver.execute_script(
            "const m = document.querySelector(arguments[0]); if (m) (m.closest('button,[role=button]') || m).click();",
            L.MENU_ICON)
    clicked = False
    while time.monotonic() < deadline:
        if not clicked:
            clicked = click_text(driver, L.LOG_OUT_TEXT)
        elif click_text(driver, L.LOG_OUT_TEXT, L.DIALOG) or read_state(driver).screen not in (
                Screen.CHATS, Screen.LOADING, Screen.CONFLICT):
            break
        time.sleep(0.2)  # the menu and the popup animate in; polled within the deadline
    while time.monotonic() < deadline:
        if read_state(driver).screen not in (Screen.CHATS, Screen.LOADING, Screen.CONFLICT):
            return True
        time.sleep(0.2)
    return False
