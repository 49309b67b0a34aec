"""Page changes pushed by the page: it says when its chat list or open chat changed.

WebDriver can only ask, so a reader that polls the page for incoming messages sees one a
polling interval late (RECEIVE_POLL_S, 1 s: issue 20 measured ~1.1 s from the phone's send to
the event, against 7 ms for the page to show it). As whatsapp-web.js does with puppeteer's
`exposeFunction`, a binding is added to the tab over Chromium's DevTools protocol
(`Runtime.addBinding`: it survives navigations), and a MutationObserver installed on every new
document (`Page.addScriptToEvaluateOnNewDocument`) calls it when something changes under the
chat list or the open chat, at most once per `GAP_MS`. The protocol is spoken on a WebSocket of
its own to the tab (chromedriver's `debuggerAddress`, the tab's target id being WebDriver's
window handle), so chromedriver's commands are never held up by it; a thread reads that
socket and calls `on_change`.

It only makes reads come sooner: the owner still polls as before, so a socket that fails, or
a page that never calls, loses nothing, it only delays.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import websocket

from . import locators as L

log = logging.getLogger(__name__)

BINDING = "__waPageChanged"
GAP_MS = 30          # changes closer together than this are told once
RECV_TIMEOUT_S = 1.0  # how often the reader thread looks whether it should stop
# [W] `#pane-side` is the chat list, `#main` the open chat (locators: CHAT_PANE, OPEN_CHAT).
AREAS = ", ".join(L.CHAT_PANE + L.OPEN_CHAT)
OBSERVER = r"""(() => {
  const notify = window[BINDING];
  if (typeof notify !== "function") return;
  const areas = AREAS;
  let timer = null;
  const inside = (record) => {
    const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    return node !== null && node.closest(areas) !== null;
  };
  new MutationObserver((records) => {
    if (timer === null && records.some(inside)) {
      timer = setTimeout(() => { timer = null; notify(""); }, GAP_MS);
    }
  }).observe(document, {childList: true, subtree: true, characterData: true});
})();""".replace("BINDING", json.dumps(BINDING)).replace("AREAS", json.dumps(AREAS)).replace("GAP_MS", str(GAP_MS))


class PageWatch:
    """One tab's pushed changes; `start` returns None when the tab cannot be watched."""

    def __init__(self, ws: websocket.WebSocket, on_change: Callable[[], None]):
        self._ws = ws
        self._on_change = on_change
        self._closed = False
        self._next_id = 0
        self._thread = threading.Thread(target=self._read, name="page-watch", daemon=True)

    @classmethod
    def start(cls, debugger_address: str, target_id: str, on_change: Callable[[], None],
              timeout: float = 5.0) -> PageWatch | None:
        """Watch the tab `target_id` of the browser whose DevTools listen on `debugger_address`
        (`host:port`): call `on_change` from a thread of its own at each change told. Call
        before the page is loaded: the observer is installed on the next document."""
        url = f"ws://{debugger_address}/devtools/page/{target_id}"
        try:
            # No Origin header: Chromium refuses WebSocket clients that send one it was not
            # told to allow (--remote-allow-origins).
            ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as exc:
            log.info("page changes are not pushed, the page is polled only: %s", exc)
            return None
        watch = cls(ws, on_change)
        try:
            # Without the Runtime and Page domains enabled on this socket, the binding reaches
            # only the document of the moment and the script runs in no later document
            # (Chromium 156, tried); puppeteer enables both as well. Their events are skipped.
            watch._call("Runtime.enable")
            watch._call("Runtime.addBinding", name=BINDING)
            watch._call("Page.enable")
            watch._call("Page.addScriptToEvaluateOnNewDocument", source=OBSERVER)
        except (OSError, websocket.WebSocketException, ValueError, RuntimeError) as exc:
            log.info("page changes are not pushed, the page is polled only: %s", exc)
            watch.close()
            return None
        ws.settimeout(RECV_TIMEOUT_S)
        watch._thread.start()
        return watch

    def close(self) -> None:
        """Stop reading (any thread; safe twice). The page keeps its observer, which then
        calls a binding nobody listens to."""
        self._closed = True
        try:
            self._ws.abort()  # wakes the reader's recv at once
            self._ws.close(timeout=0.5)
        except (OSError, websocket.WebSocketException):
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def _call(self, method: str, **params) -> dict:
        """A DevTools command and its answer (before the reader thread runs)."""
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self._ws.recv())
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _read(self) -> None:
        while not self._closed:
            try:
                message = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException, ValueError):
                break  # the browser went, or close() was called
            if BINDING not in message:  # other events of this tab: not ours
                continue
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if event.get("method") == "Runtime.bindingCalled" and event.get("params", {}).get("name") == BINDING:
                try:
                    self._on_change()
                except Exception:  # a bug in the callback must not end the watch silently
                    log.exception("page change callback failed")
        if not self._closed:
            log.info("the page watch ended (the browser went); the page is polled only")
