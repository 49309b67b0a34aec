"""Fake Chromium profiles for the persistence tests, with localStorage written the way
Chromium writes it: LevelDB log records (framed, checksummed write batches) and sorted
tables (prefix-compressed keys, Snappy-compressed blocks), per leveldb's doc/log_format.md
and doc/table_format.md. `tests/test_persistence_profile.py` also reads real Chromium files.
"""
from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

WID = "15550001111:3@c.us"
ORIGIN = "https://web.whatsapp.com"
IDB = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"
LS = "Default/Local Storage/leveldb"


# -- localStorage as Chromium stores it -------------------------------------------------------

def storage_key(name: str, origin: str = ORIGIN) -> bytes:
    return b"_" + origin.encode() + b"\x00\x01" + name.encode("latin-1")


def storage_value(text: str) -> bytes:
    return b"\x01" + text.encode("latin-1")


def login_storage(wid: str = WID) -> dict[bytes, bytes | None]:
    """The keys WhatsApp Web keeps for a linked browser (last-wid-md is JSON-quoted)."""
    return {b"VERSION": b"1", storage_key("WANoiseInfo"): storage_value('{"staticKeyPair": {}}'),
            storage_key("last-pushname"): storage_value('"Shop"'),
            storage_key("last-wid-md"): storage_value(f'"{wid}"'),
            storage_key("mobile-platform"): storage_value('"android"')}


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def log_bytes(batches: list[dict[bytes, bytes | None]], first_seq: int = 1) -> bytes:
    """A LevelDB log holding one write batch per dict (value None: a deletion), records
    split across 32 KiB blocks as LevelDB does."""
    out, seq = bytearray(), first_seq
    for batch in batches:
        body = bytearray(struct.pack("<QI", seq, len(batch)))
        for key, value in batch.items():
            body += (b"\x01" if value is not None else b"\x00") + _varint(len(key)) + key
            if value is not None:
                body += _varint(len(value)) + value
        seq += len(batch)
        data, first = bytes(body), True
        while True:
            room = 32768 - len(out) % 32768
            if room < 7:
                out += b"\x00" * room
                continue
            chunk, data = data[:room - 7], data[room - 7:]
            kind = (1 if first else 4) if not data else (2 if first else 3)
            out += struct.pack("<IHB", _masked_crc(bytes([kind]) + chunk), len(chunk), kind) + chunk
            first = False
            if not data:
                break
    return bytes(out)


def snappy_compress(data: bytes) -> bytes:
    """Snappy's raw format with literals and 2-byte-offset copies (enough to exercise a reader)."""
    out, pending, seen, i = bytearray(_varint(len(data))), bytearray(), {}, 0

    def flush_literal():
        while pending:
            part = pending[:60]
            del pending[:60]
            out.append((len(part) - 1) << 2)
            out.extend(part)

    while i < len(data):
        start = seen.get(data[i:i + 4]) if i + 4 <= len(data) else None
        seen[data[i:i + 4]] = i
        if start is None or i - start > 0xFFFF:
            pending.append(data[i])
            i += 1
            continue
        length = 4
        while i + length < len(data) and length < 64 and data[start + length] == data[i + length]:
            length += 1
        flush_literal()
        out.append(((length - 1) << 2) | 2)
        out.extend(struct.pack("<H", i - start))
        i += length
    flush_literal()
    return bytes(out)


def _block(entries: list[tuple[bytes, bytes]], restart_every: int = 16) -> bytes:
    out, restarts, previous = bytearray(), [], b""
    for n, (key, value) in enumerate(entries):
        shared = 0
        if n % restart_every:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    for offset in restarts or [0]:
        out += struct.pack("<I", offset)
    return bytes(out + struct.pack("<I", len(restarts or [0])))


def table_bytes(records: dict[bytes, bytes | None], seq: int = 1, snappy: bool = True,
                per_block: int = 100, compression: int | None = None) -> bytes:
    """A sorted table (`.ldb`) of `records` (value None: a deletion), all at `seq`;
    `compression` overrides the byte naming the data blocks' compression."""
    internal = sorted((key + struct.pack("<Q", (seq << 8) | (0 if value is None else 1)), value or b"")
                      for key, value in records.items())
    out, index = bytearray(), []
    for start in range(0, len(internal), per_block):
        entries = internal[start:start + per_block]
        raw = _block(entries)
        payload, kind = (snappy_compress(raw), 1) if snappy else (raw, 0)
        kind = kind if compression is None else compression
        index.append((entries[-1][0], _varint(len(out)) + _varint(len(payload))))
        out += payload + bytes([kind]) + struct.pack("<I", _masked_crc(payload + bytes([kind])))
    meta = _block([])
    meta_handle = _varint(len(out)) + _varint(len(meta))
    out += meta + b"\x00\x00\x00\x00\x00"
    index_block = _block(index, restart_every=1)
    index_handle = _varint(len(out)) + _varint(len(index_block))
    out += index_block + b"\x00\x00\x00\x00\x00"
    footer = meta_handle + index_handle
    out += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(out)


# -- profiles ----------------------------------------------------------------------------------

def login_files(wid: str = WID) -> dict[str, bytes]:
    """The files of a linked profile's login parts (what a backup copies)."""
    return {
        f"{IDB}/000003.log": b"idb-log" * 100,
        f"{IDB}/000005.ldb": bytes(range(256)) * 40,
        f"{IDB}/CURRENT": b"MANIFEST-000001\n",
        f"{IDB}/MANIFEST-000001": b"\x00\x01manifest",
        "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.blob/1/00/3": b"blob",
        f"{LS}/000003.log": log_bytes([login_storage(wid)]),
        f"{LS}/CURRENT": b"MANIFEST-000001\n",
        "Default/Preferences": b'{"profile":{"exit_type":"Normal"}}',
        "Default/Network/Cookies": b"SQLite format 3\x00cookies",
        "Local State": b'{"browser":{}}',
    }


LOGIN = login_files()
NOT_LOGIN = {
    f"{IDB}/LOCK": b"",
    f"{LS}/LOCK": b"",
    "Default/Cache/Cache_Data/data_0": b"cache",
    "Default/Code Cache/js/index": b"code",
    "Default/Service Worker/CacheStorage/x": b"sw",
    "Default/Network/Cookies-journal": b"",
    "GPUCache/data_1": b"gpu",
    "Default/History": b"history",
}


def make_profile(root: Path, files: dict[str, bytes] | None = None, name: str = "session-test",
                 wid: str = WID) -> Path:
    """A profile with a login of `wid`, caches and Chromium's lock files."""
    profile = root / name
    for rel, data in {**login_files(wid), **NOT_LOGIN, **(files or {})}.items():
        (profile / rel).parent.mkdir(parents=True, exist_ok=True)
        (profile / rel).write_bytes(data)
    (profile / "SingletonLock").symlink_to("otherhost-12345")
    (profile / "SingletonCookie").symlink_to("1234")
    return profile


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


class Clock:
    """A clock that moves forward a millisecond at every reading (distinct, ordered names)."""

    def __init__(self, start: datetime = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)):
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now
