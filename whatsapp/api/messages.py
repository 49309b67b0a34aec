"""`/api/whatsapp/messages`: accept messages into the outbox, list, read and cancel them.

`POST` validates, writes the message durably (the store commits before it returns) and
answers 202 without touching the browser, in any status but shutting down; the session's
owner thread sends it when the session is ready. Nothing here calls Selenium.

| answer | when |
|---|---|
| 202 + message, `Location` | accepted |
| 200 + the first answer's message | the same `Idempotency-Key` and body again (nothing sent twice) |
| 400 `invalid_request` | a field (or the key, or a query parameter) is wrong: the message names it |
| 413 | over the body cap (access.MAX_BODY_BYTES) |
| 422 `idempotency_mismatch` | the same key with another body |
| 429 `outbox_full` | `WHATSAPP_OUTBOX_MAX` messages already wait |
| 503 `shutting_down`, `store_unavailable` | stopping; the store cannot be reached |
| 507 `insufficient_storage` | the store's disk is full (nothing was stored) |
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from flask import Blueprint, current_app, jsonify, request

from ..messages import (
    IdempotencyMismatch,
    InvalidCursor,
    InvalidRequest,
    MessageStore,
    NotCancellable,
    NotFound,
    OutboxFull,
    Status,
    StoreFull,
    StoreUnavailable,
    body_hash,
    check_idempotency_key,
    parse_new_message,
)
from ..states import utcnow
from .errors import ApiError

blueprint = Blueprint("messages", __name__, url_prefix="/api/whatsapp")
PATH = "/api/whatsapp/messages"


def _parts() -> dict[str, Any]:
    return current_app.extensions["whatsapp"]


def _store() -> MessageStore:
    store = _parts()["store"]
    if store is None:
        raise ApiError(503, f"The message store could not be opened: {_parts()['store_error']}", "store_unavailable")
    return store


def _stored(call: Callable[[], Any]) -> Any:
    """Run a store call, turning its failures into the contract's error answers."""
    try:
        return call()
    except StoreFull as exc:
        raise ApiError(507, f"{exc} Nothing was stored; try again when there is room.",
                       "insufficient_storage") from None
    except StoreUnavailable as exc:
        raise ApiError(503, f"{exc} Nothing was changed; try again.", "store_unavailable",
                       headers={"Retry-After": "5"}) from None


def _invalid(field: str, message: str) -> NoReturn:
    raise ApiError(400, f"{field}: {message}", "invalid_request")


@blueprint.post("/messages")
def accept():
    session = _parts()["session"]
    if session.snapshot().is_shutting_down:
        raise ApiError(503, "The server is shutting down; try again when it is back.", "shutting_down")
    if not request.is_json:
        raise ApiError(415, "Send the message as JSON with Content-Type: application/json.")
    body = request.get_json(silent=True)
    if body is None:
        _invalid("body", "not valid JSON")
    try:
        new = parse_new_message(body)
        key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    except InvalidRequest as exc:
        _invalid(exc.field, exc.message)
    config = current_app.config["WHATSAPP"]
    store = _store()
    try:
        message, created = _stored(lambda: store.accept(new.to, new.text, key, body_hash(new.to, new.text),
                                                        utcnow(), config.outbox_max))
    except OutboxFull:
        raise ApiError(429, f"The outbox is full ({config.outbox_max} messages wait, WHATSAPP_OUTBOX_MAX); "
                       "try again later.", "outbox_full", headers={"Retry-After": "30"}) from None
    except IdempotencyMismatch as exc:
        raise ApiError(422, f"This Idempotency-Key was used for another message ({exc.message.id}) "
                       "with a different body.", "idempotency_mismatch") from None
    if created:
        session.outbox_changed()
    response = jsonify(message.to_json())
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"{PATH}/{message.id}"
    return response


@blueprint.get("/messages/<message_id>")
def get(message_id: str):
    store = _store()
    try:
        message = _stored(lambda: store.get(message_id))
    except NotFound:
        raise ApiError(404, f"No message {message_id}.", "not_found") from None
    return jsonify(message.to_json())


@blueprint.delete("/messages/<message_id>")
def cancel(message_id: str):
    store = _store()
    try:
        message = _stored(lambda: store.cancel(message_id, utcnow()))
    except NotFound:
        raise ApiError(404, f"No message {message_id}.", "not_found") from None
    except NotCancellable as exc:
        raise ApiError(409, f"Message {message_id} is {exc.message.status.value}: only a queued message "
                       "can be cancelled.", "not_cancellable") from None
    _parts()["bus"].publish("message_failed", **message.to_json())
    _parts()["session"].outbox_changed()
    return jsonify(message.to_json())


@blueprint.get("/messages")
def list_messages():
    args = request.args
    unknown = sorted(set(args) - {"direction", "status", "limit", "after"})
    if unknown:
        _invalid(unknown[0], "unknown query parameter (direction, status, limit, after)")
    direction = args.get("direction", "out")
    if direction not in ("out", "in"):
        _invalid("direction", "must be out or in")
    status = args.get("status")
    if status is not None:
        if direction == "in":
            _invalid("status", "incoming messages have no status")
        if status not in {s.value for s in Status}:
            _invalid("status", f"must be one of {', '.join(s.value for s in Status)}")
    raw_limit = args.get("limit", "100")
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
        _invalid("limit", "must be a whole number from 1 to 500")
    store = _store()
    try:
        page, after = _stored(lambda: store.list_messages(direction, status, int(raw_limit), args.get("after")))
    except InvalidCursor:
        _invalid("after", "not a cursor this server gave")
    return jsonify({"messages": [message.to_json() for message in page], "next": after})
