"""gunicorn's gthread worker, made safe against slow clients: requests are read whole first.

gthread hands a connection to one of its threads as soon as a first byte arrives; the thread
then reads the head and the body with blocking recv() and no overall bound, so eight clients
trickling a byte a second hold all eight threads and `/status` stops answering. A deadline
on those reads would still hold a thread per trickler for the whole deadline. Instead,
`BufferingWorker` reads requests in the worker's event loop, with non-blocking reads, as the
loop already does for idle kept-alive connections:

- A connection goes to a thread only once its whole request (head, and body as framed by
  Content-Length or chunked coding) is in the parser's buffer: a handler never waits for the
  client, and an answer may take as long as it needs (the event stream, an 18 s command).
- A request must arrive whole within `READ_TIMEOUT_S` of its first byte (of the accept, for
  a new connection): else 408 and the connection is closed (silently when nothing came).
- Heads over `MAX_HEAD_BYTES` get 431, bodies over `MAX_BODY_BYTES` 413 (the app's own cap is
  lower, so the app answers every body it could take). Those answers and the 408 are written
  by `gunicorn.util.write_error`, which gunicorn.conf.py makes JSON.
- When the worker stops, requests still coming get 2 s more at most (gthread's linger for
  kept-alive connections), so slow clients do not hold up a SIGTERM.
- A connection closed after its answer lingers in the loop (gunicorn's `close_graceful`
  would block the loop for up to 2 s per connection while a client keeps sending).

gunicorn still parses every request itself, in the thread, from the buffer: HTTP semantics,
limits and errors stay its own. The loop only decides when a request is complete (`framing.py`:
gunicorn's parser for the head, an incremental scan for chunked bodies). TLS, HTTP/2 and
the uwsgi or PROXY protocols are not handled this way: with them the worker is plain gthread
and says so. Written against gunicorn 27.0.1 (`gunicorn/workers/gthread.py`).
"""
from __future__ import annotations

import errno
import socket
import time
from functools import partial
from selectors import EVENT_READ

from gunicorn import util
from gunicorn.workers import gthread

from .framing import MAX_BODY_BYTES, MAX_HEAD_BYTES, Incoming, Refusal

READ_TIMEOUT_S = 5.0      # first byte to last byte of one request
LINGER_S = 2.0            # as gunicorn's close_graceful: reading what a closed client still sends
LINGER_MAX_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024

__all__ = ["MAX_BODY_BYTES", "MAX_HEAD_BYTES", "READ_TIMEOUT_S", "BufferingWorker"]


class _Conn(gthread.TConn):
    """gthread's connection, with the request being read and a non-blocking graceful close."""

    def __init__(self, worker: BufferingWorker, *args):
        super().__init__(*args)
        self.worker = worker
        self.incoming: Incoming | None = None
        self.continue_sent = False  # read by the handler thread, after the hand-over

    def close(self, graceful: bool = False) -> None:
        # Called on the loop's thread only (finish_request, murder_*): never block it.
        if graceful and self.worker.buffering:
            self.worker.linger(self)
        else:
            super().close(graceful)


