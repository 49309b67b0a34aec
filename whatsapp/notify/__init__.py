"""Telling people when the session needs them: webhooks, a live event stream, metrics.

    notifier = Notifier(config, bus, session.snapshot)  # starts nothing
    notifier.register(app)        # GET /api/whatsapp/events (SSE), GET /metrics
    notifier.start()              # in the serving process: one sender thread per webhook URL
    notifier.close_streams()      # optional, first thing on SIGTERM: end SSE streams now
    notifier.stop(timeout=3.0)    # bounded, even with a hung receiver

Construction subscribes to the bus (counting and streaming work at once) but starts no
thread. The subscriber runs on the session's owner thread and only counts and enqueues.
Webhooks are queued only between `start()` and `stop()`. `start()` is idempotent; so is
`stop()`; a stopped notifier cannot be started again. Details of each part are in
`webhooks.py` (delivery, headers, signature), `stream.py` (SSE) and `metrics.py`.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..bus import Bus, Event
from ..config import Config
from ..states import Snapshot, iso
from .metrics import Metrics
from .stream import Streams
from .webhooks import Sender

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/whatsapp/events"
EARLY_EVENTS = 200  # kept for the webhooks until they start (a start publishes a few dozen)
METRICS_PATH = "/metrics"


class Notifier:
    def __init__(self, config: Config, bus: Bus, snapshot: Callable[[], Snapshot], *,
                 outbox: Callable[[], dict] | None = None,
                 queue_size: int = 1000, retry_base_s: float = 0.5, retry_cap_s: float = 30.0,
                 keepalive_s: float = 15.0):
        """Keyword arguments exist for tests (short waits); the app uses the defaults."""
        self._config = config
        self._bus = bus
        # Per process: receivers dedupe on (instance, seq), as seq restarts at 1 with the server.
        self.instance = secrets.token_hex(6)
        self._senders = [
            Sender(index, url, instance=self.instance, secret=config.webhook_secret,
                   timeout_s=config.webhook_timeout_s, retries=config.webhook_retries,
                   retry_base_s=retry_base_s, retry_cap_s=retry_cap_s, queue_size=queue_size)
            for index, url in enumerate(config.webhook_urls)
        ]
        self._streams = Streams(bus.client_id, snapshot, max_listeners=config.events_max_listeners,
                                keepalive_s=keepalive_s)
        self._metrics = Metrics(snapshot, lambda: self._senders, self._streams.count, outbox)
        self._lifecycle = threading.Lock()
        self._state = "new"  # new -> started -> stopped
        # Events seen before start(): the session may run before the app's services start
        # (whatsapp/early.py); webhooks get them, in order, once their senders run.
        self._before_start: list[Event] = []
        bus.subscribe(self._on_event)

    @property
    def registry(self):
        """This notifier's Prometheus registry."""
        return self._metrics.registry

    # -- the bus subscriber (session owner thread): count and enqueue, nothing else -------
    def _on_event(self, event: Event) -> None:
        self._metrics.observe(event)
        self._streams.publish(event)
        if self._senders:
            with self._lifecycle:  # start() hands these over under it: the order holds
                if self._state == "new":
                    if len(self._before_start) < EARLY_EVENTS:
                        self._before_start.append(event)
                    return
        for sender in self._senders:
            sender.offer(event)  # a no-op unless started

    # -- Flask -----------------------------------------------------------------------------
    def register(self, app: Flask) -> None:
        """Add the routes. Plain routes, so the app's access rules (before_request) apply."""
        app.add_url_rule(EVENTS_PATH, "notify_events", self._streams.response, methods=["GET"])
        app.add_url_rule(METRICS_PATH, "notify_metrics", self._metrics_view, methods=["GET"])

    def _metrics_view(self) -> Response:
        response = Response(generate_latest(self._metrics.registry), content_type=CONTENT_TYPE_LATEST)
        response.headers["Cache-Control"] = "no-store"
        return response

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start one sender thread per webhook URL (none without URLs). Idempotent."""
        with self._lifecycle:
            if self._state == "started":
                return
            if self._state == "stopped":
                raise RuntimeError("a stopped Notifier cannot be started again")
            for sender in self._senders:
                sender.start()
            early, self._before_start = self._before_start, []
            for event in early:
                for sender in self._senders:
                    sender.offer(event)
            self._state = "started"
        if self._senders:
            log.info("webhooks: %d receiver(s): %s", len(self._senders),
                     ", ".join(sender.host for sender in self._senders))
            if not self._config.webhook_secret:
                log.warning("WHATSAPP_WEBHOOK_SECRET is not set: webhooks are sent unsigned, and "
                            "receivers cannot tell them from forged requests")

    def close_streams(self) -> None:
        """End every event stream now and refuse new ones (503). Safe in a signal handler."""
        self._streams.close_all(blocking=False)

    def stop(self, timeout: float = 3.0) -> bool:
        """End the streams, then let senders flush what is queued until `timeout` passes.

        Returns True when every sender thread ended in time; False leaves the stragglers
        (daemon threads, blocked on a receiver) to die with the process. Never raises.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lifecycle:
            self._state = "stopped"
        self._streams.close_all()
        for sender in self._senders:
            sender.begin_stop(deadline)
        stuck = [s for s in self._senders if not s.join(deadline - time.monotonic())]
        if stuck:
            log.warning("webhooks: receiver(s) %s still busy after %.1f s; not waiting for them",
                        ", ".join(f"{s.index} ({s.host})" for s in stuck), timeout)
        return not stuck

    # -- /status ---------------------------------------------------------------------------
    def status(self) -> dict:
        """`{"webhooks": {receivers, queued, delivered, failed, dropped, lastError, lastErrorAt},
        "listeners": n, "maxListeners": n}`; totals over receivers, the newest error."""
        stats = [sender.stats() for sender in self._senders]
        totals: dict[str, object] = {"receivers": len(stats)}
        for key in ("queued", "delivered", "failed", "dropped"):
            totals[key] = sum(each[key] for each in stats)
        failing = [each for each in stats if each["lastErrorAt"] is not None]
        newest = max(failing, key=lambda each: each["lastErrorAt"], default=None)
        totals["lastError"] = newest["lastError"] if newest else None
        totals["lastErrorAt"] = iso(newest["lastErrorAt"]) if newest else None
        return {"webhooks": totals, "listeners": self._streams.count(),
                "maxListeners": self._streams.max_listeners}
