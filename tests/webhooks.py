"""A real webhook receiver for tests: a threaded HTTP server on loopback that records every POST.

    hook = Receiver()            # answers 200; Receiver(500), Receiver(HANG), Receiver(lambda n: ...)
    server = servers(env={"WHATSAPP_WEBHOOK_URL": hook.url})
    events = hook.wait(lambda events: any(e["event"] == "ready" for e in events))
    hook.close()

`answer` is a status, HANG (hold the request until `release` is set, then answer 200), or a
function of the request's number (1, 2, ...) giving one of those. Every wait is bounded.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"
HOLD_S = 300.0  # a held request is answered at the latest by then (or when released)


class Receiver:
    def __init__(self, answer=200):
        self.answer = answer
        self.requests: list[tuple[dict, bytes]] = []  # (headers, body) in arrival order
        self.answered = 0
        self.cond = threading.Condition()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.cond:
                    receiver.requests.append((dict(self.headers), body))
                    number = len(receiver.requests)
                    receiver.cond.notify_all()
                answer = receiver.answer(number) if callable(receiver.answer) else receiver.answer
                if answer == HANG:
                    receiver.release.wait(HOLD_S)
                    answer = 200
                try:
                    self.send_response(answer)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up (its timeout) and closed the socket
                    return
                with receiver.cond:
                    receiver.answered += 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # senders that hung up early
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def snapshot(self) -> list[tuple[dict, bytes]]:
        with self.cond:
            return list(self.requests)

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.snapshot()]

    def wait_count(self, n: int, timeout: float = 10) -> list[tuple[dict, bytes]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"receiver got {len(self.requests)} request(s), expected {n}")
            return list(self.requests)

    def wait(self, predicate, timeout: float = 60, message: str = "webhooks") -> list[dict]:
        """Wait until `predicate(events)` is true; returns the events."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                events = [json.loads(body) for _, body in self.requests]
                if predicate(events):
                    return events
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}; "
                                         f"received: {[e.get('event') for e in events]}")
                self.cond.wait(remaining)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
