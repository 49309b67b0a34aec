"""Read, never write, the newest value of every key in a LevelDB folder (Chromium's storage).

Chromium keeps localStorage in LevelDB (`Default/Local Storage/leveldb/`): recent writes in
the write-ahead log (`*.log`, which Chromium reuses across restarts), older ones compacted
into sorted tables (`*.ldb`, formerly `*.sst`) whose blocks are usually Snappy-compressed
and whose keys share prefixes with their neighbours, so a key's bytes need not appear
anywhere in a file as such. Deleting a key (localStorage.clear() at a logout) appends a
deletion record after the value. A substring search of the files is therefore wrong both
ways; this module decodes the formats instead (leveldb's doc/log_format.md and
doc/table_format.md).

`read(folder)` returns `Contents`: for every key, the value of its newest record by sequence
number (None when that record is a deletion), and `complete`: False when some file or
block could not be decoded (a compression this reader does not know, a torn write of a
browser still running). Checksums are not verified: a torn tail is detected by its
framing, and a caller that needs certainty treats an incomplete read conservatively.
The MANIFEST is not read: an obsolete file LevelDB has not deleted yet only ever holds
older sequence numbers, which lose to the newer records.
"""
from __future__ import annotations

import dataclasses
import logging
import struct
from pathlib import Path

log = logging.getLogger(__name__)

_LOG_BLOCK = 32768
_LOG_HEADER = 7                      # crc32c (4), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_BLOCK_TRAILER = 5                   # compression type (1), crc32c (4)
_NO_COMPRESSION, _SNAPPY = 0, 1
_VALUE, _DELETION = 1, 0
_MAX_FILE = 64 << 20                 # Chromium's localStorage files are far smaller


class Corrupt(ValueError):
    """A record or block that does not decode."""


@dataclasses.dataclass
class Contents:
    values: dict[bytes, bytes | None]   # key -> newest value, None when deleted
    complete: bool = True

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)


def read(folder: Path) -> Contents:
    """The newest record of every key in the LevelDB at `folder` (module docstring)."""
    newest: dict[bytes, tuple[int, bytes | None]] = {}
    complete = True
    try:
        paths = sorted(Path(folder).iterdir())
    except OSError:
        return Contents({}, complete=True)  # no folder: an empty database
    for path in paths:
        reader = {".log": _read_log, ".ldb": _read_table, ".sst": _read_table}.get(path.suffix)
        if reader is None:
            continue
        try:
            data = path.read_bytes()
            if len(data) > _MAX_FILE:
                raise Corrupt(f"{len(data)} bytes, more than expected")
            complete &= reader(data, newest)
        except (OSError, Corrupt) as exc:
            log.info("could not read %s: %s", path, exc)
            complete = False
    return Contents({key: value for key, (_, value) in newest.items()}, complete)


def _keep(newest: dict[bytes, tuple[int, bytes | None]], key: bytes, seq: int, value: bytes | None) -> None:
    if key not in newest or newest[key][0] < seq:
        newest[key] = (seq, value)


# -- the write-ahead log ----------------------------------------------------------------------

def _read_log(data: bytes, newest: dict[bytes, tuple[int, bytes | None]]) -> bool:
    """Replay every whole write batch of a log; False when a record was unreadable."""
    complete, pending = True, bytearray()
    for kind, payload in _log_records(data):
        if kind is None:
            complete, pending = False, bytearray()
        elif kind == _FULL:
            complete &= _apply_batch(payload, newest)
            pending = bytearray()
        elif kind == _FIRST:
            pending = bytearray(payload)
        elif kind == _MIDDLE and pending:
            pending += payload
        elif kind == _LAST and pending:
            complete &= _apply_batch(bytes(pending + payload), newest)
            pending = bytearray()
        else:  # a fragment whose start is missing
            complete = False
    return complete and not pending


def _log_records(data: bytes):
    """(type, payload) of each physical record; (None, b"") for a damaged one."""
    for block in range(0, len(data), _LOG_BLOCK):
        pos, end = block, min(block + _LOG_BLOCK, len(data))
        while end - pos >= _LOG_HEADER:
            length, kind = struct.unpack_from("<HB", data, pos + 4)
            if kind == 0 and length == 0:
                break  # zero padding: a preallocated or reused log's unused tail
            if kind not in (_FULL, _FIRST, _MIDDLE, _LAST) or pos + _LOG_HEADER + length > end:
                yield None, b""  # torn or damaged: skip the rest of this block
                break
            yield kind, data[pos + _LOG_HEADER: pos + _LOG_HEADER + length]
            pos += _LOG_HEADER + length


