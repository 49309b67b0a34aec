"""A session's life as tests drive it: link a phone, wait for the login on disk, read QR codes.

    server, wid = linked_server(servers, sim)      # ready, with the new login on disk
    ready_without_qr(server)                       # ready again, no QR on the way
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from .server import ServerProcess, wait_for

CLIENT_ID = "energenie-whatsapp"  # the default WHATSAPP_CLIENT_ID, which tests keep


def profile_of(data_dir: Path, client_id: str = CLIENT_ID) -> Path:
    return Path(data_dir) / f"session-{client_id}"


def login_on_disk(data_dir: Path, wid: str | None = None, client_id: str = CLIENT_ID) -> bool:
    """The link has reached the profile's files: localStorage's LevelDB holds `last-wid-md`
    (and `wid` when given) and IndexedDB has content.

    runtime.md: localStorage reaches disk lazily, and a browser SIGKILLed within ~5 s of the
    write loses it. A test about the crash of a saved login waits for this first; killing
    sooner tests another story (a broken login restored from a backup).
    """
    default = profile_of(data_dir, client_id) / "Default"
    want = [b"last-wid-md"] + ([wid.encode()] if wid else [])
    try:
        stored = b"".join(path.read_bytes() for path in (default / "Local Storage" / "leveldb").iterdir()
                          if path.suffix in (".log", ".ldb"))
        return all(part in stored for part in want) and any((default / "IndexedDB").iterdir())
    except OSError:
        return False


def decode_qr_png(png: bytes) -> str:
    """Read a QR code from PNG bytes with zbar, as a phone's camera would."""
    from PIL import Image
    from pyzbar.pyzbar import decode

    found = decode(Image.open(io.BytesIO(png)))
    assert found, "no QR code found in the image"
    return found[0].data.decode()


def link_phone(server: ServerProcess, sim) -> dict:
    """Wait for a QR, read it from qr.png like a phone would, scan it; returns the ready status."""
    server.wait_status(lambda s: s["status"] == "qr" and s["qrAvailable"], timeout=60, message="a QR")
    status, _, png = server.request("GET", "/api/whatsapp/qr.png")
    assert status == 200
    sim.scan(decode_qr_png(png))
    return server.wait_status(lambda s: s["status"] == "ready", timeout=60, message="ready")


def linked_server(servers, sim, env: dict | None = None, data_dir=None) -> tuple[ServerProcess, str]:
    """A server whose session is ready with a fresh link that has reached the disk (so that
    a fault injected now meets a saved login); returns it and the link's wid."""
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, **(env or {})}, data_dir=data_dir)
    link_phone(server, sim)
    # The record is written just after the status turns ready: wait for both.
    ready = server.wait_status(lambda s: s["status"] == "ready" and s["record"]["wid"], 30,
                               "the link in the session record")
    wid = ready["record"]["wid"]
    client_id = server.env.get("WHATSAPP_CLIENT_ID", CLIENT_ID)
    wait_for(lambda: login_on_disk(server.data_dir, wid, client_id), 30, message="the new login written to the profile")
    return server, wid


def status_changes(server: ServerProcess) -> list[str]:
    """The statuses the server moved to, from its log lines "status a -> b"."""
    return re.findall(r"status \w+ -> (\w+)", server.log())


def ready_without_qr(server: ServerProcess, timeout: float = 90) -> dict:
    """Wait for `ready`; no `qr` may be seen on /status nor logged as a status on the way."""
    seen = []

    def check(status):
        if not seen or seen[-1] != status["status"]:
            seen.append(status["status"])
        return status["status"] == "ready"
    ready = server.wait_status(check, timeout=timeout, message="ready (restored, no QR)")
    assert "qr" not in seen, seen
    assert "qr" not in status_changes(server), server.log()
    return ready
