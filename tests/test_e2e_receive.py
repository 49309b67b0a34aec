"""Receiving end to end: messages sent to the account reach the API, webhooks and /events once.

The simulator's phone writes to the linked account (`/_phone/send`); the server must list
each message once with the right `from` and `chat`, also those that came while it was
stopped or its browser was down (they are still unread when the page comes back), and
never again after a restart. Both web versions.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import urllib.request

import pytest
from harness import ServerProcess, browser_tree, linked_server, wait_for
from webhooks import Receiver

FAST = {"WHATSAPP_SEND_INTERVAL_S": "0", "WHATSAPP_MONITOR_INTERVAL_S": "1"}


@pytest.fixture(params=[2026, 2025])
def web_sim(request):
    from simulator.testing import start

    with start(qr_ttl=20, qr_first_ttl=60, sync_seconds=0.3, web_version=request.param) as running:
        yield running


def incoming(server: ServerProcess) -> list[dict]:
    found, after = [], None
    while True:
        query = "/api/whatsapp/messages?direction=in&limit=500" + (f"&after={after}" if after else "")
        code, body = server.get(query)
        assert code == 200, body
        found += body["messages"]
        after = body["next"]
        if after is None:
            return found


def wait_incoming(server, count: int, timeout: float = 90) -> list[dict]:
    return wait_for(lambda: (got := incoming(server)) and len(got) >= count and got, timeout,
                    message=f"{count} incoming messages")


def ready(servers, sim, env=None, data_dir=None) -> ServerProcess:
    """Linked, and the login on disk: a restart or a kill now meets a saved login."""
    return linked_server(servers, sim, env={**FAST, **(env or {})}, data_dir=data_dir)[0]


def test_a_number_and_a_named_contact_are_listed_once_with_from_and_chat(servers, web_sim):
    hook = Receiver()
    try:
        server = ready(servers, web_sim, env={"WHATSAPP_WEBHOOK_URL": hook.url})
        web_sim.send("15550006666", "hello from a number 👋")
        web_sim.send("15550007777", "hello from Priya\nsecond line", name="Priya Sharma")
        got = wait_incoming(server, 2)
        by_text = {m["text"]: m for m in got}
        plain = by_text["hello from a number 👋"]
        assert plain["from"] == "15550006666" and plain["chat"] == "+1 555-000-6666", plain
        named = by_text["hello from Priya\nsecond line"]
        assert named["from"] in ("15550007777", None) and named["chat"] == "Priya Sharma", named
        assert all(m["waId"] and m["kind"] == "text" for m in got)
        hooks = hook.wait(lambda events: sum(e["event"] == "message_received" for e in events) >= 2)
        assert sorted(e["data"]["text"] for e in hooks if e["event"] == "message_received") == sorted(by_text)
        # Opening the chats marked them read on the sender's phone, as for a person.
        wait_for(lambda: all(m["read"] for m in web_sim.inbox()), 30, message="read on the phone")
        assert len(incoming(server)) == 2
    finally:
        hook.close()


def test_messages_that_came_while_stopped_are_published_once_after_start(servers, sim):
    server = ready(servers, sim)
    server.stop()
    senders = ["15550001001", "15550001002", "15550001003"]
    for i in range(10):
        sim.send(senders[i % 3], f"while stopped {i}")
    again = servers(env=server.extra_env, data_dir=server.data_dir)
    got = wait_incoming(again, 10)
    assert sorted(m["text"] for m in got) == sorted(f"while stopped {i}" for i in range(10))
    # Two restarts in a row publish nothing again.
    for _ in range(2):
        again.stop()
        again = servers(env=server.extra_env, data_dir=server.data_dir)
        again.wait_status(lambda s: s["status"] == "ready", 60, "ready after a restart")
        sim.send("15550001009", "a marker after the restart")
        wait_for(lambda: any(m["text"] == "a marker after the restart" for m in incoming(again)), 60,
                 message="the marker")
        texts = [m["text"] for m in incoming(again)]
        assert len(texts) == len(set(texts)) + texts.count("a marker after the restart") - 1


def test_messages_that_came_while_the_browser_was_down_are_published_once(servers, sim):
    server = ready(servers, sim)
    tree = browser_tree(server)
    os.kill(tree["main"], signal.SIGKILL)
    for i in range(5):
        sim.send("15550001004", f"while the browser was down {i}")
    got = wait_incoming(server, 5)
    assert sorted(m["text"] for m in got) == sorted(f"while the browser was down {i}" for i in range(5))


def test_a_burst_in_and_out_neither_waits_behind_the_other(servers, sim):
    server = ready(servers, sim)
    events = EventStream(server)
    try:
        for i in range(50):
            code, body = server.post("/api/whatsapp/messages", {"to": f"1555000{2100 + i % 5}", "text": f"out {i}"})
            assert code == 202, body
        for i in range(50):
            sim.send(f"1555000{2200 + i % 5}", f"in {i}")
        got = wait_incoming(server, 50, timeout=300)
        assert sorted(m["text"] for m in got) == sorted(f"in {i}" for i in range(50))
        def all_sent():
            listed = server.get("/api/whatsapp/messages?direction=out&limit=500")[1]["messages"]
            return len(listed) == 50 and all(m["status"] in ("sent", "delivered", "read") for m in listed)
        wait_for(all_sent, 300, message="the whole outbox sent")
        sent = [m["text"] for m in sim.messages()]
        assert sorted(sent) == sorted(f"out {i}" for i in range(50)) and len(sent) == 50
        order = events.names()
        first_in = next(i for i, name in enumerate(order) if name == "message_received")
        first_out = next(i for i, name in enumerate(order) if name == "message_sent")
        last_in = max(i for i, name in enumerate(order) if name == "message_received")
        last_out = max(i for i, name in enumerate(order) if name == "message_sent")
        assert first_in < last_out and first_out < last_in, "the two sides were interleaved"
        assert order.count("message_received") == 50, "each published once on /events"
    finally:
        events.close()


class EventStream:
    """The server's /events (Server-Sent Events) read from a thread: the names in order."""

    def __init__(self, server: ServerProcess):
        request = urllib.request.Request(server.url + "/api/whatsapp/events",
                                         headers={"X-Api-Key": server.api_key() or ""})
        self._response = urllib.request.urlopen(request, timeout=600)
        self._names: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._response:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    with self._lock:
                        self._names.append(json.loads(line[5:])["event"])
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return  # the stream was closed under the reader (close()), or the server went

    def names(self) -> list[str]:
        with self._lock:
            return list(self._names)

    def close(self) -> None:
        self._response.close()