class BufferingWorker(gthread.ThreadWorker):
    """`worker_class = "whatsapp.serving.BufferingWorker"` (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # conn -> deadline, in deadline order (every deadline is "now + a constant").
        self._reading: dict[_Conn, float] = {}
        self._lingering: dict[_Conn, float] = {}
        self._stop_deadline: float | None = None  # set when a stop begins
        self.buffering = True

    def init_process(self) -> None:
        cfg = self.cfg
        self.buffering = (not cfg.is_ssl and cfg.http2_cleartext == "off" and cfg.proxy_protocol == "off"
                          and getattr(cfg, "protocol", "http") == "http")
        if not self.buffering:
            self.log.warning("TLS, HTTP/2, PROXY or uwsgi configured: requests are read by the handler "
                             "threads as in plain gthread, and slow clients can hold them")
        super().init_process()

    # -- accepting and reading, on the loop's thread -----------------------------------------
    def accept(self, listener) -> None:
        """gthread's accept, building a `_Conn`."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client_sock.setblocking(True)
        self.enqueue_req(_Conn(self, self.cfg, client_sock, client_addr, listener.getsockname()))

    def enqueue_req(self, conn) -> None:
        """Every path to a thread comes here (a new connection, a kept-alive one that became
        readable, bytes pipelined behind the last request): read the request first."""
        if not self.buffering or not isinstance(conn, _Conn):
            super().enqueue_req(conn)
            return
        if not conn.initialized:
            conn.init()  # plain HTTP/1 (init_process checked): makes the parser, no I/O
        conn.sock.setblocking(False)
        deadline = time.monotonic() + READ_TIMEOUT_S
        if self._stop_deadline is not None:
            deadline = min(deadline, self._stop_deadline)
        conn.incoming = Incoming(self.cfg, conn.client, conn.parser.req_count + 1, deadline=deadline)
        conn.continue_sent = False
        self._pump(conn)

    def _pump(self, conn: _Conn, _fileobj=None) -> None:
        """Read what the client sent; hand the request over, refuse it, or wait for more."""
        buffer = conn.parser.unreader.buf
        incoming = conn.incoming
        assert incoming is not None
        while True:
            verdict = incoming.progress(buffer.getvalue())
            if verdict is not None:
                break
            try:
                data = conn.sock.recv(RECV_BYTES)
            except BlockingIOError:
                if incoming.expects_continue and not conn.continue_sent:
                    self._send_continue(conn)
                self._watch(conn)
                return
            except OSError:  # reset by the client
                data = b""
            if not data:  # the client went away before its request was whole
                self._unwatch(conn)
                self._drop(conn)
                return
            buffer.seek(0, 2)
            buffer.write(data)  # appended behind what the parser already holds
        self._unwatch(conn)
        if verdict is Incoming.COMPLETE:
            conn.sock.setblocking(True)
            super().enqueue_req(conn)
        else:
            self._refuse(conn, verdict)

    def _send_continue(self, conn: _Conn) -> None:
        # The client waits for this before sending its body; gunicorn would send it only
        # once a thread reads the body, which here happens after the body has come.
        try:
            conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.continue_sent = True
        except OSError:
            pass

    def _watch(self, conn: _Conn) -> None:
        if conn not in self._reading:
            self.poller.register(conn.sock, EVENT_READ, partial(self._pump, conn))
            assert conn.incoming is not None
            self._reading[conn] = conn.incoming.deadline

    def _unwatch(self, conn: _Conn) -> None:
        if self._reading.pop(conn, None) is not None:
            self.poller.unregister(conn.sock)

    def _drop(self, conn: _Conn) -> None:
        self.nr_conns -= 1
        util.close(conn.sock)

    def _refuse(self, conn: _Conn, refusal: Refusal) -> None:
        peer = conn.client[0] if isinstance(conn.client, tuple) else conn.client or "a unix socket"
        self.log.info("refused a request from %s: %s (%s)", peer, refusal.status, refusal.message)
        self.nr_conns -= 1
        try:
            util.write_error(conn.sock, refusal.status, refusal.reason, refusal.message)
        except OSError:
            pass  # the client is gone or not reading: closing is all that is left
        self.linger(conn)

    # -- closing without blocking the loop ------------------------------------------------
    def linger(self, conn: _Conn) -> None:
        """Half-close after the answer, then read and drop what the client still sends until it
        closes, `LINGER_MAX_BYTES` or `LINGER_S` (so the kernel does not reset the connection
        and lose the answer's end). The connection no longer counts in `nr_conns`."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, EVENT_READ, partial(self._drain, conn, [0]))
        except (OSError, ValueError, KeyError):
            util.close(conn.sock)
            return
        self._lingering[conn] = time.monotonic() + LINGER_S

    def _drain(self, conn: _Conn, drained: list[int], _fileobj=None) -> None:
        while True:
            try:
                data = conn.sock.recv(RECV_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            drained[0] += len(data)
            if not data or drained[0] >= LINGER_MAX_BYTES:
                self._end_linger(conn)
                return

    def _end_linger(self, conn: _Conn) -> None:
        if self._lingering.pop(conn, None) is not None:
            self.poller.unregister(conn.sock)
        util.close(conn.sock)

    # -- deadlines: the loop calls murder_pending after every wake-up ---------------------------
    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and self._stop_deadline is None:
            # Stopping: requests still coming get as long as gthread gives kept-alive
            # connections (capping every deadline alike keeps the table in order).
            self._stop_deadline = now + gthread.STOP_KEEPALIVE_LINGER
            for conn, deadline in self._reading.items():
                self._reading[conn] = min(deadline, self._stop_deadline)
        while self._reading:
            conn, deadline = next(iter(self._reading.items()))
            if deadline > now:
                break
            self._unwatch(conn)
            if conn.parser.unreader.buf.getbuffer().nbytes:
                self._refuse(conn, Refusal(408, "Request Timeout",
                                           f"the request did not arrive whole within {READ_TIMEOUT_S:g} s"))
            else:
                self._drop(conn)  # opened and never used: nothing to answer
        while self._lingering:
            conn, deadline = next(iter(self._lingering.items()))
            if deadline > now:
                break
            self._end_linger(conn)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Wake up for the nearest deadline, not only once a second.
        now = time.monotonic()
        for table in (self._reading, self._lingering):
            first = next(iter(table.values()), None)
            if first is not None:
                timeout = min(timeout, max(0.0, first - now))
        super().wait_for_and_dispatch_events(timeout)

    def run(self) -> None:
        try:
            super().run()
        finally:
            for conn in [*self._reading, *self._lingering]:
                util.close(conn.sock)

    # -- in the handler thread ----------------------------------------------------------------
    def handle_request(self, req, conn):
        if getattr(conn, "continue_sent", False):
            req._expected_100_continue = False  # the loop already said "100 Continue"
        return super().handle_request(req, conn)
