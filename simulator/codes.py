"""Random material that looks like WhatsApp Web's: QR payloads, device secrets, noise info.

Nothing here is real cryptography; it only has the shape of the real thing so that code
reading the page sees what it would see on web.whatsapp.com.
"""

import base64
import json
import secrets

import qrcode
from qrcode.constants import ERROR_CORRECT_L


def _b64(nbytes: int) -> str:
    return base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def new_payload(platform: str) -> str:
    """A fresh payload `2@<ref>,<noise pub>,<identity pub>,<adv secret>,<platform>`."""
    ref = "2@" + _b64(33)
    return ",".join([ref, _b64(32), _b64(32), _b64(32), platform])


def matrix(payload: str) -> list[str]:
    """The QR code's modules for `payload`, one string of '0'/'1' per row, no quiet zone.

    The page draws these onto its canvas; the quiet zone is added there.
    """
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_L, border=0)
    code.add_data(payload)
    code.make(fit=True)
    return ["".join("1" if cell else "0" for cell in row) for row in code.get_matrix()]


def new_secret() -> str:
    """The per-device key kept by the browser (IndexedDB) and by the phone's device list."""
    return _b64(32)


def noise_info() -> str:
    """A JSON string shaped like localStorage['WANoiseInfo']."""
    return json.dumps({
        "staticKeyPair": {"pubKey": _b64(32), "privKey": _b64(32)},
        "ephemeralKeyPair": {"pubKey": _b64(32), "privKey": _b64(32)},
    })
