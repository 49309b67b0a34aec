"""Notifier: webhooks to real HTTP receivers, the SSE stream over a real socket, /metrics.

Receivers are `ThreadingHTTPServer`s on 127.0.0.1:0 in this process; the Flask app is a
minimal one (errors + the notifier's routes) served by werkzeug in a thread, and the event
stream is read by `http.client` over a socket. Waits are on conditions with deadlines;
every notifier, receiver and server is stopped at teardown.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import socket
import threading
import time

import pytest
from flask import Flask
from harness import wait_for
from prometheus_client.parser import text_string_to_metric_families
from webhooks import HANG, Receiver
from werkzeug.serving import make_server

from whatsapp.api import errors
from whatsapp.bus import Bus, Event
from whatsapp.config import Config
from whatsapp.notify import Notifier, stream
from whatsapp.notify.webhooks import verify
from whatsapp.states import Snapshot, Status

SECRET = "s3cret-hook"


# -- a real webhook receiver -------------------------------------------------------------

@pytest.fixture
def receiver():
    """`receiver(answer)` starts a Receiver; `receiver.made` lists them; all closed at teardown."""
    def make(answer=200) -> Receiver:
        make.made.append(Receiver(answer))
        return make.made[-1]

    make.made = []
    yield make
    for r in make.made:
        r.close()


class Fake:
    """The session's side: a bus and a snapshot that the test replaces."""

    def __init__(self, status: Status = Status.QR):
        self.bus = Bus("test-client")
        self.snap = Snapshot(status=status)

    def snapshot(self) -> Snapshot:
        return self.snap


@pytest.fixture
def notifiers(receiver):
    """`notifiers(fake, **config)` builds a Notifier; all are stopped at teardown (before the
    receivers, which depend on nothing, so that no delivery meets a closed receiver)."""
    made: list[Notifier] = []

    def make(fake: Fake, *, queue_size=1000, retry_base_s=0.01, keepalive_s=15.0, **settings) -> Notifier:
        settings.setdefault("webhook_timeout_s", 5.0)
        notifier = Notifier(Config(**settings), fake.bus, fake.snapshot, queue_size=queue_size,
                            retry_base_s=retry_base_s, keepalive_s=keepalive_s)
        made.append(notifier)
        return notifier

    yield make
    for r in receiver.made:  # let held requests answer so that senders can finish
        r.release.set()
    for notifier in made:
        notifier.stop(timeout=2)
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("webhook-")], 10,
             interval=0.01, message="webhook sender threads to end")


def hooks(notifier: Notifier) -> dict:
    return notifier.status()["webhooks"]


def wait_hooks(notifier: Notifier, key: str, value: int, timeout: float = 10) -> dict:
    return wait_for(lambda: hooks(notifier)[key] == value and hooks(notifier), timeout,
                    interval=0.01, message=f"webhooks {key} == {value}")


# -- lifecycle ---------------------------------------------------------------------------

def test_construction_and_register_start_nothing_and_no_urls_means_no_thread(notifiers):
    before = set(threading.enumerate())
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=("http://127.0.0.1:9/x",))
    notifier.register(Flask(__name__))
    fake.bus.publish("qr", qr="A")  # before start(): counted and streamed, never queued
    assert set(threading.enumerate()) == before
    assert hooks(notifier)["queued"] == 0

    idle = notifiers(Fake())
    idle.start()
    idle.start()  # idempotent
    assert set(threading.enumerate()) == before
    assert idle.stop(timeout=1) and idle.stop(timeout=1)
    with pytest.raises(RuntimeError):
        idle.start()


# -- webhooks ----------------------------------------------------------------------------

