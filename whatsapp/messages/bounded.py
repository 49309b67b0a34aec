"""Calls that return in time even when the database freezes, a small connection pool, and
URLs fit for logs. Generic (no psycopg here), so it is tested without a server."""
from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")


class NoAnswer(Exception):
    """The bound passed while the call was still running (it runs on, abandoned)."""


class PoolClosed(Exception):
    """The pool was closed."""


def run_bounded(fn: Callable[[], T], timeout: float, name: str) -> T:
    """`fn()` in a daemon thread: its result or exception, or NoAnswer after `timeout`.

    A thread because nothing else holds against a frozen server: libpq's timeouts cover
    connecting and the server's cover statements, but a server that stops answering (SIGSTOP,
    a dropped network path with TCP still open) blocks a read forever. The abandoned call
    runs on and must clean up after itself (`fn` returns or closes its connection)."""
    done = threading.Event()
    value: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            value.append(fn())
        except BaseException as exc:  # handed to the waiting caller, re-raised there
            error.append(exc)
        done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    if not done.wait(timeout):
        raise NoAnswer(f"no answer within {timeout:.1f} s")
    if error:
        raise error[0]
    return value[0]


class Closeable(Protocol):
    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


class Pool(Generic[C]):
    """At most `size` connections, made by `connect(seconds_left)` when needed and reused
    newest first. A connection is checked out by one caller at a time (`get`), then given
    back healthy (`put`) or dropped (`discard`). An abandoned call keeps its slot until it
    ends, so a frozen server ties up at most `size` threads, never more."""

    def __init__(self, connect: Callable[[float], C], size: int):
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._connect, self.size = connect, size
        self._cond = threading.Condition()
        self._idle: list[C] = []
        self._open = 0  # idle + checked out + being connected
        self._closed = False

    def get(self, deadline: float) -> tuple[C, bool]:
        """(connection, reused): an idle one, else a new one while under `size`, else wait
        for one until `deadline` (time.monotonic()) and raise NoAnswer."""
        with self._cond:
            while True:
                if self._closed:
                    raise PoolClosed("the connection pool is closed")
                if self._idle:
                    return self._idle.pop(), True
                if self._open < self.size:
                    self._open += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoAnswer(f"all {self.size} database connections stayed busy")
                self._cond.wait(left)
        try:
            return self._connect(max(0.0, deadline - time.monotonic())), False
        except BaseException:
            self._release_slot()
            raise

    def put(self, conn: C) -> None:
        """Give back a connection that is usable (no transaction open)."""
        with self._cond:
            if not self._closed and not conn.closed:
                self._idle.append(conn)
                self._cond.notify()
                return
        self.discard(conn)

    def discard(self, conn: C) -> None:
        """Close a checked-out connection and free its slot."""
        try:
            conn.close()
        finally:
            self._release_slot()

    def discard_idle(self) -> int:
        """Close every idle connection (after one turned out dead: the others, opened to
        the same server, most likely are too). Returns how many."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()
        return len(idle)

    def close(self) -> None:
        """Close idle connections now and the others as they come back; `get` raises PoolClosed."""
        with self._cond:
            self._closed = True
        self.discard_idle()

    def _release_slot(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for `name`: the first 8 bytes of its sha256, stable
    across processes and releases (as whatsapp.remote makes them)."""
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
