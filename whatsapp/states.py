"""Status and reason names of the contract, and the immutable status snapshot."""
from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime


class Status(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    QR = "qr"
    SYNCING = "syncing"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


class Reason(str, enum.Enum):
    """Why the session last left `ready` or could not reach it (contract, Status details)."""

    LOGGED_OUT = "logged_out"
    BROWSER_CRASHED = "browser_crashed"
    PAGE_UNRESPONSIVE = "page_unresponsive"
    NETWORK = "network"
    CONFLICT = "conflict"
    AUTH_FAILED = "auth_failed"
    PROFILE_LOCKED = "profile_locked"
    LAUNCH_FAILED = "launch_failed"
    UNSUPPORTED_BROWSER = "unsupported_browser"
    UNRECOGNIZED_PAGE = "unrecognized_page"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None, timespec: str = "seconds") -> str | None:
    """ISO 8601 in UTC with a `Z`, or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class Account:
    wid: str | None = None      # "<phone>:<device>@c.us", the link this login belongs to
    phone: str | None = None
    pushname: str | None = None
    platform: str | None = None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What `/status` shows. Replaced whole by the owner thread; readers never lock."""

    status: Status = Status.STOPPED
    reason: Reason | None = None
    account: Account = Account()
    has_session: bool = False
    qr: str | None = None
    reconnect_attempts: int = 0
    max_reconnect_attempts: int = 5
    is_shutting_down: bool = False
    monitor_active: bool = False
    last_ready_at: datetime | None = None
    next_reconnect_at: datetime | None = None
    last_error: str | None = None
    since: datetime = dataclasses.field(default_factory=utcnow)

    def replace(self, **changes) -> Snapshot:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        body = {
            "status": self.status.value,
            "session": {
                "hasSession": self.has_session,
                "phone": self.account.phone,
                "platform": self.account.platform,
                "connected": self.status is Status.READY,
                "pushname": self.account.pushname,
            },
            "reason": self.reason.value if self.reason else None,
            "reconnectAttempts": self.reconnect_attempts,
            "maxReconnectAttempts": self.max_reconnect_attempts,
            "nextReconnectAt": iso(self.next_reconnect_at),
            "isShuttingDown": self.is_shutting_down,
            "monitorActive": self.monitor_active,
            "lastReadyAt": iso(self.last_ready_at),
            "lastError": self.last_error,
            "statusSince": iso(self.since),
            "qrAvailable": self.qr is not None,
        }
        body["timestamp"] = iso(utcnow())
        return body
