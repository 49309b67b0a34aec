"""Webhook delivery: one bounded queue and one sender thread per receiver URL.

Contract:

- `Sender.offer(event)` only appends to a bounded deque under a short lock: it never does
  I/O, so the session's owner thread (which publishes) is never delayed by a receiver.
  When the queue is full the OLDEST waiting event is dropped, counted and logged.
- Each receiver gets its events in publication order, one request at a time, from a thread
  of its own: a dead receiver delays only itself.
- One request per event: `POST <url>` with the body `json(event.to_json() + {"instance"})`
  (UTF-8, compact) and the headers

      Content-Type: application/json
      X-Whatsapp-Event: <event name>
      X-Whatsapp-Delivery: <instance>-<seq>     same on every retry; dedupe on it
      X-Whatsapp-Attempt: <1, 2, ...>
      X-Whatsapp-Timestamp: <unix seconds at this attempt>
      X-Whatsapp-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

  The signature header is sent only when a secret is configured (unsigned otherwise).
- 2xx is delivered. Connection errors, timeouts, 5xx, 408 and 429 are retried up to
  `retries` times with exponential backoff (base, 2×base, ... capped; `Retry-After` in
  seconds is honoured up to the cap); any other status (3xx: redirects are not followed,
  4xx) fails at once. The backoff wait wakes at once on stop.
- `stop(deadline)` accepts no more events, ends any backoff, and gives what is already
  queued one attempt each (request timeout cut to the deadline) until the first failure
  or the deadline; the rest is dropped and counted. The thread is a daemon: a receiver
  that trickles bytes forever cannot keep the process alive.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..backoff import Backoff
from ..bus import Event

log = logging.getLogger(__name__)

SIGNATURE_PREFIX = "sha256="
_RETRY_STATUSES = frozenset({408, 429})
# Logged every time this many more events were dropped for one receiver (the first too).
_DROP_LOG_EVERY = 100


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Whatsapp-Signature` value: HMAC-SHA256 over b"<timestamp>." + body."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300,
           now: float | None = None) -> bool:
    """What a receiver should do: constant-time compare, and refuse stale timestamps (replays)."""
    try:
        moment = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - moment) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, moment, body), signature or "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Following a redirect would turn the POST into a GET without the signed body.
    def redirect_request(self, *args, **kwargs):
        return None


class _Failure:
    __slots__ = ("message", "retry_after", "retryable")

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        self.message, self.retryable, self.retry_after = message, retryable, retry_after


class Sender:
    """Delivers events to one receiver URL; see the module docstring for the contract."""

    def __init__(self, index: int, url: str, *, instance: str, secret: str | None, timeout_s: float,
                 retries: int, retry_base_s: float, retry_cap_s: float, queue_size: int):
        self.index = index
        self.url = url
        self.host = urlsplit(url).hostname or "?"  # for logs: never the URL (it may hold a token)
        self._instance = instance
        self._secret = secret
        self._timeout_s = timeout_s
        self._retries = retries
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._queue: collections.deque[Event] = collections.deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._accepting = False
        self._in_flight = 0
        self._deadline = float("inf")
        self._failing = False
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._thread: threading.Thread | None = None
        self.delivered = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None

    # -- lifecycle (called by the Notifier) ----------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._accepting = True
        self._thread = threading.Thread(target=self._run, name=f"webhook-{self.index}", daemon=True)
        self._thread.start()

    def begin_stop(self, deadline: float) -> None:
        with self._cond:
            self._accepting = False
            self._deadline = deadline
            # Set under the lock, before the notify: the thread re-checks it after waking.
            self._stop.set()
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            return not self._thread.is_alive()
        return True

    # -- the publishing side -------------------------------------------------------------
    def offer(self, event: Event) -> None:
        """Queue `event`; never blocks. Drops the oldest waiting event when full."""
        with self._cond:
            if not self._accepting:
                return
            self._queue.append(event)
            dropped = None
            if len(self._queue) > self._queue_size:
                dropped = self._queue.popleft()
                self.dropped += 1
                count = self.dropped
            self._cond.notify()
        if dropped is not None and (count == 1 or count % _DROP_LOG_EVERY == 0):
            log.warning("webhook receiver %d (%s) is behind: queue full (%d), dropped the oldest "
                        "event (%s #%d); %d dropped so far", self.index, self.host, self._queue_size,
                        dropped.name, dropped.seq, count)

    def stats(self) -> dict:
        with self._cond:
            return {"queued": len(self._queue) + self._in_flight, "delivered": self.delivered,
                    "failed": self.failed, "dropped": self.dropped, "lastError": self.last_error,
                    "lastErrorAt": self.last_error_at}

    # -- the sender thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if not self._queue:
                    return
                if self._stop.is_set() and (time.monotonic() >= self._deadline or self._failing):
                    # Shutting down and out of time, or the receiver is failing: give up the rest.
                    left = len(self._queue)
                    self._queue.clear()
                    self.dropped += left
                    log.warning("webhook receiver %d (%s): %d event(s) not sent at shutdown",
                                self.index, self.host, left)
                    return
                event = self._queue.popleft()
                self._in_flight = 1
            try:
                self._deliver(event)
            except Exception:  # a bug here must not silently end this receiver's deliveries
                log.exception("webhook receiver %d (%s): delivering %s failed unexpectedly",
                              self.index, self.host, event.name)
                self._record(False, "internal error (see log)")
            finally:
                with self._cond:
                    self._in_flight = 0

    def _deliver(self, event: Event) -> None:
        body = json.dumps({**event.to_json(), "instance": self._instance}, separators=(",", ":"),
                          ensure_ascii=False, default=str).encode("utf-8")
        backoff = Backoff.exponential(self._retry_base_s, self._retry_cap_s, self._retries)
        attempt = 0
        while True:
            attempt += 1
            failure = self._post(event, body, attempt)
            if failure is None:
                self._record(True)
                return
            delay = backoff.next_delay() if failure.retryable and not self._stop.is_set() else None
            if delay is None:
                # Warn once per failing streak; a dead receiver must not flood the log.
                level = logging.WARNING if self._record(False, failure.message) else logging.DEBUG
                log.log(level, "webhook receiver %d (%s): %s #%d not delivered after %d attempt(s): %s",
                        self.index, self.host, event.name, event.seq, attempt, failure.message)
                return
            if failure.retry_after is not None:
                delay = min(self._retry_cap_s, max(delay, failure.retry_after))
            log.debug("webhook receiver %d (%s): attempt %d of %s #%d failed (%s); retry in %.2f s",
                      self.index, self.host, attempt, event.name, event.seq, failure.message, delay)
            if self._stop.wait(delay):  # stop() wakes this wait at once
                self._record(False, f"{failure.message} (shutdown during retries)")
                return

    def _post(self, event: Event, body: bytes, attempt: int) -> _Failure | None:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "whatsapp-session-webhooks/1",
            "X-Whatsapp-Event": event.name,
            "X-Whatsapp-Delivery": f"{self._instance}-{event.seq}",
            "X-Whatsapp-Attempt": str(attempt),
            "X-Whatsapp-Timestamp": str(timestamp),
        }
        if self._secret:
            headers["X-Whatsapp-Signature"] = sign(self._secret, timestamp, body)
        timeout = self._timeout_s
        if self._stop.is_set():  # draining at shutdown: never past the deadline
            timeout = max(0.05, min(timeout, self._deadline - time.monotonic()))
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(64 * 1024)  # let the receiver finish its answer; content ignored
            return None
        except urllib.error.HTTPError as exc:
            status, retry_after = exc.code, _seconds(exc.headers.get("Retry-After"))
            exc.close()
            retryable = status >= 500 or status in _RETRY_STATUSES
            return _Failure(f"HTTP {status}", retryable, retry_after)
        except urllib.error.URLError as exc:  # refused, DNS, TLS, connect timeout
            return _Failure(f"{type(exc.reason).__name__}: {exc.reason}", True)
        except (OSError, http.client.HTTPException) as exc:  # read timeout, reset, bad answer
            return _Failure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, True)

    def _record(self, ok: bool, error: str | None = None) -> bool:
        """Count one event's outcome; True when it changes the receiver's failing state."""
        with self._cond:
            changed = self._failing == ok
            self._failing = not ok
            if ok:
                self.delivered += 1
            else:
                self.failed += 1
                self.last_error = f"receiver {self.index} ({self.host}): {error}"
                self.last_error_at = datetime.now(UTC)
        if ok and changed:
            log.info("webhook receiver %d (%s) accepts deliveries again", self.index, self.host)
        return changed


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: not worth parsing, the backoff applies
        return None
