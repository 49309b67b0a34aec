"""Every WhatsApp Web selector and visible text the page code uses, grouped by screen.

Each locator is an ordered tuple of fallbacks, newest first: the page code takes the first
that matches (`first`), or, where a tuple lists forms that coexist on one page (both badge
wordings, both chat-row roles), every element matching any of them (noted "union"). A
build that renames one marker then costs a line here, not an outage. Attribute names and
localStorage keys are plain strings: they are WhatsApp's data, not alternatives.

WhatsApp Web renders few `data-testid`s and its class names change with every build, so
these key on ids, `data-ref`, `data-icon`, `role`, `aria-*`, visible text and the few stable
class names named in the sources. Sources:
[W] the team's whatsapp-web.md (WhatsApp Web's own de-minified modules and the public code
    of whatsapp-web.js, wppconnect, open-wa, Baileys, WebWhatsapp-Wrapper and alright, 2026);
    "W/Messaging" is its "Messaging: opening a chat, sending, acks, incoming messages".
[P] public code driving the real page, found with the team's code search (named below).
Nothing is here because the simulator has it: the simulator mirrors these, not the reverse.
The browser's language is pinned to English (browser.py), because several of these are
texts or `aria-label`s WhatsApp translates.
"""

# -- QR screen ---------------------------------------------------------------------------
# [W][P] the QR container; its attribute value is the whole payload (E-RAPHA/zapzap
# `main.js` reads the QR from `data-ref`).
QR_CONTAINER = ("div[data-ref]",)
QR_ATTRIBUTE = "data-ref"
# [W] the canvas inside it that draws the code.
QR_CANVAS = ('canvas[aria-label="Scan this QR code to link a device!"]',)
# [W] after a handful of codes: a reload button inside the container, with this icon.
QR_RELOAD_ICON = ('span[data-icon="refresh-large"]',)
QR_RELOAD_BUTTON = ("div[data-ref] button",)
QR_RELOAD_TEXTS = ("Click to reload QR code",)
# [W] the same button offline.
QR_OFFLINE_TEXTS = ("No internet connection",)

# -- loading screen ----------------------------------------------------------------------
# [W] a progress bar with "Loading your chats [N%]" (also "Downloading messages", "Connecting").
LOADING_PROGRESS = ('progress[max="100"]',)
LOADING_TEXTS = ("Loading your chats", "Downloading messages", "Connecting")

# -- chat list (ready) -------------------------------------------------------------------
# [W][P] the side pane holding the chat list (ajeeq/whatsapp-web-scraper `index.js` waits
# for `#pane-side` once linked); the list's aria label is in [W].
CHAT_PANE = ("#pane-side",)
CHAT_LIST = ('div[aria-label="Chat list"]', "#pane-side")
# [W/Messaging] a chat's row: `listitem` in some builds, `row` in others (union: the row is
# found from its title or badge upwards, by either role). [P] a 2026-01 selectors note
# (`div[aria-label="Chat list"]` > `div[role="listitem"]`), xpum761-byte/wap `chatmasuk.js`
# (`[role="grid"] div[role="row"]`), vchahalibm/choreograph WHATSAPP_SELECTORS.md.
CHAT_ROWS = ('[role="listitem"]', '[role="row"]')
# [W/Messaging] the chat's title is the `title` of the row's `span[title]`. [P] the same in
# Fumnanya92/Sam-agent docs/SOLUTION_SUMMARY.md and xpum761-byte/wap.
CHAT_TITLE = ("span[title]",)
TITLE_ATTRIBUTE = "title"
# [W/Messaging] the unread badge: "1 unread message", "3 unread messages" (union). [P]
# Playwright scripts match `[aria-label*='unread']`; the exact wording is [W]'s.
UNREAD_BADGE = ('span[aria-label$=" unread message"]', 'span[aria-label$=" unread messages"]')

