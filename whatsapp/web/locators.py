"""Every WhatsApp Web selector the page code uses, grouped by screen.

WhatsApp Web renders no `data-testid` and its class names change with every build, so these
key only on ids, `data-ref`, `data-icon`, `role`, `aria-*` and visible text. Sources:
[W] the team's whatsapp-web.md notes (WhatsApp Web's own de-minified modules, checked
against whatsapp-web.js, wppconnect, open-wa and WebWhatsapp-Wrapper, 2026), and
[P] public Puppeteer scripts driving the real page, found with the team's code search:
E-RAPHA/zapzap `main.js` reads the QR from the `data-ref` attribute; ajeeq/
whatsapp-web-scraper `index.js` waits for `#pane-side` once linked.
"""

# -- QR screen ---------------------------------------------------------------------------
# [W][P] the QR container; its attribute value is the whole payload.
QR_CONTAINER = "div[data-ref]"
QR_ATTRIBUTE = "data-ref"
# [W] the canvas inside it that draws the code.
QR_CANVAS = 'canvas[aria-label="Scan this QR code to link a device!"]'
# [W] after a handful of codes: a reload button inside the container, with this icon.
QR_RELOAD_ICON = 'span[data-icon="refresh-large"]'
QR_RELOAD_BUTTON = "div[data-ref] button"
QR_RELOAD_TEXT = "Click to reload QR code"
# [W] the same button offline.
QR_OFFLINE_TEXT = "No internet connection"

# -- loading screen ----------------------------------------------------------------------
# [W] a progress bar with "Loading your chats [N%]" (also "Downloading messages", "Connecting").
LOADING_PROGRESS = 'progress[max="100"]'
LOADING_TEXTS = ("Loading your chats", "Downloading messages", "Connecting")

# -- chat list (ready) -------------------------------------------------------------------
# [W][P] the side pane holding the chat list; the list's aria label is in [W].
CHAT_PANE = "#pane-side"
CHAT_LIST = 'div[aria-label="Chat list"]'

# -- conflict dialog ---------------------------------------------------------------------
# [W] a modal dialog with this text and the buttons "Use here" / "Log out".
DIALOG = 'div[role="dialog"]'
MODAL_POPUP = "div[data-animate-modal-popup]"
CONFLICT_TEXTS = ("open in another window", "open on another computer")
USE_HERE_TEXT = "Use here"

# -- logging out from the page -------------------------------------------------------------
# [W] every icon is span[data-icon=...] and the loading screen has a "Log out" button. The
# menu icon's name is UNCONFIRMED in [W]: it comes from a public Puppeteer helper
# (`forceLogoutFromWeb`, found with the team's code search) that clicks
# `span[data-icon="menu"]` and then the "Log out" entry. If it is missing, `disconnect`
# still deletes the login and says the phone must remove the device itself.
MENU_ICON = 'span[data-icon="menu"]'
LOG_OUT_TEXT = "Log out"

# -- unsupported browser -----------------------------------------------------------------
# [W] shown for a headless user agent.
UNSUPPORTED_TEXT = "WhatsApp works with Google Chrome"
UNSUPPORTED_LINK = 'a[href^="https://support.google.com/chrome/answer/95414"]'

# -- identity in localStorage --------------------------------------------------------------
# [W] JSON-quoted "<digits>:<device>@c.us"; WhatsApp treats the browser as logged in when it
# and WANoiseInfo both exist. The older keys hold the display name and phone platform.
STORAGE_WID = "last-wid-md"
STORAGE_NOISE = "WANoiseInfo"
STORAGE_PUSHNAME = "last-pushname"
STORAGE_PLATFORM = "mobile-platform"
# [W] the logged-out QR is served at /?post_logout=1.
POST_LOGOUT_QUERY = "post_logout=1"
