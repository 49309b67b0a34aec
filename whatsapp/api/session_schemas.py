"""The session's answers: `GET /status` and its blocks, what a command answers, one event of
`/events`. Declarations like those of `schemas.py` (see there): `/status` and its blocks may
gain fields (`Open`); a command's answer and an event are fixed."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..states import Reason, Status
from .schemas import Fixed, Open, Time


class SessionInfo(Open):
    has_session: bool = Field(description="A saved login exists on disk.")
    phone: str | None
    platform: str | None
    connected: bool
    pushname: str | None


class RecordBlock(Open):
    """The session record: when linked, restores with and without a QR, the last clean stop."""

    linked_at: Time | None
    wid: str | None
    phone: str | None
    last_started_at: Time | None
    last_ready_at: Time | None
    last_clean_shutdown_at: Time | None
    restored_without_qr: Annotated[int, Field(ge=0)]
    restores_from_backup: Annotated[int, Field(ge=0)]
    last_reason: str | None
    logged_out_at: Time | None
    last_backup_at: Time | None
    last_backup_name: str | None
    login_since: Time | None
    login_source: str | None
    expects_login: bool
    record_note: str | None
    cleared_elsewhere_at: Time | None


class BackupsBlock(Open):
    """Verified local backups of the login (empty before the session first starts)."""

    count: Annotated[int, Field(ge=0)] | None = None
    latest: str | None = None
    latest_size: Annotated[int, Field(ge=0)] | None = None
    last_error: str | None = None


class DatabaseBlock(Open):
    """PostgreSQL backups and ownership (only with a database URL)."""

    database: str | None = Field(default=None, examples=["ok", "unknown", "unavailable"])
    owner: bool | None = None
    last_error: str | None = None
    last_error_at: Time | None = None
    last_backup_at: Time | None = None


class OutboxBlock(Open):
    queued: Annotated[int, Field(ge=0)]
    sending: Annotated[int, Field(ge=0)]
    oldest_queued_age_s: Annotated[float, Field(ge=0)] | None = Field(alias="oldestQueuedAgeS")


class WebhooksBlock(Open):
    receivers: Annotated[int, Field(ge=0)]
    queued: Annotated[int, Field(ge=0)]
    delivered: Annotated[int, Field(ge=0)]
    failed: Annotated[int, Field(ge=0)]
    dropped: Annotated[int, Field(ge=0)]
    last_error: str | None
    last_error_at: Time | None


class NotificationsBlock(Open):
    webhooks: WebhooksBlock
    listeners: Annotated[int, Field(ge=0)] = Field(description="Open `/events` streams.")
    max_listeners: Annotated[int, Field(ge=0)]


class StatusBody(Open):
    """`GET /status`: the session as it is now, answered at once whatever the browser does."""

    model_config = ConfigDict(title="Status")

    status: Status
    session: SessionInfo
    reason: Reason | None = Field(description="Why the session last left `ready` or could not reach it.")
    reconnect_attempts: Annotated[int, Field(ge=0)]
    max_reconnect_attempts: Annotated[int, Field(ge=0)]
    next_reconnect_at: Time | None
    is_shutting_down: bool
    monitor_active: bool
    last_ready_at: Time | None
    last_error: str | None
    status_since: Time
    qr_available: bool
    timestamp: Time
    record: RecordBlock
    backups: BackupsBlock
    database: DatabaseBlock = Field(default_factory=lambda: DatabaseBlock(), description="Only with a database URL.")
    outbox: OutboxBlock
    notifications: NotificationsBlock


class CommandAnswer(Fixed):
    """What a command answers once done."""

    success: Literal[True]
    message: str
    status: Status = Field(description="The status right after the command.")
    timestamp: Time


def _absent_not_null(schema: dict[str, Any]) -> None:
    """For `X | None = None` fields that are left out rather than null: document X."""
    schema.pop("default", None)
    branches = [branch for branch in schema.pop("anyOf", []) if branch != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])


class StreamEvent(BaseModel):
    """One Server-Sent Event of `/events` as a client reads it (in OpenAPI 3.1 the schema of
    `text/event-stream` describes each event)."""

    model_config = ConfigDict(extra="forbid", title="Event")

    event: str = Field(examples=["status", "qr", "ready", "message_sent", "message_received"])
    id: Annotated[str, Field(pattern=r"^[0-9]+$", description="The event's `seq`.")]
    data: Annotated[str, Field(json_schema_extra={"contentMediaType": "application/json"},
                               description="`{\"event\", \"seq\", \"timestamp\", \"data\"}` as a webhook body; the "
                                           "first event is `status` with the snapshot and `initial: true`.")]
    retry: Annotated[int, Field(ge=0)] | None = Field(default=None, json_schema_extra=_absent_not_null,
                                                      description="On the first event: 3000 (ms).")