def test_events_arrive_signed_and_in_order(notifiers, receiver):
    r = receiver()
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=(r.url,), webhook_secret=SECRET)
    notifier.start()
    published = [fake.bus.publish("status", status="starting", previous="stopped", reason=None),
                 fake.bus.publish("qr", qr="QR-1"),
                 fake.bus.publish("qr", qr="QR-2"),
                 fake.bus.publish("ready", restored=False, phone="15550001111", pushname="P")]
    received = r.wait_count(len(published))
    assert [json.loads(body) for _, body in received] == [
        {**event.to_json(), "instance": notifier.instance} for event in published]
    for (headers, body), event in zip(received, published):
        timestamp = headers["X-Whatsapp-Timestamp"]
        expected = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Whatsapp-Signature"], expected)
        assert abs(int(timestamp) - time.time()) < 300
        assert verify(SECRET, timestamp, body, headers["X-Whatsapp-Signature"])
        assert not verify(SECRET, timestamp, body + b" ", headers["X-Whatsapp-Signature"])
        assert headers["X-Whatsapp-Event"] == event.name
        assert headers["X-Whatsapp-Delivery"] == f"{notifier.instance}-{event.seq}"
        assert headers["Content-Type"] == "application/json"
    assert wait_hooks(notifier, "delivered", 4)["failed"] == 0


def test_without_a_secret_webhooks_are_unsigned(notifiers, receiver):
    r = receiver()
    fake = Fake()
    notifiers(fake, webhook_urls=(r.url,)).start()
    fake.bus.publish("logged_out", phone="1")
    (headers, _), = r.wait_count(1)
    assert "X-Whatsapp-Signature" not in headers and headers["X-Whatsapp-Timestamp"]


def test_publish_never_waits_for_a_hung_receiver_and_stop_is_bounded(notifiers, receiver):
    r = receiver(HANG)
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=(r.url,), webhook_timeout_s=30.0, webhook_retries=5)
    notifier.start()
    for n in range(5):
        fake.bus.publish("qr", qr=f"QR-{n}")
    r.wait_count(1)
    # Every publish returned while the receiver still holds the first request unanswered.
    assert r.answered == 0 and hooks(notifier)["queued"] == 5
    started = time.monotonic()
    assert notifier.stop(timeout=0.5) is False  # the sender is still blocked on the receiver
    assert time.monotonic() - started < 5  # far from the receiver's 30 s timeout
    assert r.answered == 0


def test_a_receiver_that_never_answers_gets_its_retries(notifiers, receiver):
    r = receiver(HANG)
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=(r.url,), webhook_timeout_s=0.2, webhook_retries=2)
    notifier.start()
    event = fake.bus.publish("failed", reason="network", attempts=5)
    stats = wait_hooks(notifier, "failed", 1)
    attempts = r.wait_count(3)
    assert len(attempts) == 3 and r.answered == 0
    assert [h["X-Whatsapp-Attempt"] for h, _ in attempts] == ["1", "2", "3"]
    assert {h["X-Whatsapp-Delivery"] for h, _ in attempts} == {f"{notifier.instance}-{event.seq}"}
    assert "timed out" in stats["lastError"].lower() and stats["lastErrorAt"]


@pytest.mark.parametrize("status, attempts", [
    (500, 4), (503, 4), (408, 4), (429, 4), (400, 1), (401, 1), (404, 1), (410, 1), (302, 1),
])
def test_retry_on_5xx_408_429_only(notifiers, receiver, status, attempts):
    r = receiver(status)
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=(r.url,), webhook_retries=3)
    notifier.start()
    fake.bus.publish("qr", qr="A")
    stats = wait_hooks(notifier, "failed", 1)
    assert len(r.events()) == attempts and stats["delivered"] == 0
    assert stats["lastError"] == f"receiver 0 (127.0.0.1): HTTP {status}"


def test_retries_recover_and_a_refused_connection_is_retried(notifiers, receiver):
    r = receiver(lambda n: 500 if n <= 2 else 200)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=(r.url, f"http://127.0.0.1:{closed.getsockname()[1]}/"),
                         webhook_retries=2)
    notifier.start()
    fake.bus.publish("ready", restored=True)
    stats = wait_hooks(notifier, "failed", 1)
    closed.close()
    assert wait_hooks(notifier, "delivered", 1)
    assert len(r.events()) == 3
    assert "receiver 1" in stats["lastError"] and "Refused" in stats["lastError"]