def _apply_batch(batch: bytes, newest: dict[bytes, tuple[int, bytes | None]]) -> bool:
    """A WriteBatch: sequence (8), count (4), then tagged puts and deletions."""
    if len(batch) < 12:
        return False
    seq, count = struct.unpack_from("<QI", batch, 0)
    pos, records = 12, list[tuple[bytes, bytes | None]]()
    try:
        for _ in range(count):
            tag = batch[pos]
            pos += 1
            key, pos = _slice(batch, pos)
            if tag == _VALUE:
                value, pos = _slice(batch, pos)
                records.append((key, value))
            elif tag == _DELETION:
                records.append((key, None))
            else:
                return False
    except (IndexError, Corrupt):
        return False  # a batch is applied whole or not at all, as LevelDB does
    for offset, (key, stored) in enumerate(records):
        _keep(newest, key, seq + offset, stored)
    return True


# -- sorted tables ----------------------------------------------------------------------------

def _read_table(data: bytes, newest: dict[bytes, tuple[int, bytes | None]]) -> bool:
    if len(data) < _FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise Corrupt("not a table (no magic number)")
    footer = len(data) - _FOOTER
    _, pos = _varint(data, footer)              # metaindex handle: not needed
    _, pos = _varint(data, pos)
    index_offset, pos = _varint(data, pos)
    index_size, _ = _varint(data, pos)
    complete = True
    for _, handle in _block_entries(_block(data, index_offset, index_size)):
        offset, at = _varint(handle, 0)
        size, _ = _varint(handle, at)
        try:
            entries = _block_entries(_block(data, offset, size))
        except (Corrupt, IndexError) as exc:
            log.debug("table block at %d unreadable: %s", offset, exc)
            complete = False
            continue
        for internal, value in entries:
            if len(internal) < 8:
                complete = False
                continue
            trailer = struct.unpack_from("<Q", internal, len(internal) - 8)[0]
            kind = trailer & 0xFF
            _keep(newest, internal[:-8], trailer >> 8, value if kind == _VALUE else None)
    return complete


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + _BLOCK_TRAILER > len(data):
        raise Corrupt("block beyond the end of the file")
    raw, compression = data[offset: offset + size], data[offset + size]
    if compression == _NO_COMPRESSION:
        return raw
    if compression == _SNAPPY:
        return snappy_decompress(raw)
    raise Corrupt(f"unknown block compression {compression}")


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """(key, value) of a block; keys are stored as (shared prefix length, rest)."""
    if len(block) < 4:
        raise Corrupt("block too short")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise Corrupt("bad restart count")
    entries, pos, key = [], 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_size, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_size > limit:
            raise Corrupt("entry out of bounds")
        key = key[:shared] + block[pos: pos + unshared]
        pos += unshared
        entries.append((key, block[pos: pos + value_size]))
        pos += value_size
    return entries


# -- encodings --------------------------------------------------------------------------------

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Corrupt("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _slice(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _varint(data, pos)
    if pos + size > len(data):
        raise Corrupt("slice beyond the end")
    return data[pos: pos + size], pos + size


def snappy_decompress(data: bytes) -> bytes:
    """Snappy's raw format (format_description.txt): literals and back-references."""
    expected, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal; lengths over 60 follow in 1-4 bytes
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[pos: pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > len(data):
                raise Corrupt("snappy literal beyond the end")
            out += data[pos: pos + length]
            pos += length
            continue
        if kind == 1:
            length, offset = ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            length, offset = (tag >> 2) + 1, int.from_bytes(data[pos: pos + 2], "little")
            pos += 2
        else:
            length, offset = (tag >> 2) + 1, int.from_bytes(data[pos: pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise Corrupt("snappy copy before the start")
        if offset >= length:
            out += out[len(out) - offset: len(out) - offset + length]
        else:  # overlapping: the last `offset` bytes repeat
            out += (out[-offset:] * (length // offset + 1))[:length]
    if len(out) != expected:
        raise Corrupt(f"snappy gave {len(out)} bytes, expected {expected}")
    return bytes(out)
