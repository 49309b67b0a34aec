"""A client of `GET /api/whatsapp/events` that notes when each event arrives, and a fast
`POST /messages` for the figures that start at an accept.

    with EventStream(server) as events:
        t0, _, message = post_message(server, "15551000001", "hello")
        event = events.wait(lambda e: e["event"] == "message_sent" and e["data"]["id"] == message["id"], 30)
        seconds = event["t"] - t0

The stream is read by a daemon thread that blocks on the socket, so it costs nothing while
idle; `t` is `time.time()` when the event's last line arrived.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from .common import KEY_HEADER, ServerProcess

Event = dict[str, Any]


class EventStream:
    def __init__(self, server: ServerProcess):
        self.server = server
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EventStream:
        self._conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=3600)
        self._conn.request("GET", "/api/whatsapp/events", headers={**KEY_HEADER, "Accept": "text/event-stream"})
        response = self._conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET /events answered {response.status}: {response.read()[:500]!r}")
        self._thread = threading.Thread(target=self._read, args=(response,), daemon=True, name="bench-events")
        self._thread.start()
        self.wait(lambda e: e["event"] == "status", 10)  # the snapshot every stream starts with
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()  # the reader's blocked read then ends

    def _read(self, response: http.client.HTTPResponse) -> None:
        name, data = None, ""
        try:
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and name is not None:
                    event = {"event": name, "t": time.time(), **_body(data)}
                    with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
                    name, data = None, ""
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by __exit__ (http.client then has no file: AttributeError), or the server went away

    def wait(self, predicate: Callable[[Event], bool], timeout: float, since: int = 0) -> Event:
        """The first event (from index `since`) for which `predicate` holds; RuntimeError at
        the deadline, naming what arrived."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                left = end - time.monotonic()
                if left <= 0:
                    names = [e["event"] for e in self.events[since:]][-20:]
                    raise RuntimeError(f"no matching event within {timeout:.0f} s; arrived: {names}")
                self._changed.wait(left)

    def mark(self) -> int:
        """An index for `wait(since=...)`: only events from now on."""
        with self._changed:
            return len(self.events)


def _body(data: str) -> dict:
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        return {"raw": data}
    return {"data": body.get("data", {}), "seq": body.get("seq")}


def is_event(name: str, message_id: str) -> Callable[[Event], bool]:
    return lambda e: e["event"] == name and (e.get("data") or {}).get("id") == message_id


def post_message(server: ServerProcess, to: str, text: str, timeout: float = 30) -> tuple[float, float, dict]:
    """(time.time() just before the request, and when the answer was read, the accepted
    message); raises unless 202."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    body = json.dumps({"to": to, "text": text})
    try:
        t0 = time.time()
        conn.request("POST", "/api/whatsapp/messages", body=body,
                     headers={**KEY_HEADER, "Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        t1 = time.time()
    finally:
        conn.close()
    if response.status != 202:
        raise RuntimeError(f"POST /messages answered {response.status}: {answer[:500]!r}")
    return t0, t1, json.loads(answer)
