"""Connections to the backup database, and calls that return in time whatever it does.

`Database(url, timeout_s)` opens short-lived connections (`connect`) with libpq's connect
timeout, TCP keepalives, and statement and lock timeouts. `call(what, fn)` runs `fn` in a
daemon thread and stops waiting at the bound, because nothing else holds against a frozen
server (libpq's timeouts cover connecting, the server's cover statements, but a server
that stops answering blocks a read forever). The abandoned thread runs on and, when it
ends, calls `on_abandon` to close what it used. Every database problem is raised as
`DatabaseUnavailable` (`NoAnswer` when the bound passed), with passwords scrubbed, and
recorded for `/status` by `health()`, which never touches the network.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg

from ...states import iso, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_NAME = "whatsapp-session"
MIN_TRANSFER_RATE = 1024 * 1024  # bytes/s granted to moving a blob, on top of timeout_s


class DatabaseUnavailable(Exception):
    """The database could not be reached, or did not answer within the bound."""


class NoAnswer(DatabaseUnavailable):
    """The bound passed while the call was still running; its connection is still in use."""


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for `name`: the first 8 bytes of its sha256.

    Stable across processes, hosts and releases (Python's `hash()` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def mask_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def run_bounded(fn: Callable[[], T], timeout: float, name: str,
                on_abandon: Callable[[], object] | None = None) -> T:
    """`fn()` in a daemon thread: its result or exception, or `NoAnswer` after `timeout`."""
    lock, done = threading.Lock(), threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiting caller, re-raised there
            box["error"] = exc
        with lock:
            box["done"] = True
            abandoned = box.get("abandoned", False)
        done.set()
        if abandoned and on_abandon is not None:
            try:
                on_abandon()
            except psycopg.Error:
                pass  # closing a broken connection: nothing left to do

    threading.Thread(target=run, name=name, daemon=True).start()
    done.wait(timeout)
    with lock:
        if not box.get("done"):
            box["abandoned"] = True
            raise NoAnswer(f"no answer from the database within {timeout:.1f} s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


class Database:
    """One PostgreSQL server, for one client id's backups. Thread-safe."""

    def __init__(self, url: str, timeout_s: float):
        if urlsplit(url).scheme not in ("postgres", "postgresql"):
            raise ValueError("url: expected a postgres:// or postgresql:// URL")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be greater than 0")
        self._url, self.timeout_s = url, float(timeout_s)
        self.safe_url = mask_url(url)
        password = urlsplit(url).password
        self._secrets = [s for s in {password, unquote(password or "")} if s]
        self._lock = threading.Lock()  # never held across network calls: health() stays fast
        self._health: dict[str, Any] = {"database": "unknown", "lastError": None, "lastErrorAt": None}

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"

    def connect(self, statement_s: float | None = None) -> psycopg.Connection:
        """An autocommit connection; statements time out after `statement_s` (default timeout_s)."""
        # statement_timeout/lock_timeout are set with a query rather than the `options`
        # startup parameter, which connection poolers (PgBouncer) reject.
        ms = str(math.ceil(1000 * (statement_s or self.timeout_s)))
        idle = max(1, math.ceil(self.timeout_s))
        conn = psycopg.connect(self._url, connect_timeout=idle, application_name=APPLICATION_NAME,
                               autocommit=True, keepalives=1, keepalives_idle=idle,
                               keepalives_interval=idle, keepalives_count=3)
        try:
            conn.execute("SELECT set_config('statement_timeout', %s, false),"
                         " set_config('lock_timeout', %s, false)", (ms, ms))
        except BaseException:
            conn.close()
            raise
        return conn

    def transfer_s(self, size: int) -> float:
        """The bound for moving `size` bytes."""
        return self.timeout_s + size / MIN_TRANSFER_RATE

    def call(self, what: str, fn: Callable[[], T], timeout: float | None = None,
             on_abandon: Callable[[], object] | None = None) -> T:
        """`fn()` bounded; notes the database as ok or unreachable; failures raise
        `DatabaseUnavailable` (or `NoAnswer`) naming `what`."""
        kind: type[DatabaseUnavailable]
        try:
            value = run_bounded(fn, timeout or self.timeout_s, f"database-{what}", on_abandon)
        except NoAnswer as exc:
            error, kind = f"{what}: {exc}", NoAnswer
        except psycopg.Error as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            error, kind = f"{what}: {type(exc).__name__}: {self.scrub(first_line)}", DatabaseUnavailable
        else:
            self.note(database="ok")
            return value
        self.note(database="unreachable", lastError=error, lastErrorAt=iso(utcnow()))
        log.warning("backup database %s: %s", self.safe_url, error)
        raise kind(error)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def note(self, **fields: Any) -> None:
        with self._lock:
            self._health.update(fields)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._health)
