"""When is an HTTP/1 request whole? Decided from the bytes received so far (for serving.py).

`Incoming(cfg, peer, req_number, deadline).progress(data)` is called with everything received
for one request (and maybe pipelined bytes behind it) each time more arrives, and returns:

- None: not whole yet, wait for more;
- `Incoming.COMPLETE`: gunicorn's parser can read the request and its whole body from these
  bytes without asking the socket for more; also when it cannot parse the head at all (it
  then answers its own 4xx from the same bytes, in the thread, without waiting);
- a `Refusal` (status, reason, message) to answer from the event loop: a head over
  `MAX_HEAD_BYTES` (431), a body declared or grown over `MAX_BODY_BYTES` (413), a chunked
  body gunicorn rejects or frames otherwise than `ChunkScan` (400).

The head is parsed once, with gunicorn's own `Request`, as soon as its blank line is seen
(unless it names no body at all: then it is whole); the Content-Length is then a byte count,
and chunked bodies are scanned incrementally, so a client sending a byte at a time costs
O(1) per byte, never a re-parse of the buffer.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData, ParseException
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader

# Browsers send well under 8 KiB; nginx's largest default head is 4 x 8 KiB.
MAX_HEAD_BYTES = 64 * 1024
# Twice the app's own cap (access.MAX_BODY_BYTES, 64 KiB), so that the app decides on every
# body it could take; beyond this the loop answers 413 without buffering more.
MAX_BODY_BYTES = 128 * 1024
MAX_CHUNK_LINE = 8192  # a chunk-size line or trailer line; gunicorn's limit is 8190
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
# The only fields gunicorn frames a request body by; a head without either has no body.
_BODY_FIELDS = re.compile(rb"content-length|transfer-encoding", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    message: str


_TOO_LARGE = Refusal(413, "Payload Too Large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
_HEAD_TOO_LARGE = Refusal(431, "Request Header Fields Too Large",
                          f"request heads are limited to {MAX_HEAD_BYTES} bytes")
_BAD_CHUNKS = Refusal(400, "Bad Request", "the chunked body is malformed")
_COMPLETE: Any = object()


class Incoming:
    """The state of one request being received (module docstring)."""

    COMPLETE = _COMPLETE

    def __init__(self, cfg, peer, req_number: int, deadline: float):
        self.cfg, self.peer, self.req_number = cfg, peer, req_number
        self.deadline = deadline
        self.expects_continue = False  # the head says "Expect: 100-continue"
        self._searched = 0             # bytes already searched for the head's blank line
        self._head_end: int | None = None
        self._need: int | None = None  # head + Content-Length
        self._chunks: ChunkScan | None = None

    def progress(self, data: bytes) -> Any:
        if self._head_end is None:
            end = data.find(b"\r\n\r\n", max(0, self._searched - 3))
            if end < 0 or end + 4 > MAX_HEAD_BYTES:
                self._searched = len(data)
                return _HEAD_TOO_LARGE if len(data) > MAX_HEAD_BYTES else None
            self._head_end = end + 4
            if not _BODY_FIELDS.search(data, 0, self._head_end):
                return _COMPLETE  # most requests: a GET. Its parse is left to the thread.
            try:
                req = _parse(self.cfg, data[:self._head_end], self.peer, self.req_number)
            except (ParseException, NoMoreData, StopIteration):
                return _COMPLETE  # gunicorn's thread answers it from these same bytes
            self.expects_continue = bool(getattr(req, "_expected_100_continue", False))
            if isinstance(req.body.reader, LengthReader):
                if req.body.reader.length > MAX_BODY_BYTES:
                    return _TOO_LARGE
                self._need = self._head_end + req.body.reader.length
            else:  # a request body is framed by Content-Length or chunked, nothing else
                self._chunks = ChunkScan(self._head_end)
        if self._need is not None:
            return _COMPLETE if len(data) >= self._need else None
        assert self._chunks is not None and self._head_end is not None
        body_end = self._chunks.feed(data)
        if body_end is None:
            return _TOO_LARGE if len(data) - self._head_end > MAX_BODY_BYTES else None
        whole = body_end > 0 and _reads_whole(self.cfg, data[:body_end], self.peer, self.req_number)
        return _COMPLETE if whole else _BAD_CHUNKS


class ChunkScan:
    """Finds where a chunked body ends (RFC 9112 section 7.1) without decoding it: chunk-size
    lines are read, chunk data is jumped over, then trailer lines up to a blank one.

    `feed(data)` returns the offset just past the body, None while it is not all there, or 0
    when the framing is malformed.
    """

    def __init__(self, start: int):
        self._pos = start
        self._trailers = False

    def feed(self, data: bytes) -> int | None:
        while True:
            eol = data.find(b"\r\n", self._pos, self._pos + MAX_CHUNK_LINE + 2)
            if eol < 0:
                return 0 if len(data) - self._pos > MAX_CHUNK_LINE else None
            if self._trailers:
                if eol == self._pos:
                    return eol + 2
                self._pos = eol + 2
                continue
            size_text, *extension = data[self._pos:eol].split(b";", 1)
            if extension:
                size_text = size_text.rstrip(b" \t")
            if not _HEX.fullmatch(size_text):
                return 0
            size = int(size_text, 16)
            if size == 0:
                self._trailers = True
                self._pos = eol + 2
                continue
            after = eol + 2 + size + 2  # the data, then its CRLF
            if after > len(data):
                return None
            self._pos = after


def _parse(cfg, data: bytes, peer, req_number: int, source: _Source | None = None) -> Request:
    return Request(cfg, IterUnreader(source or _Source(data)), peer, req_number)


def _reads_whole(cfg, data: bytes, peer, req_number: int) -> bool:
    """True when gunicorn reads the request and its whole body from `data` alone, asking for
    no byte more: then its thread will not wait on the socket either."""
    source = _Source(data)
    try:
        body = _parse(cfg, data, peer, req_number, source).body
        while body.read(64 * 1024):
            pass
    except (ParseException, NoMoreData):
        return False
    return not source.exhausted


class _Source:
    """The bytes for gunicorn's IterUnreader, remembering whether it asked for more."""

    def __init__(self, data: bytes):
        self.data = data
        self.exhausted = False

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        self.exhausted = True
