"""Page changes pushed by the page: it says when its chat list or open chat changed.

WebDriver can only ask, so a reader that polls the page for incoming messages sees one a
polling interval late (RECEIVE_POLL_S, 1 s: issue 20 measured ~1.1 s from the phone's send to
the event, against 7 ms for the page to show it). As whatsapp-web.js does with puppeteer's
`exposeFunction`, a binding is added to the tab over Chromium's DevTools protocol
(`Runtime.addBinding`: it survives navigations), and a MutationObserver installed on every new
document (`Page.addScriptToEvaluateOnNewDocument`) calls it when something changes under the
chat list or the open chat, at most once per `GAP_MS`. The protocol is spoken on a WebSocket of
its own to the tab (chromedriver's `debuggerAddress`; the tab from the DevTools target list),
so chromedriver's commands are never held up by it; a thread reads that socket and calls
`on_change`. Finding the tab, connecting and the set-up run on that thread too (~50-80 ms of
round trips), so the launch does not wait for them; the observer is then also installed in
the document of the moment.

It only makes reads come sooner: the owner still polls as before, so a socket that fails, or
a page that never calls, loses nothing, it only delays.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.request
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
  // Installed for every new document, and once in the document of the moment: never twice.
  if (typeof notify !== "function" || notify.watching) return;
  Object.defineProperty(notify, "watching", {value: true});
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
    """One tab's pushed changes, from `start` until `close`."""

    def __init__(self, debugger_address: str, on_change: Callable[[], None], timeout: float):
        self._address = debugger_address
        self._on_change = on_change
        self._timeout = timeout
        self._ws: websocket.WebSocket | None = None
        self._lock = threading.Lock()  # between close() and the thread's connecting
        self._closed = False
        self._next_id = 0
        self._thread = threading.Thread(target=self._run, name="page-watch", daemon=True)

    @classmethod
    def start(cls, debugger_address: str, on_change: Callable[[], None], timeout: float = 5.0) -> PageWatch:
        """Watch the one tab of the browser whose DevTools listen on `debugger_address`
        (`host:port`; a fresh launch has one), calling `on_change` from a thread of its own at
        each change told. Returns at once; a tab that cannot be watched is logged once and
        polled only."""
        watch = cls(debugger_address, on_change, timeout)
        watch._thread.start()
        return watch

    def close(self) -> None:
        """Stop (any thread; safe twice). The page keeps its observer, which then calls a
        binding nobody listens to."""
        with self._lock:
            self._closed = True
            ws = self._ws
        if ws is not None:
            try:
                ws.abort()  # wakes the reader's recv at once
                ws.close(timeout=0.5)
            except (OSError, websocket.WebSocketException):
                pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def _tab_url(self) -> str:
        with urllib.request.urlopen(f"http://{self._address}/json/list", timeout=self._timeout) as answer:
            tabs = [t for t in json.loads(answer.read()) if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
        if len(tabs) != 1:
            raise ValueError(f"{len(tabs)} tabs instead of one")
        return tabs[0]["webSocketDebuggerUrl"]

    def _run(self) -> None:
        try:
            # No Origin header: Chromium refuses WebSocket clients that send one it was not
            # told to allow (--remote-allow-origins).
            ws = websocket.create_connection(self._tab_url(), timeout=self._timeout, suppress_origin=True)
        except (OSError, ValueError, websocket.WebSocketException) as exc:
            log.info("page changes are not pushed, the page is polled only: %s", exc)
            return
        with self._lock:
            if self._closed:
                ws.close()
                return
            self._ws = ws
        try:
            # Without the Runtime and Page domains enabled on this socket, the binding reaches
            # only the document of the moment and the script runs in no later document
            # (Chromium 156, tried); puppeteer enables both as well. Their events are skipped.
            self._call("Runtime.enable")
            self._call("Runtime.addBinding", name=BINDING)
            self._call("Page.enable")
            self._call("Page.addScriptToEvaluateOnNewDocument", source=OBSERVER)
            self._call("Runtime.evaluate", expression=OBSERVER)
        except (OSError, websocket.WebSocketException, ValueError, RuntimeError) as exc:
            if not self._closed:
                log.info("page changes are not pushed, the page is polled only: %s", exc)
            return
        ws.settimeout(RECV_TIMEOUT_S)
        self._read(ws)

    def _call(self, method: str, **params) -> dict:
        """A DevTools command and its answer (the thread's set-up, before it reads events)."""
        assert self._ws is not None
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self._ws.recv())
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _read(self, ws: websocket.WebSocket) -> None:
        while not self._closed:
            try:
                message = ws.recv()
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