def test_a_dead_receiver_does_not_delay_another(notifiers, receiver):
    dead, alive = receiver(HANG), receiver()
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=(dead.url, alive.url), webhook_timeout_s=30.0)
    notifier.start()
    published = [fake.bus.publish("qr", qr=f"QR-{n}") for n in range(3)]
    alive.wait_count(3)
    assert [e["seq"] for e in alive.events()] == [e.seq for e in published]
    assert len(dead.requests) <= 1 and dead.answered == 0  # still stuck on the first


def test_a_full_queue_drops_the_oldest_with_a_count(notifiers, receiver, caplog):
    r = receiver(lambda n: HANG if n == 1 else 200)
    fake = Fake()
    notifier = notifiers(fake, webhook_urls=(r.url,), queue_size=3, webhook_timeout_s=30.0)
    notifier.start()
    published = [fake.bus.publish("qr", qr="QR-0")]
    r.wait_count(1)  # event 1 is in flight, held by the receiver
    with caplog.at_level(logging.WARNING, logger="whatsapp.notify.webhooks"):
        published += [fake.bus.publish("qr", qr=f"QR-{n}") for n in range(1, 10)]
    assert hooks(notifier)["dropped"] == 6 and hooks(notifier)["queued"] == 4
    assert any("dropped the oldest" in m for m in caplog.messages)
    r.release.set()
    r.wait_count(4)
    wait_hooks(notifier, "delivered", 4)
    assert [e["seq"] for e in r.events()] == [published[i].seq for i in (0, 7, 8, 9)]


def test_stop_wakes_a_backoff_wait_and_flushes_what_is_queued(notifiers, receiver):
    failing = receiver(500)
    fake = Fake()
    slow = notifiers(fake, webhook_urls=(failing.url,), webhook_retries=5, retry_base_s=60.0)
    slow.start()
    in_backoff = threading.Event()

    class Spy(logging.Handler):
        def emit(self, record):
            if "retry in" in record.getMessage():
                in_backoff.set()

    spy = Spy(logging.DEBUG)
    webhook_log = logging.getLogger("whatsapp.notify.webhooks")
    webhook_log.addHandler(spy)
    old_level, webhook_log.level = webhook_log.level, logging.DEBUG
    try:
        fake.bus.publish("qr", qr="A")
        assert in_backoff.wait(10)
        started = time.monotonic()
        assert slow.stop(timeout=10) is True  # woke the 60 s backoff
        assert time.monotonic() - started < 5
    finally:
        webhook_log.removeHandler(spy)
        webhook_log.setLevel(old_level)
    assert len(failing.events()) == 1 and hooks(slow)["failed"] == 1

    ok = receiver()
    other = Fake()
    flushing = notifiers(other, webhook_urls=(ok.url,))
    flushing.start()
    published = [other.bus.publish("status", status=s, previous=None, reason=None)
                 for s in ("stopped", "starting", "stopped")]
    assert flushing.stop(timeout=5) is True
    assert [e["seq"] for e in ok.events()] == [e.seq for e in published]
    other.bus.publish("qr", qr="late")  # after stop: not queued
    assert hooks(flushing)["queued"] == 0


# -- the event stream --------------------------------------------------------------------

