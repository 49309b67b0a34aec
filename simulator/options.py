"""The simulator's options and its one error type."""

import math
import re
from dataclasses import dataclass

WEB_VERSIONS = (2025, 2026)


class SimError(Exception):
    """A call that cannot be done: `status` is the HTTP status, `error` a short code."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


@dataclass(frozen=True)
class Options:
    """The command-line options; checked here so that a bad value fails at start."""

    phone: str = "15550001111"
    pushname: str = "Demo Phone"
    platform: str = "android"
    qr_ttl: float = 20.0
    qr_first_ttl: float = 60.0
    qr_max: int = 6
    sync_seconds: float = 1.0
    web_version: int = 2026  # which WhatsApp Web markup the page mirrors (2025 or 2026)

    def __post_init__(self):
        if not re.fullmatch(r"\d{5,20}", self.phone):
            raise ValueError(f"phone must be 5 to 20 digits, not {self.phone!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", self.platform):
            raise ValueError(f"platform must be a short word, not {self.platform!r}")
        for name in ("qr_ttl", "qr_first_ttl"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if not (math.isfinite(self.sync_seconds) and self.sync_seconds >= 0):
            raise ValueError(f"sync_seconds must be >= 0, not {self.sync_seconds!r}")
        if self.web_version not in WEB_VERSIONS or isinstance(self.web_version, bool):
            raise ValueError(f"web_version must be one of {WEB_VERSIONS}, not {self.web_version!r}")
        if not (isinstance(self.qr_max, int) and self.qr_max >= 1):
            raise ValueError(f"qr_max must be a whole number >= 1, not {self.qr_max!r}")
