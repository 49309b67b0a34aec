"""A stand-in for web.whatsapp.com and the phone that links it, for offline tests in Chromium.

Run: `python -m simulator --port 3002` (see `__main__.py` for options). In tests:
`simulator.testing.start()` (see its docstring). Modules: `options`, `codes` (payloads,
QR matrices, secrets), `state` (devices, QR rounds, faults), `web` (the page's endpoints),
`phone` (the `/_phone/*` JSON API and `/phone`), `server` (threaded werkzeug server,
outage handling), `static/wa.js` (the page).

Screens of `/` and their markers (as in docs/whatsapp-web.md; nothing else is meant for
detection):

- QR: title "Scan to log in"; `div[data-ref="<payload>"]` holding
  `canvas[aria-label="Scan this QR code to link a device!"][role="img"]` (228x228, black on
  white with a quiet zone; it decodes to the payload). The code rotates by itself.
- QR expired (after `qr_max` codes): the canvas inside `div[data-ref]` is replaced by a
  `button` "Click to reload QR code" with `span[data-icon="refresh-large"]`; `data-ref`
  keeps the last payload, so check for the button before reading it. Clicking starts a
  new round. Offline the same button reads "No internet connection".
- Loading: `progress[max="100"]` with "Connecting…" (login check, also while it is
  retried) then "Loading your chats [N%]" for `sync_seconds`; "End-to-end encrypted"; a
  "Log out" button.
- Chat list: `#pane-side`, `div[aria-label="Chat list"]`, an input with placeholder
  "Search or start a new chat"; the menu `span[data-icon="menu"]`.
- Conflict: `div[role="dialog"]` > `div[data-animate-modal-popup]` with "WhatsApp is open
  in another window", buttons "Use here" (back to the chat list) and "Log out".
- Offline on the loading screen or chat list: a plain notice "Computer not connected"
  (the real markers are unconfirmed, so it has none).
- Unsupported browser (User-Agent contains HeadlessChrome): "WhatsApp works with Google
  Chrome 85+" and a link to https://support.google.com/chrome/answer/95414.

Logging out from the page (what a product's "disconnect" does): click
`span[data-icon="menu"]`, then the menu item "Log out", then the "Log out" button of the
confirm popup (`div[role="dialog"]` > `div[data-animate-modal-popup]`, text "Log out?").
The device leaves the phone's list, browser storage is cleared and the page goes to
`/?post_logout=1` with a fresh QR. The loading screen's and the conflict dialog's "Log
out" buttons do the same at once.

The login lives in the browser: `localStorage['last-wid-md']` (`"<phone>:<n>@c.us"`,
JSON-quoted), `WANoiseInfo`, `last-pushname`, `mobile-platform`, and IndexedDB database
`wawc` (store `user`, key `device`: `{device, secret}`). On load a page with a login asks
the server: linked and key matches -> loading then chat list; device unlinked -> storage
cleared, `/?post_logout=1`; key material missing or wrong -> QR, storage untouched;
temporary error (flaky) -> "Connecting…", retry after 1 s.

Outage: everything but `/phone` and `/_phone/*` gets no answer (connection closed with no
response): `driver.get()` of `/` fails with net::ERR_EMPTY_RESPONSE, open pages lose
their live connection, show the offline state, and retry every second; linked pages keep
their login.
"""