# -- dialogs -----------------------------------------------------------------------------
# [W] a modal dialog; the conflict one has this popup, these texts and "Use here" / "Log out".
DIALOG = ('div[role="dialog"]',)
MODAL_POPUP = ("div[data-animate-modal-popup]",)
CONFLICT_TEXTS = ("open in another window", "open on another computer")
USE_HERE_TEXTS = ("Use here",)
# [W/Messaging] /send with a number not on WhatsApp (alright's comments; many 2024-26
# scripts match this text, e.g. an XPath `//div[text()='Phone number shared via url is
# invalid.']` found with the code search), with an "OK" button.
INVALID_NUMBER_TEXTS = ("Phone number shared via url is invalid",)
DIALOG_OK_TEXTS = ("OK",)
# What a text is looked for on to click it (union), and a clickable ancestor of an icon.
CLICKABLE = ("button", '[role="button"]', "li", 'div[role="menuitem"]', "span")
BUTTON = ("button", '[role="button"]')

# -- logging out from the page -------------------------------------------------------------
# [W] every icon is span[data-icon=...] and the loading screen has a "Log out" button. The
# menu icon's name is UNCONFIRMED in [W]: it comes from a public Puppeteer helper
# (`forceLogoutFromWeb`, found with the code search) that clicks `span[data-icon="menu"]`
# and then the "Log out" entry. If it is missing, `disconnect` still deletes the login and
# says the phone must remove the device itself.
MENU_ICON = ('span[data-icon="menu"]',)
LOG_OUT_TEXTS = ("Log out",)

# -- unsupported browser -----------------------------------------------------------------
# [W] shown for a headless user agent.
UNSUPPORTED_TEXTS = ("WhatsApp works with Google Chrome",)
UNSUPPORTED_LINK = ('a[href^="https://support.google.com/chrome/answer/95414"]',)

# -- the open chat -----------------------------------------------------------------------
# [W/Messaging] /send?phone=<digits>&text=<url-encoded> opens that chat with the text in
# the compose box; alright adds `&type=phone_number&app_absent=1` (Kalebu/alright
# `alright/__init__.py`, `suffix_link`), which keeps the page from offering the desktop app.
SEND_PATH = "send"
SEND_EXTRA = (("type", "phone_number"), ("app_absent", "1"))
# [W/Messaging] the open chat is #main; its header holds the title.
OPEN_CHAT = ("#main",)
CHAT_HEADER = ("#main header",)
# Inside the header: the `title` of a span[title] when there is one, else the first
# span[dir="auto"]'s text. [P] alright's `find_by_username` reads the header span's title;
# Mohit25022005/WhatsBlitz `content.js` (`header span[title]`); public content scripts of
# 2025-26 found with the code search try `#main header span[title]` then
# `#main header span[dir="auto"]` (a `getChatName` helper, an `extractPhoneFromDOM` one).
CHAT_HEADER_TITLE = ("span[title]", 'span[dir="auto"]')

# -- compose box and send button (W/Messaging: "churned often; newest first") --------------
# [W] footer div[contenteditable][role="textbox"][data-tab="10"][aria-placeholder="Type a
# message"] (WhatsBlitz 2025-05, sevadarkness/ultimo 2025-12); [P] sevadarkness/ultimo
# TEST_SELECTORS.md tries `div[data-tab="10"][contenteditable="true"]` then
# `#main footer div[contenteditable="true"]`; WhatsBlitz `content.js` uses
# `div[contenteditable="true"][data-tab="10"]`. The search box is data-tab 3 and not in
# #main's footer, so none of these can match it.
COMPOSE_BOX = (
    '#main footer div[contenteditable="true"][role="textbox"][data-tab="10"][aria-placeholder="Type a message"]',
    '#main footer div[contenteditable="true"][data-tab="10"]',
    '#main footer div[contenteditable="true"][role="textbox"]',
)
# [W] `button[aria-label="Send"]` (2025-10 on), `span[data-icon="wds-ic-send-filled"]`
# (2025-07), `span[data-icon="send"]` (before) (Matt-Fontes/SendScriptWhatsApp issue #102,
# PRs #104, #114). [P] wilson-pinto/auto-send `extension/content.js` and
# Hassaan-Ehmed/ex-wa-auto-messenger `content.js` click `button[aria-label="Send"]`;
# WhatsBlitz uses `span[data-icon="send"]`. An icon is clicked through its button (BUTTON).
# It exists only while the box holds text; Enter in the box sends in every version.
SEND_BUTTON = (
    '#main footer button[aria-label="Send"]',
    '#main footer span[data-icon="wds-ic-send-filled"]',
    '#main footer span[data-icon="send"]',
)

