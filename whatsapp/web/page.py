"""Reading WhatsApp Web: which screen is shown, the QR payload, the account.

One `execute_script` per read, so a read is one bounded driver call. Page code returns
data and never asserts; every selector comes from `locators`.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import time

from selenium.common.exceptions import JavascriptException

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


# Builds the state in the page. Arguments are the locators (tuples of fallbacks, see
# `locators`), so the selectors stay in one module; `first(list)` is the first element the
# first matching selector finds. Storage reads are wrapped: a chrome-error page has no
# localStorage.
_STATE = """
const state = (L) => {
const first = (list, root) => {
  for (const sel of list) { const el = (root || document).querySelector(sel); if (el) return el; }
  return null;
};
const all = (list, root) => Array.from((root || document).querySelectorAll(list.join(", ")));
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
const dialog = all(L.dialog).find(
  (d) => first(L.popup, d) && L.conflict.some((t) => text(d).includes(t)));
const qrBox = first(L.qrBox);
const progress = first(L.progress);
if (location.protocol === "chrome-error:") out.screen = "error";
else if (dialog) out.screen = "conflict";
else if (first(L.pane) || first(L.chatList)) out.screen = "chats";
else if (qrBox) {
  const button = first(L.reloadButton);
  if (button || first(L.reloadIcon, qrBox)) {
    out.screen = "qr_expired";
    out.offline = L.offlineText.some((t) => text(button).includes(t));
  } else {
    out.screen = "qr";
    out.qr = qrBox.getAttribute(L.qrAttr) || null;
  }
} else if (progress || L.loading.some((t) => bodyText.includes(t))) {
  out.screen = "loading";
  out.progress = text(progress && progress.parentElement || document.body).trim().slice(0, 80);
} else if (L.unsupported.some((t) => bodyText.includes(t))) out.screen = "unsupported";
return out;
};
"""
_READ_STATE = _STATE + "return state(arguments[0]);"
# The same read, but while the page is still starting or loading it waits (up to
# arguments[1] ms) for the page to move on, and answers the moment it does: a change of
# screen is noticed at once instead of at the next poll. Mutations are coalesced into one
# read per task.
_AWAIT_STATE = _STATE + """
const [L, waitMs, done] = arguments;
const start = state(L);
if (start.screen !== "unknown" && start.screen !== "loading") return done(start);
let finished = false, queued = false, observer = null, timer = null;
const finish = (value) => {
  if (finished) return;
  finished = true;
  if (observer) observer.disconnect();
  clearTimeout(timer);
  done(value);
};
observer = new MutationObserver(() => {
  if (queued) return;
  queued = true;
  setTimeout(() => { queued = false; const now = state(L); if (now.screen !== start.screen) finish(now); }, 0);
});
observer.observe(document, {childList: true, subtree: true, attributes: true, characterData: true});
timer = setTimeout(() => finish(state(L)), waitMs);
"""

_ARGS = {
    "wid": L.STORAGE_WID, "noise": L.STORAGE_NOISE, "pushname": L.STORAGE_PUSHNAME,
    "platform": L.STORAGE_PLATFORM, "dialog": L.DIALOG, "popup": L.MODAL_POPUP,
    "conflict": L.CONFLICT_TEXTS, "pane": L.CHAT_PANE, "chatList": L.CHAT_LIST,
    "qrBox": L.QR_CONTAINER, "qrAttr": L.QR_ATTRIBUTE, "reloadIcon": L.QR_RELOAD_ICON,
    "reloadButton": L.QR_RELOAD_BUTTON, "offlineText": L.QR_OFFLINE_TEXTS,
    "progress": L.LOADING_PROGRESS, "loading": L.LOADING_TEXTS, "unsupported": L.UNSUPPORTED_TEXTS,
}


def read_state(driver, wait_s: float = 0.0) -> PageState:
    """The screen now; with `wait_s`, a starting or loading page is given that long to move
    on, and the new screen is returned as soon as it shows (one bounded driver call)."""
    raw = None
    if wait_s > 0:
        try:
            raw = driver.execute_async_script(_AWAIT_STATE, _ARGS, int(wait_s * 1000))
        except JavascriptException as exc:
            # The page navigated while the script waited ("document unloaded"): read the new one.
            if "unload" not in (exc.msg or "").lower():
                raise
    if raw is None:
        raw = driver.execute_script(_READ_STATE, _ARGS)
    raw = raw or {}
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
const [scopes, labels, clickable] = arguments;
const roots = scopes ? Array.from(document.querySelectorAll(scopes.join(", "))) : [document];
for (const root of roots) {
  for (const el of root.querySelectorAll(clickable.join(", "))) {
    const own = (el.innerText || el.textContent || "").trim();
    const label = el.getAttribute("aria-label") || "";
    if (labels.includes(own) || labels.includes(label)) { el.click(); return true; }
  }
}
return false;
"""


def click_text(driver, labels: tuple[str, ...], scope: tuple[str, ...] | None = None) -> bool:
    """Click the first clickable element (inside `scope`, if given) whose text or aria-label
    is one of `labels`."""
    return bool(driver.execute_script(_CLICK_BY_TEXT, scope and list(scope), list(labels), list(L.CLICKABLE)))


_CLICK_FIRST = """
const [list, buttons] = arguments;
for (const sel of list) {
  const el = document.querySelector(sel);
  if (el) { (el.closest(buttons.join(", ")) || el).click(); return true; }
}
return false;
"""


def click_reload(driver) -> bool:
    """Click "Click to reload QR code" inside the QR container (a new round of codes)."""
    return bool(driver.execute_script(_CLICK_FIRST, list(L.QR_RELOAD_BUTTON), list(L.BUTTON)))


def use_here(driver) -> bool:
    """Take the session over from another window: the conflict dialog's "Use here"."""
    return click_text(driver, L.USE_HERE_TEXTS, L.DIALOG)


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
        driver.execute_script(_CLICK_FIRST, list(L.MENU_ICON), list(L.BUTTON))
    clicked = False
    while time.monotonic() < deadline:
        if not clicked:
            clicked = click_text(driver, L.LOG_OUT_TEXTS)
        elif click_text(driver, L.LOG_OUT_TEXTS, L.DIALOG) or read_state(driver).screen not in (
                Screen.CHATS, Screen.LOADING, Screen.CONFLICT):
            break
        time.sleep(0.2)  # the menu and the popup animate in; polled within the deadline
    while time.monotonic() < deadline:
        if read_state(driver).screen not in (Screen.CHATS, Screen.LOADING, Screen.CONFLICT):
            return True
        time.sleep(0.2)
    return False
