"""The live event stream, `GET /api/whatsapp/events` (Server-Sent Events).

Contract:

- The stream starts with `retry: 3000` and one `status` event whose data is the current
  snapshot (the fields of `/status`, plus `"initial": true`), so a page renders at once;
  then every bus event as it is published, each as

      event: <name>
      id: <seq>
      data: {"event": <name>, "seq": <seq>, "timestamp": "...", "data": {...}}

  (the same JSON as a webhook body). A bus `status` event's `data` has `status`,
  `previous`, `reason`, so `data.data.status` is the status in both kinds.
- A comment line `: keep-alive` is sent when nothing happened for `keepalive_s` seconds; it
  also makes a write that detects a vanished client, whose listener is then dropped (the
  generator's `finally` and the response's close hook both unregister it).
- At most `max_listeners` streams at once; one more gets 503 with the JSON error shape.
- A client that falls `capacity` events behind is cut off (its browser reconnects and gets
  a fresh snapshot) rather than buffering without bound.
- `close_all()` ends every stream (after what each has already buffered) and refuses new
  ones with 503: server shutdown never waits for event-stream clients.
"""
from __future__ import annotations

import collections
import json
import logging
import socket
import threading
import time
from collections.abc import Callable

from flask import Response, request

from ..api.errors import ApiError
from ..bus import Event
from ..states import Snapshot, iso, utcnow

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"
# The longest a listener waits without re-checking the closing flag: close_all() from a
# signal handler cannot always take a listener's lock to wake it (see close_all).
_POLL_S = 1.0


def frame(name: str, seq: int, body: dict) -> bytes:
    """One SSE message. json.dumps never emits a raw newline, so one `data:` line suffices."""
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"event: {name}\nid: {seq}\ndata: {data}\n\n".encode()


class _Listener:
    """One connected client: a bounded buffer that the publisher fills and its stream drains."""

    def __init__(self, capacity: int, gone: Callable[[], bool] = lambda: False):
        self.gone = gone  # the client hung up (see _hung_up)
        self.cond = threading.Condition()
        self.events: collections.deque[Event] = collections.deque()
        self.capacity = capacity
        self.ended = False
        self.overflowed = False

    def push(self, event: Event) -> None:
        with self.cond:
            if self.ended:
                return
            if len(self.events) >= self.capacity:
                self.events.clear()
                self.ended = self.overflowed = True
            else:
                self.events.append(event)
            self.cond.notify()

    def end(self, blocking: bool = True) -> None:
        if not self.cond.acquire(blocking=blocking):
            return  # the stream's own poll sees the closing flag within _POLL_S
        try:
            self.ended = True
            self.cond.notify()
        finally:
            self.cond.release()

    def take(self, timeout: float, closing: Callable[[], bool]) -> list[Event] | None:
        """Buffered events; [] when `timeout` passed with none; None when the stream must end."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.events:
                if self.ended or closing():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self.cond.wait(min(remaining, _POLL_S))
            batch = list(self.events)
            self.events.clear()
            return batch


class Streams:
    """The registry of connected listeners and the Flask response that feeds one."""

    def __init__(self, client_id: str, snapshot: Callable[[], Snapshot], *, max_listeners: int,
                 keepalive_s: float, capacity: int = 256):
        self._client_id = client_id
        self._snapshot = snapshot
        self.max_listeners = max_listeners
        self._keepalive_s = keepalive_s
        self._capacity = capacity
        self._lock = threading.Lock()
        self._listeners: set[_Listener] = set()
        self._closing = False
        self._last_seq = 0

    def count(self) -> int:
        return len(self._listeners)

    def publish(self, event: Event) -> None:
        """Bus subscriber: hand `event` to every listener's buffer; never blocks on a client."""
        with self._lock:
            self._last_seq = max(self._last_seq, event.seq)
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener.push(event)

    def close_all(self, blocking: bool = True) -> None:
        """End every stream and refuse new ones.

        With `blocking=False` it takes no lock that could be held already, so it may be
        called from a signal handler: each stream then notices within `_POLL_S`.
        """
        self._closing = True
        for listener in tuple(self._listeners):  # a C-level copy: atomic under the GIL
            listener.end(blocking=blocking)

    def response(self) -> Response:
        """The streaming response for one client, or ApiError(503) when none may be added."""
        listener = self._add(_hung_up(request.environ.get("gunicorn.socket")))
        try:
            # Registered before the snapshot is read: an event published in between is both in
            # the snapshot and in the buffer (harmless), never in neither.
            first = b"retry: 3000\n" + self._initial()
        except BaseException:
            self._remove(listener)
            raise
        response = Response(self._iterate(listener, first), content_type="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # nginx and friends: do not buffer
        # An iterator that is never started (HEAD, a client gone before the first byte) never
        # runs its `finally`; the server always calls the response's close hooks.
        response.call_on_close(lambda: self._remove(listener))
        return response

    def _add(self, gone: Callable[[], bool]) -> _Listener:
        with self._lock:
            if self._closing:
                raise ApiError(503, "The server is shutting down; reconnect when it is back.",
                               headers={"Retry-After": "5"})
            # Streams whose clients hung up count no more (a page reloaded a few times would
            # otherwise be refused until their next keep-alive write); their threads end
            # within _POLL_S.
            for left in [each for each in self._listeners if each.gone()]:
                self._listeners.discard(left)
                left.end(blocking=False)
            if len(self._listeners) >= self.max_listeners:
                raise ApiError(503, f"Too many event-stream clients (limit {self.max_listeners}); "
                               "try again later or poll /api/whatsapp/status.",
                               headers={"Retry-After": "10"})
            listener = _Listener(self._capacity, gone)
            self._listeners.add(listener)
            return listener

    def _remove(self, listener: _Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def _initial(self) -> bytes:
        with self._lock:
            seq = self._last_seq
        data = {"clientId": self._client_id, **self._snapshot().to_json(), "initial": True}
        return frame("status", seq, {"event": "status", "seq": seq, "timestamp": iso(utcnow()),
                                     "data": data})

    def _iterate(self, listener: _Listener, first: bytes):
        try:
            yield first
            while True:
                batch = listener.take(self._keepalive_s, lambda: self._closing or listener.gone())
                if batch is None:
                    if listener.overflowed:
                        log.info("event-stream client fell %d events behind; cut off", self._capacity)
                    return
                yield b"".join(frame(e.name, e.seq, e.to_json()) for e in batch) if batch else KEEPALIVE
        finally:
            # Runs on a normal end and on GeneratorExit when a write to a closed socket failed.
            self._remove(listener)


def _hung_up(sock: socket.socket | None) -> Callable[[], bool]:
    """A check that the client closed its end: its socket reads EOF without blocking. An SSE
    client sends nothing after its request, so a byte waiting means it is still there."""
    if sock is None:  # not under gunicorn (Flask's test client): only a failed write tells
        return lambda: False

    def check() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset, or closed already
            return True
    return check
