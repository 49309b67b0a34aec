"""Prometheus metrics, derived only from bus events and the status snapshot.

Each `Metrics` owns a `CollectorRegistry` (not the process-global one: tests build several
apps in one process). `observe(event)` is a bus subscriber and only bumps counters. Values
read at scrape time (current status, time in the current status, webhook counts, stream
listeners) come from a collector that asks their owners then.

Exposed (all prefixed `whatsapp_`):

| metric | type | labels | from |
|---|---|---|---|
| `status` | gauge (1 for the current) | `status` | snapshot at scrape |
| `status_seconds_total` | counter | `status` | `status` events + the current one at scrape |
| `events_total` | counter | `event` | every event |
| `status_changes_total` | counter | `status` (entered) | `status` |
| `qr_codes_total` | counter | | `qr` |
| `ready_total` | counter | `restored` (`true`/`false`) | `ready` |
| `session_restores_total` | counter | | `ready` with `restored` true |
| `backup_restores_total` | counter | `source` | `backup_restored` |
| `restore_failures_total` | counter | | `restore_failed` |
| `reconnect_attempts_total` | counter | | `reconnecting` |
| `browser_starts_total`, `browser_start_seconds` | counter, histogram | | `browser_started` |
| `backups_total`, `backup_duration_seconds` | counter, histogram | | `backup_created` |
| `logged_out_total`, `failed_total` | counter | | `logged_out`, `failed` |
| `webhook_deliveries_total`, `webhook_failures_total`, `webhook_dropped_total` | counter | `receiver` | senders |
| `webhook_queued` | gauge | `receiver` | senders |
| `event_listeners` | gauge | | the event stream |
| `messages_total` | counter | `event` (`message_sent`, ..., `message_received`) | message events |
| `message_failures_total` | counter | `code` | `message_failed` |
| `message_send_seconds` | histogram | | `message_sent`: accepted -> sent |
| `outbox_messages` | gauge | `status` (`queued`, `sending`) | the outbox counts |
| `outbox_oldest_age_seconds` | gauge | | the oldest message not yet sent |

`receiver` is the URL's index in WHATSAPP_WEBHOOK_URL (never the URL: it may hold a token).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..bus import Event
from ..states import Snapshot, Status

_STATUSES = tuple(status.value for status in Status)
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SEND_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400)
_MESSAGE_EVENTS = ("message_sent", "message_delivered", "message_read", "message_failed", "message_received")


class _StatusClock:
    """Seconds spent in each status, on the monotonic clock."""

    def __init__(self):
        self._lock = threading.Lock()
        self._totals = dict.fromkeys(_STATUSES, 0.0)
        self._current: str | None = None
        self._since = time.monotonic()

    def change(self, new: str, previous: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            # Before the first change we only know the old status from the event itself.
            old = self._current or previous
            if old in self._totals:
                self._totals[old] += now - self._since
            self._current, self._since = new, now

    def totals(self, fallback: str) -> dict[str, float]:
        with self._lock:
            totals = dict(self._totals)
            current = self._current or fallback
            if current in totals:
                totals[current] += time.monotonic() - self._since
        return totals


class Metrics:
    def __init__(self, snapshot: Callable[[], Snapshot], senders: Callable[[], Iterable],
                 listeners: Callable[[], int], outbox: Callable[[], dict] | None = None):
        self.registry = CollectorRegistry()
        self._snapshot, self._senders, self._listeners = snapshot, senders, listeners
        self._outbox = outbox
        self._clock = _StatusClock()
        r = self.registry
        self.events = Counter("whatsapp_events", "Session events published, by name.", ["event"], registry=r)
        self.changes = Counter("whatsapp_status_changes", "Status changes, by the status entered.",
                               ["status"], registry=r)
        self.qr_codes = Counter("whatsapp_qr_codes", "QR codes shown (each rotation counts).", registry=r)
        self.ready = Counter("whatsapp_ready", "Times the session became ready.", ["restored"], registry=r)
        self.restores = Counter("whatsapp_session_restores",
                                "Times the saved login was reused (ready without a QR).", registry=r)
        self.backup_restores = Counter("whatsapp_backup_restores", "Logins restored from a backup.",
                                       ["source"], registry=r)
        self.restore_failures = Counter("whatsapp_restore_failures",
                                        "Broken logins no backup could restore.", registry=r)
        self.reconnects = Counter("whatsapp_reconnect_attempts", "Reconnect attempts.", registry=r)
        self.browser_starts = Counter("whatsapp_browser_starts", "Browser launches.", registry=r)
        self.browser_seconds = Histogram("whatsapp_browser_start_seconds", "Browser launch time.",
                                         buckets=_DURATION_BUCKETS, registry=r)
        self.backups = Counter("whatsapp_backups", "Backups of the login written.", registry=r)
        self.backup_seconds = Histogram("whatsapp_backup_duration_seconds", "Time to write a backup.",
                                        buckets=_DURATION_BUCKETS, registry=r)
        self.logged_out = Counter("whatsapp_logged_out", "Times the phone removed this device.", registry=r)
        self.failed = Counter("whatsapp_failed", "Times all reconnect attempts were used up.", registry=r)
        self.messages = Counter("whatsapp_messages", "Message events, by name.", ["event"], registry=r)
        self.message_failures = Counter("whatsapp_message_failures", "Messages that failed, by code.",
                                        ["code"], registry=r)
        self.send_seconds = Histogram("whatsapp_message_send_seconds",
                                      "Time from accepting a message to WhatsApp's server having it.",
                                      buckets=_SEND_BUCKETS, registry=r)
        r.register(_LiveCollector(self))

    def observe(self, event: Event) -> None:
        """Bus subscriber: count `event`. Never blocks."""
        data = event.data
        self.events.labels(event.name).inc()
        if event.name == "status":
            status = _text(data.get("status")) or "unknown"
            self._clock.change(status, _text(data.get("previous")))
            self.changes.labels(status).inc()
        elif event.name == "qr":
            self.qr_codes.inc()
        elif event.name == "ready":
            restored = bool(data.get("restored"))
            self.ready.labels("true" if restored else "false").inc()
            if restored:
                self.restores.inc()
        elif event.name == "backup_restored":
            self.backup_restores.labels(_text(data.get("source")) or "unknown").inc()
        elif event.name == "restore_failed":
            self.restore_failures.inc()
        elif event.name == "reconnecting":
            self.reconnects.inc()
        elif event.name == "browser_started":
            self.browser_starts.inc()
            _observe(self.browser_seconds, data.get("seconds"))
        elif event.name == "backup_created":
            self.backups.inc()
            _observe(self.backup_seconds, data.get("seconds"))
        elif event.name == "logged_out":
            self.logged_out.inc()
        elif event.name == "failed":
            self.failed.inc()
        elif event.name in _MESSAGE_EVENTS:
            self.messages.labels(event.name).inc()
            if event.name == "message_failed":
                error = data.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                self.message_failures.labels(_text(code) or "unknown").inc()
            elif event.name == "message_sent":
                _observe(self.send_seconds, _seconds_between(data.get("createdAt"), data.get("sentAt")))


class _LiveCollector:
    """Values read when scraped. No `describe()`: registering must not call snapshot()."""

    def __init__(self, metrics: Metrics):
        self._m = metrics

    def collect(self):
        current = self._m._snapshot().status.value
        status = GaugeMetricFamily("whatsapp_status", "1 for the current session status.", labels=["status"])
        seconds = CounterMetricFamily("whatsapp_status_seconds", "Seconds spent in each status.",
                                      labels=["status"])
        for name, total in self._m._clock.totals(current).items():
            status.add_metric([name], 1.0 if name == current else 0.0)
            seconds.add_metric([name], total)
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "delivered": CounterMetricFamily("whatsapp_webhook_deliveries", "Webhook events delivered.",
                                             labels=["receiver"]),
            "failed": CounterMetricFamily("whatsapp_webhook_failures",
                                          "Webhook events given up after their retries.", labels=["receiver"]),
            "dropped": CounterMetricFamily("whatsapp_webhook_dropped",
                                           "Webhook events dropped (queue full, or unsent at shutdown).",
                                           labels=["receiver"]),
            "queued": GaugeMetricFamily("whatsapp_webhook_queued", "Webhook events waiting or in flight.",
                                        labels=["receiver"]),
        }
        for sender in self._m._senders():
            stats = sender.stats()
            for key, family in families.items():
                family.add_metric([str(sender.index)], stats[key])
        listeners = GaugeMetricFamily("whatsapp_event_listeners", "Connected event-stream clients.",
                                      value=self._m._listeners())
        yield from (status, seconds, *families.values(), listeners)
        if self._m._outbox is not None:
            outbox = self._m._outbox()
            waiting = GaugeMetricFamily("whatsapp_outbox_messages", "Messages waiting, by status.",
                                        labels=["status"])
            for name in ("queued", "sending"):
                waiting.add_metric([name], outbox.get(name) or 0)
            age = outbox.get("oldestQueuedAgeS")
            yield waiting
            yield GaugeMetricFamily("whatsapp_outbox_oldest_age_seconds",
                                    "Age of the oldest message not yet sent (0: none).", value=age or 0)


def _text(value) -> str | None:
    # Publishers may pass a `Status` (a str Enum, whose str() is "Status.READY") or its value.
    value = getattr(value, "value", value)
    return None if value is None else str(value)


def _seconds_between(start, end) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


def _observe(histogram: Histogram, seconds) -> None:
    # A malformed duration must not break counting the event itself.
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds >= 0:
        histogram.observe(seconds)