@contextlib.contextmanager
def served(notifier: Notifier):
    app = Flask(__name__)
    errors.register_error_handlers(app)
    notifier.register(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        notifier.stop(timeout=2)  # ends the streams first: shutdown never waits for them
        server.shutdown()
        server.server_close()
        thread.join(5)


class SSEClient:
    """Reads Server-Sent Events from a real socket; every read is bounded by `timeout`."""

    def __init__(self, port: int, timeout: float = 5):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", "/api/whatsapp/events")
        self.response = self.conn.getresponse()
        self.comments = 0

    def next_event(self) -> dict | None:
        """The next event as {"event", "id", "data"}; None at the end of the stream."""
        fields: dict = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if not line:
                if "event" in fields:
                    return fields
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value

    def close(self) -> None:
        # The response holds the socket (http.client dropped it from the connection when
        # the stream was announced as the connection's last): closing it closes the fd.
        self.response.close()
        self.conn.close()


def test_stream_starts_with_the_status_then_follows_the_bus(notifiers):
    fake = Fake(Status.QR)
    notifier = notifiers(fake)
    with served(notifier) as port:
        client = SSEClient(port)
        assert client.response.status == 200
        assert client.response.getheader("Content-Type").startswith("text/event-stream")
        assert client.response.getheader("Cache-Control") == "no-store"
        assert client.response.getheader("X-Accel-Buffering") == "no"
        first = client.next_event()
        assert first["event"] == "status" and first["data"]["event"] == "status"
        assert first["data"]["data"]["status"] == "qr" and first["data"]["data"]["initial"] is True
        assert first["data"]["data"]["clientId"] == "test-client"
        qr = fake.bus.publish("qr", qr="QR-1")
        ready = fake.bus.publish("ready", restored=False, phone="15550001111", pushname="P")
        for event in (qr, ready):
            got = client.next_event()
            assert (got["event"], got["id"], got["data"]) == (event.name, str(event.seq), event.to_json())
        assert notifier.status()["listeners"] == 1
        notifier.stop(timeout=2)
        assert client.next_event() is None  # stop() ended the stream at once


def test_listener_limit_gives_503_json_and_a_gone_client_is_dropped(notifiers):
    fake = Fake()
    notifier = notifiers(fake, events_max_listeners=1, keepalive_s=0.05)
    with served(notifier) as port:
        first = SSEClient(port)
        assert first.next_event()["event"] == "status"
        refused = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        refused.request("GET", "/api/whatsapp/events")
        answer = refused.getresponse()
        assert answer.status == 503 and answer.getheader("Content-Type") == "application/json"
        body = json.loads(answer.read())
        assert body["success"] is False and body["error"] == "unavailable" and "limit 1" in body["message"]
        refused.close()

        first.close()
        wait_for(lambda: notifier.status()["listeners"] == 0, 10, interval=0.01,
                 message="the closed client to be dropped")
        second = SSEClient(port)
        assert second.next_event()["event"] == "status"  # the freed place is usable again
        second.close()


def test_close_streams_ends_streams_before_any_keepalive(notifiers):
    fake = Fake()
    notifier = notifiers(fake, keepalive_s=60)
    with served(notifier) as port:
        client = SSEClient(port, timeout=10)
        assert client.next_event()["event"] == "status"
        notifier.close_streams()
        assert client.next_event() is None and client.comments == 0
        again = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        again.request("GET", "/api/whatsapp/events")
        answer = again.getresponse()
        assert answer.status == 503 and "shutting down" in json.loads(answer.read())["message"]
        again.close()


def test_a_client_that_falls_behind_is_cut_off_not_buffered_without_bound():
    listener = stream._Listener(capacity=2)
    for seq in (1, 2, 3):
        listener.push(Event("qr", {"qr": str(seq)}, seq))
    assert listener.take(0, lambda: False) is None and listener.overflowed


# -- metrics and status ------------------------------------------------------------------

def scrape(client) -> dict:
    """{(sample name, frozenset(labels)): value} from GET /metrics."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True))
            for s in family.samples}


def metric(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_follow_the_bus_and_the_snapshot(notifiers, receiver):
    r = receiver()
    fake = Fake(Status.QR)
    notifier = notifiers(fake, webhook_urls=(r.url,))
    app = Flask(__name__)
    errors.register_error_handlers(app)
    notifier.register(app)
    notifier.start()
    client = app.test_client()

    before = scrape(client)
    assert metric(before, "whatsapp_status", status="qr") == 1
    assert metric(before, "whatsapp_status", status="ready") == 0
    bus = fake.bus
    bus.publish("status", status=Status.STARTING, previous=Status.STOPPED, reason=None)
    bus.publish("browser_started", seconds=0.7)
    bus.publish("status", status="qr", previous="starting", reason=None)
    bus.publish("qr", qr="A")
    # No `name=`: Bus.publish(name, **data) cannot take a `name` field (reported to the lead).
    bus.publish("backup_restored", source="database")
    bus.publish("ready", restored=True, phone="1", pushname="P")
    bus.publish("backup_created", size=10, seconds=1.5)
    bus.publish("reconnecting", attempt=1, delay=5, reason="network")
    bus.publish("reconnecting", attempt=2, delay=10, reason="network")
    bus.publish("logged_out", phone="1")
    bus.publish("failed", reason="network", attempts=5)
    bus.publish("restore_failed", reason="corrupt")
    fake.snap = Snapshot(status=Status.READY)
    wait_hooks(notifier, "delivered", 12)

    after = scrape(client)
    assert metric(after, "whatsapp_status", status="ready") == 1
    assert metric(after, "whatsapp_status", status="qr") == 0
    expected = {
        "whatsapp_reconnect_attempts_total": 2, "whatsapp_browser_starts_total": 1,
        "whatsapp_browser_start_seconds_count": 1, "whatsapp_backups_total": 1,
        "whatsapp_backup_duration_seconds_count": 1, "whatsapp_backup_duration_seconds_sum": 1.5,
        "whatsapp_session_restores_total": 1, "whatsapp_logged_out_total": 1,
        "whatsapp_failed_total": 1, "whatsapp_qr_codes_total": 1, "whatsapp_restore_failures_total": 1,
        "whatsapp_event_listeners": 0,
    }
    assert {name: metric(after, name) for name in expected} == expected
    assert metric(after, "whatsapp_backup_restores_total", source="database") == 1
    assert metric(after, "whatsapp_ready_total", restored="true") == 1
    assert metric(after, "whatsapp_events_total", event="reconnecting") == 2
    assert metric(after, "whatsapp_status_changes_total", status="starting") == 1
    assert metric(after, "whatsapp_webhook_deliveries_total", receiver="0") == 12
    assert metric(after, "whatsapp_webhook_failures_total", receiver="0") == 0
    # Time in status: closed intervals for the statuses left, the open one grows at scrape.
    assert metric(after, "whatsapp_status_seconds_total", status="starting") > 0
    later = scrape(client)
    assert (metric(later, "whatsapp_status_seconds_total", status="qr")
            > metric(after, "whatsapp_status_seconds_total", status="qr"))
    assert (metric(later, "whatsapp_status_seconds_total", status="starting")
            == metric(after, "whatsapp_status_seconds_total", status="starting"))


def test_each_notifier_has_its_own_registry_and_status_shape(notifiers):
    one, two = Fake(), Fake()
    first, second = notifiers(one), notifiers(two, events_max_listeners=3)
    apps = []
    for notifier in (first, second):
        apps.append(Flask(__name__))
        notifier.register(apps[-1])
    one.bus.publish("reconnecting", attempt=1, delay=1, reason="network")
    assert metric(scrape(apps[0].test_client()), "whatsapp_reconnect_attempts_total") == 1
    assert metric(scrape(apps[1].test_client()), "whatsapp_reconnect_attempts_total") == 0
    assert second.status() == {
        "webhooks": {"receivers": 0, "queued": 0, "delivered": 0, "failed": 0, "dropped": 0,
                     "lastError": None, "lastErrorAt": None},
        "listeners": 0, "maxListeners": 3}


def test_access_rules_apply_to_both_routes(notifiers):
    from whatsapp.api import access

    config = Config(api_key="k-123")
    app = Flask(__name__)
    errors.register_error_handlers(app)
    access.init_app(app, config)
    notifier = notifiers(Fake())
    notifier.register(app)
    client = app.test_client()
    for path in ("/metrics", "/api/whatsapp/events"):
        assert client.get(path).status_code == 401
    assert client.get("/metrics", headers={"X-Api-Key": "k-123"}).status_code == 200
    assert notifier.status()["listeners"] == 0