# -- message rows (W/Messaging, from sanand0/tools whatsappscraper/notes.md and its DOM
# captures test-messages-2026-04.html and test-messages-2026-05-10.html) --------------------
# Rows are `#main [role="row"]`; the notes' debugging checklist also counts `#main
# [data-id]`, the fallback if rows lose their role (each is then its own row).
MESSAGE_ROWS = ('#main [role="row"]', "#main div[data-id]")
# Inside a row, not on the bubble itself: the element with the id (`true_<digits>@c.us_<ID>`
# until about 2026-04-19, then a bare id; the captures put it 3 levels above the bubble).
MESSAGE_ID = ("div[data-id]", "[data-id]")
MESSAGE_ID_ATTRIBUTE = "data-id"
# The bubble inside it: its class gives the direction (the bare id says nothing).
BUBBLE_IN = (".message-in",)
BUBBLE_OUT = (".message-out",)
# `[12:19, 10/05/2026] +91 77378 87058: ` (or `[8:05 pm, 14/12/2025] Name: `).
PRE_PLAIN = ("div.copyable-text[data-pre-plain-text]", "[data-pre-plain-text]")
PRE_PLAIN_ATTRIBUTE = "data-pre-plain-text"
# The text: span[data-testid="selectable-text"] in 2026 captures (classes: build hashes +
# copyable-text), span.selectable-text before. The first one outside a quote or preview.
MESSAGE_TEXT = ('span[data-testid="selectable-text"]', "span.selectable-text")
# A quoted message inside the bubble (its text is not the message's). The notes match it
# case-insensitively.
QUOTED = ('[aria-label="Quoted message" i]',)
# UNCONFIRMED: no capture marks a link preview (the 2026-05-10 capture's `div.preview-card`
# is its author's stand-in). A preview card links to the page, and a message's own text is
# never inside a link (its links are inside it), so a text span inside a link is skipped.
LINK_PREVIEW = ("a[href]",)
# Emoji rendered as images: their text is the `data-plain-text` or the `alt` (sanand0's
# `getTextWithEmojis` reads `img.emoji`'s data-plain-text, then alt).
EMOJI_IMAGE_ATTRIBUTES = ("data-plain-text", "alt")
# A deleted message keeps its row with this icon (the notes: `[data-icon="recalled"]`).
RECALLED = ('span[data-icon="recalled"]',)

# -- acks on outgoing rows (W/Messaging) ------------------------------------------------------
# Icon name -> state. msg-dblcheck is delivered, or read when its aria-label is " Read "
# (UNCONFIRMED in [W]: seen in snippets whose source is unnamed). msg-dblcheck-ack is the
# pre-2022 read icon, stale, kept last. [P] a February 2026 selectors file found with the
# code search lists msg-time / msg-check / msg-dblcheck / msg-dblcheck-ack the same way.
ACK_ICONS = (("msg-time", "pending"), ("msg-check", "sent"), ("msg-dblcheck", "delivered"),
             ("msg-dblcheck-ack", "read"))
ACK_READ_LABELS = ("Read",)

# -- identity in localStorage (keys, not locators) ----------------------------------------
# [W] JSON-quoted "<digits>:<device>@c.us"; WhatsApp treats the browser as logged in when it
# and WANoiseInfo both exist. The older keys hold the display name and phone platform.
STORAGE_WID = "last-wid-md"
STORAGE_NOISE = "WANoiseInfo"
STORAGE_PUSHNAME = "last-pushname"
STORAGE_PLATFORM = "mobile-platform"
# [W] the logged-out QR is served at /?post_logout=1.
POST_LOGOUT_QUERY = "post_logout=1"
