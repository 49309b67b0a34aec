"""A stand-in for web.whatsapp.com and the phone that links it, for offline tests in Chromium.

Run: `python -m simulator --port 3002` (see `__main__.py` for options; `--web-version
2025|2026` picks the messaging markup). In tests: `simulator.testing.start()` (see its
docstring). Modules: `options`, `codes` (payloads, QR matrices, secrets), `state` (devices,
QR rounds, faults), `chats` (conversations, acks, reads: the server's), `seed` (the demo
chats), `web` (the page and its endpoints), `webchat` (the page's messaging endpoints),
`phone` (the `/_phone/*` JSON API and `/phone`), `server` (threaded werkzeug server,
outage handling). The page is ES modules in `static/`: `wa.js` (screens, login, live
connection), `chat.js` (chat list, open chat, sending, updates), `compose.js` (the compose
box), `outbox.js` (messages not yet sent, in IndexedDB), `markup.js` (what differs per web
version), `dom.js`.

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

Redesign (a test control, `POST /_phone/redesign {"on": true}` / `Sim.redesign(on)`): as if
WhatsApp shipped a build whose markup has none of the markers above. `/` then serves an app
shell (`static/redesign.js`: `#wa-shell[role=application]`, a `nav` rail of buttons with
`aria-label`s and `wds-ic-*` data-icons, `#wa-threads` with a `listbox` of `option` rows
whose names and previews are plain text, `#wa-stage[role=main]`) instead of any screen, and
an open page switches to it through its live connection; browser storage is left as it is.
`{"on": false}` (or `/_phone/reset`) goes back: open pages reload into the old layout and
carry on with their login. Nothing in the product may key on the shell's markers.

Messaging (whatsapp-web.md, "Messaging"; `static/markup.js` holds what differs):

| | 2026 (default) | 2025 |
|---|---|---|
| row `data-id` | bare id `3EB0` + 18 hex (outgoing, made by the page when typed), `3A` + 18 (incoming) | `true_<digits>@c.us_<id>` / `false_<digits>@c.us_<id>` |
| send button | `button[aria-label="Send"]` > `span[data-icon="wds-ic-send-filled"]` | `button` (no aria-label) > `span[data-icon="send"]` |
| empty box | `button[aria-label="Voice message"]` > `span[data-icon="wds-ic-mic-filled"]` | `span[data-icon="ptt"]` |
| text | `span[data-testid="selectable-text"]`, classes: hashes + `copyable-text` | `span.selectable-text.copyable-text` |
| chat-list rows | `[role="listitem"]` (list `role="list"`) | `[role="row"]` (list `role="grid"`) |
| `data-pre-plain-text` | `[12:19, 10/05/2026] Name: ` | `[8:05 pm, 14/12/2025] Name: ` |

- Chat list (`div[aria-label="Chat list"]`): one row per conversation, most recent first,
  `span[title="<chat title>"]`, the last message (`status-*` tick icons on outgoing ones),
  and for unread incoming messages `span[aria-label="1 unread message"]` / `"N unread
  messages"`. Clicking a row opens the chat in `#main` and marks its incoming messages
  read (the phone side sees it in `/_phone/inbox`). A chat's title is the contact name
  the sender gave (or the demo contact's), else the number: `+1 555-000-2222` (1 + 10
  digits), `+91 77378 87058` (91 + 10), else `+<digits>`.
- `/send?phone=<digits>&text=<text>` (`&type=phone_number&app_absent=1` ignored): once the
  chat list is loaded, that chat opens in `#main` with the text in the compose box and the
  address becomes `/`. A number marked not on WhatsApp (`/_phone/unregistered`), or one
  that is not 6 to 15 digits: `div[role="dialog"]` > `div[data-animate-modal-popup]`,
  "Phone number shared via url is invalid.", an "OK" button back to the chat list.
- Open chat: `#main` > `header` (the title), rows `#main [role="row"]`: the encryption
  notice, date separators ("TODAY", "YESTERDAY", a weekday, or dd/mm/yyyy), "N UNREAD
  MESSAGES" when opened with unread ones, and message rows: `div[data-id]` > `div.message-in`
  or `div.message-out` > bubble > `div.copyable-text[data-pre-plain-text="[time, date]
  Sender: "]` > the text span; the shown time is a sibling span after it, and outgoing rows
  then have `span[data-icon="msg-time"]` (aria-label " Pending "), `msg-check` (" Sent "),
  `msg-dblcheck` (" Delivered ", " Read "). Sender: the pushname on outgoing rows, the chat
  title on incoming ones. A photo (`/_phone/send` kind "image") has `data-id` and
  `message-in` but no `data-pre-plain-text` and no text span, only `span[data-icon=
  "media-image"]`. Text is text (pre-wrap: `innerText` keeps newlines); URLs are `<a>`s.
- Compose: `footer div[contenteditable="true"][role="textbox"][data-tab="10"]
  [aria-placeholder="Type a message"]` (the search input has `data-tab="3"`).
  `execCommand('insertText')` and send_keys work; Shift+Enter is a new line, Enter sends,
  and so does the send button, which exists only while the box holds non-blank text. The
  text is sent exactly as the box shows it (not trimmed); the box is emptied.
- Sending: the row appears at once with the clock, the message is written to IndexedDB
  `model-storage` (store `message`) and POSTed; on success `msg-check` and it leaves the
  store. Unreachable (outage): it stays on the clock and in the store, and goes out when
  the connection is back, also after a reload or a browser restart on the same profile
  (the server dedupes on the id, so a retry is never a second message). A new link or a
  logout deletes the store.
- Live: acks change the icons of shown rows; an incoming message moves its chat to the
  top with a badge, or, when its chat is open in `#main`, appears there at once and is
  marked read (no badge).
- Conversations are the server's: they survive reloads, browser restarts and
  `/_phone/reset`; `/_phone/reset {"messages": true}` goes back to the demo chats.

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
