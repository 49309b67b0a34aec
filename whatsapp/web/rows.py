"""What an open chat and the chat list say, read in one script: rows, badges, the compose box.

`READ` runs in the page with the locators as its first argument and options as its second
(`rows`: how many newest message rows to look at, 0 for all; `match`: of those, only the
outgoing rows with exactly this text; `id`: only the row with this data-id; `unread`,
`compose`: also read the badges, the compose box). It returns raw
fields; `inbox_from_raw` / `row_from_raw` turn them into the dataclasses, with the parsing
helpers below (pure, unit-tested without a browser).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from . import locators as L

Direction = Literal["in", "out"]
Kind = Literal["text", "unsupported"]
Ack = Literal["pending", "sent", "delivered", "read"]


@dataclass(frozen=True)
class Row:
    """One message row of the open chat. `wa_id` is the row's `data-id` as the page shows it
    (a bare id, or `true_<digits>@c.us_<id>` in older builds: see `bare_id`)."""
    wa_id: str
    direction: Direction
    kind: Kind              # "unsupported": a photo, voice note, deleted message... (text None)
    text: str | None
    pre: str | None         # the raw data-pre-plain-text, "[12:19, 01/12/2026] Name: "
    time: str | None        # "12:19, 01/12/2026" (or "8:05 pm, 01/12/2026"), as shown
    sender: str | None      # the name or number after the brackets, without ": "
    sender_digits: str | None  # when `sender` (or, incoming, the chat title) is a phone number
    ack: Ack | None         # outgoing rows only


@dataclass(frozen=True)
class OpenChat:
    title: str | None       # None: no chat open
    title_digits: str | None
    rows: tuple[Row, ...]   # message rows only, oldest first


@dataclass(frozen=True)
class UnreadChat:
    title: str
    count: int


@dataclass(frozen=True)
class Inbox:
    open: OpenChat
    unread: tuple[UnreadChat, ...]
    compose_text: str | None  # None: no compose box (no chat open)


# Shared by every script of the chat modules: locator helpers, the text of a message (a DOM
# walk: text nodes, <br> as "\n", emoji images as their text) and of the compose box
# (Chromium's and Lexical's editing DOM: a block per line, a <br> ending a line is only the
# editor's placeholder).
PRELUDE = r"""
const L = arguments[0];
const first = (list, root) => {
  for (const sel of list) { const el = (root || document).querySelector(sel); if (el) return el; }
  return null;
};
const firstAll = (list, root) => {
  for (const sel of list) {
    const found = (root || document).querySelectorAll(sel);
    if (found.length) return Array.from(found);
  }
  return [];
};
const all = (list, root) => Array.from((root || document).querySelectorAll(list.join(", ")));
const inside = (el, list, stop) => {
  for (const sel of list) { const up = el.closest(sel); if (up && (!stop || stop.contains(up))) return true; }
  return false;
};
const emojiText = (img) => {
  const attr = L.emojiAttrs.find((a) => img.getAttribute(a));
  return attr ? img.getAttribute(attr) : "";
};
const textOf = (root) => {
  let out = "";
  const walk = (node) => {
    for (const c of node.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) out += c.data;
      else if (c.nodeType !== Node.ELEMENT_NODE) continue;
      else if (c.nodeName === "BR") out += "\n";
      else if (c.nodeName === "IMG") out += emojiText(c);
      else if (!L.quoted.some((s) => c.matches(s))) walk(c);
    }
  };
  walk(root);
  return out;
};
const BLOCK = new Set(["DIV", "P", "LI", "UL", "OL", "BLOCKQUOTE", "PRE", "H1", "H2", "H3", "H4", "H5", "H6"]);
const boxText = (box) => {
  let out = "", needBreak = false, started = false;
  const emit = (t) => { if (needBreak && started) out += "\n"; needBreak = false; out += t; started = true; };
  const walk = (node) => {
    for (const c of node.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) { if (c.data) emit(c.data); }
      else if (c.nodeName === "BR") emit(!c.nextSibling || BLOCK.has(c.nextSibling.nodeName) ? "" : "\n");
      else if (c.nodeName === "IMG") { if (emojiText(c)) emit(emojiText(c)); }
      else if (c.nodeType === Node.ELEMENT_NODE) {
        const block = BLOCK.has(c.nodeName);
        if (block) needBreak = true;
        walk(c);
        if (block) needBreak = true;
      }
    }
  };
  walk(box);
  return out;
};
"""

READ = PRELUDE + r"""
const O = arguments[1];
// A message row as raw fields; null for a row that is no message; {skip: true} for a
// message row the filters (O.match, O.id) leave out.
const readRow = (row) => {
  const idEl = L.messageId.map((s) => (row.matches(s) ? row : row.querySelector(s))).find(Boolean);
  if (!idEl) return null;
  const bubble = idEl.querySelector(L.bubbleIn.concat(L.bubbleOut).join(", "));
  if (!bubble) return null;  // a notice or separator that happens to carry an id
  const out = L.bubbleOut.some((s) => bubble.matches(s));
  const r = {id: idEl.getAttribute(L.idAttr), dir: out ? "out" : "in", text: null, pre: null, ack: null, label: null};
  if ((O.match !== null && !out) || (O.id !== null && r.id !== O.id)) return {skip: true};
  let span = null;
  for (const sel of L.text) {
    span = Array.from(bubble.querySelectorAll(sel)).find(
      (s) => !inside(s, L.quoted, bubble) && !inside(s, L.preview, bubble));
    if (span) break;
  }
  if (span && !first(L.recalled, bubble)) r.text = textOf(span);
  if (O.match !== null && r.text !== O.match) return {skip: true};
  const pre = all(L.pre, bubble).find((p) => !inside(p, L.quoted, bubble));
  if (pre) r.pre = pre.getAttribute(L.preAttr);
  if (out) {
    const icons = all(L.ackIcons.map((n) => `span[data-icon="${n}"]`), bubble)
      .filter((i) => !inside(i, L.quoted, bubble));
    const icon = icons[icons.length - 1];
    if (icon) { r.ack = icon.getAttribute("data-icon"); r.label = icon.getAttribute("aria-label"); }
  }
  return r;
};
const res = {title: null, rows: [], unread: [], compose: null};
const main = first(L.openChat);
if (main) {
  const header = first(L.header);
  const t = header && first(L.headerTitle, header);
  res.title = t ? (t.getAttribute(L.titleAttr) || t.textContent || "").trim() || null : null;
  const rows = firstAll(L.rows);
  let seen = 0;  // message rows looked at, newest first: O.rows is a window, not a count of matches
  for (let i = rows.length - 1; i >= 0 && (!O.rows || seen < O.rows); i--) {
    const r = readRow(rows[i]);
    if (!r) continue;
    seen++;
    if (!r.skip) res.rows.push(r);
  }
  res.rows.reverse();
  if (O.compose) { const box = first(L.compose); res.compose = box ? boxText(box) : null; }
}
if (O.unread) {
  const list = first(L.chatList);
  for (const badge of list ? all(L.badge, list) : []) {
    const row = badge.closest(L.chatRows.join(", "));
    const t = row && first(L.chatTitle, row);
    if (!t) continue;
    const n = /\d+/.exec(badge.getAttribute("aria-label") || "") || /\d+/.exec(badge.textContent || "");
    res.unread.push({title: t.getAttribute(L.titleAttr), count: n ? parseInt(n[0], 10) : 1});
  }
}
return res;
"""

ARGS = {
    "messageId": L.MESSAGE_ID, "idAttr": L.MESSAGE_ID_ATTRIBUTE, "bubbleIn": L.BUBBLE_IN,
    "bubbleOut": L.BUBBLE_OUT, "text": L.MESSAGE_TEXT, "quoted": L.QUOTED, "preview": L.LINK_PREVIEW,
    "recalled": L.RECALLED, "pre": L.PRE_PLAIN, "preAttr": L.PRE_PLAIN_ATTRIBUTE,
    "ackIcons": [name for name, _ in L.ACK_ICONS], "emojiAttrs": L.EMOJI_IMAGE_ATTRIBUTES,
    "openChat": L.OPEN_CHAT, "header": L.CHAT_HEADER, "headerTitle": L.CHAT_HEADER_TITLE,
    "titleAttr": L.TITLE_ATTRIBUTE, "rows": L.MESSAGE_ROWS, "compose": L.COMPOSE_BOX,
    "chatList": L.CHAT_LIST, "badge": L.UNREAD_BADGE, "chatRows": L.CHAT_ROWS, "chatTitle": L.CHAT_TITLE,
    "sendButton": L.SEND_BUTTON, "button": L.BUTTON, "dialog": L.DIALOG,
    "invalid": L.INVALID_NUMBER_TEXTS, "ok": L.DIALOG_OK_TEXTS, "clickable": L.CLICKABLE,
}


def read_options(rows: int = 0, match: str | None = None, wa_id: str | None = None, unread: bool = False,
                 compose: bool = False) -> dict:
    return {"rows": max(0, rows), "match": match, "id": wa_id, "unread": unread, "compose": compose}


# -- parsing (pure) -------------------------------------------------------------------------

_PRE_RE = re.compile(r"^\[([^\]]*)\]\s*(.*?):\s*$", re.DOTALL)
# Directional marks WhatsApp may wrap a number in (LRM, RLM, LRE...PDF, LRI...PDI).
_BIDI_RE = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NUMBER_RE = re.compile(r"^\+?[\d\s().\-]+$")
_ACKS = dict(L.ACK_ICONS)


def parse_pre(pre: str | None) -> tuple[str | None, str | None]:
    """`"[12:19, 01/12/2026] Name: "` -> `("12:19, 01/12/2026", "Name")`; (None, None) if not that shape."""
    match = _PRE_RE.match(pre or "")
    if not match:
        return None, None
    return match.group(1).strip() or None, match.group(2).strip() or None


def phone_digits(text: str | None) -> str | None:
    """The digits of a phone number as WhatsApp shows one (`+1 555-000-2222`), else None."""
    if not text:
        return None
    plain = _BIDI_RE.sub("", text).strip()
    if not _NUMBER_RE.match(plain):
        return None
    digits = re.sub(r"\D", "", plain)
    return digits if 6 <= len(digits) <= 15 else None


def ack_state(icon: str | None, label: str | None) -> Ack | None:
    """The ack an icon shows: msg-dblcheck is read when its aria-label says so."""
    state = _ACKS.get(icon or "")
    if state == "delivered" and (label or "").strip() in L.ACK_READ_LABELS:
        return "read"
    return state  # type: ignore[return-value]  # the table holds only Ack values


def bare_id(wa_id: str) -> str:
    """The message id inside an older `true_<digits>@c.us_<id>` data-id; a bare id as is."""
    parts = wa_id.split("_")
    if len(parts) >= 3 and parts[0] in ("true", "false"):
        return parts[2]
    return wa_id


def row_from_raw(raw: dict, title: str | None) -> Row:
    time_, sender = parse_pre(raw.get("pre"))
    direction: Direction = "out" if raw.get("dir") == "out" else "in"
    digits = phone_digits(sender) or (phone_digits(title) if direction == "in" else None)
    text = raw.get("text")
    return Row(wa_id=raw.get("id") or "", direction=direction, kind="text" if text is not None else "unsupported",
               text=text, pre=raw.get("pre"), time=time_, sender=sender, sender_digits=digits,
               ack=ack_state(raw.get("ack"), raw.get("label")) if direction == "out" else None)


def inbox_from_raw(raw: dict | None) -> Inbox:
    raw = raw or {}
    title = raw.get("title")
    rows = tuple(row_from_raw(r, title) for r in raw.get("rows") or () if r.get("id"))
    unread = tuple(UnreadChat(title=u["title"], count=int(u.get("count") or 1))
                   for u in raw.get("unread") or () if u.get("title"))
    return Inbox(open=OpenChat(title=title, title_digits=phone_digits(title), rows=rows),
                 unread=unread, compose_text=raw.get("compose"))
