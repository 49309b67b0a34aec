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

Each route's inputs and answers are declared once (`ACCEPT`, `GET`, `CANCEL`, `LIST`, with
the models of `schemas.py`); the handlers read their inputs and answer through them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app

from ..messages import (
    IdempotencyMismatch,
    InvalidCursor,
    MessageStore,
    NotCancellable,
    NotFound,
    OutboxFull,
    StoreCorrupt,
    StoreFull,
    StoreUnavailable,
    body_hash,
)
from ..states import utcnow
from .errors import ApiError
from .operations import Operation, Reply, error
from .schemas import ListQuery, Message, MessageHeaders, MessagePage, NewMessageBody, OutgoingMessage

blueprint = Blueprint("messages", __name__, url_prefix="/api/whatsapp")
PATH = "/api/whatsapp/messages"

_ID = {"message_id": {"type": "string", "description": "The message's `id`."}}
_LOCATION = {"Location": "`/api/whatsapp/messages/<id>`: where the message can be read."}
_FOLLOW = {"get": ("messages.get", {"message_id": "$response.body#/id"}),
           "cancel": ("messages.cancel", {"message_id": "$response.body#/id"})}
_UNAVAILABLE = error("The store cannot be reached (`store_unavailable`); nothing was changed.",
                     "store_unavailable", headers={"Retry-After": "Seconds to wait before trying again."})
_FULL_DISK = error("The store's disk is full; nothing was stored.", "insufficient_storage")

ACCEPT = Operation(
    "Accept a message into the outbox",
    tags=("messages",), body=NewMessageBody, headers=MessageHeaders,
    description="Written durably before the answer leaves, in any status but shutting down, and sent "
                "exactly once, in the order accepted, as soon as the session is ready.",
    replies={
        202: Reply("Accepted: queued.", OutgoingMessage, headers=_LOCATION, links=_FOLLOW),
        200: Reply("The same `Idempotency-Key` and body again: the first answer; nothing is sent twice.",
                   OutgoingMessage, headers=_LOCATION, links=_FOLLOW),
        400: error("A field, the body or the `Idempotency-Key` is wrong; the message names it.",
                   "invalid_request"),
        415: error("The body is not `application/json`.", "unsupported_media_type"),
        422: error("This `Idempotency-Key` was used for another body.", "idempotency_mismatch"),
        429: error("`WHATSAPP_OUTBOX_MAX` messages already wait.", "outbox_full",
                   headers={"Retry-After": "Seconds to wait before trying again."}),
        503: error("The server is shutting down, or the store cannot be reached; nothing was stored.",
                   "shutting_down", "store_unavailable",
                   headers={"Retry-After": "Seconds to wait before trying again (store_unavailable)."}),
        507: _FULL_DISK,
    })
GET = Operation(
    "Read a message", tags=("messages",), path=_ID,
    replies={200: Reply("The message, outgoing or incoming.", Message),
             404: error("No message has this id.", "not_found"), 503: _UNAVAILABLE})
CANCEL = Operation(
    "Cancel a queued message", tags=("messages",), path=_ID,
    description="A queued message fails with `cancelled` (and `message_failed` is published).",
    replies={200: Reply("Cancelled: the message, now `failed`.", OutgoingMessage),
             404: error("No message has this id.", "not_found"),
             409: error("The message is `sending` or later: it can no longer be cancelled.", "not_cancellable"),
             503: _UNAVAILABLE, 507: _FULL_DISK})
LIST = Operation(
    "List messages, oldest first", tags=("messages",), query=ListQuery,
    replies={200: Reply("One page; `next` is the cursor of the following one.", MessagePage),
             400: error("A query parameter is wrong or unknown; the message names it.", "invalid_request"),
             503: _UNAVAILABLE})


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
    except StoreCorrupt as exc:  # not temporary: no "try again" (the text says what to do)
        raise ApiError(503, f"{exc}. Nothing was changed.", "store_unavailable") from None
    except StoreUnavailable as exc:
        raise ApiError(503, f"{exc} Nothing was changed; try again.", "store_unavailable",
                       headers={"Retry-After": "5"}) from None


@blueprint.post("/messages")
@ACCEPT
def accept():
    session = _parts()["session"]
    if session.snapshot().is_shutting_down:
        raise ApiError(503, "The server is shutting down; try again when it is back.", "shutting_down")
    new: NewMessageBody = ACCEPT.read_body()
    key = ACCEPT.read_headers().idempotency_key
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
        session.outbox_changed(queued=1)
    return ACCEPT.reply(202 if created else 200, message.to_json(), {"Location": f"{PATH}/{message.id}"})


@blueprint.get("/messages/<message_id>")
@GET
def get(message_id: str):
    store = _store()
    try:
        message = _stored(lambda: store.get(message_id))
    except NotFound:
        raise ApiError(404, f"No message {message_id}.", "not_found") from None
    return GET.reply(200, message.to_json())


@blueprint.delete("/messages/<message_id>")
@CANCEL
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
    _parts()["session"].outbox_changed(queued=-1)
    return CANCEL.reply(200, message.to_json())


@blueprint.get("/messages")
@LIST
def list_messages():
    query: ListQuery = LIST.read_query()
    store = _store()
    try:
        page, after = _stored(lambda: store.list_messages(query.direction, query.status, query.limit, query.after))
    except InvalidCursor:
        raise ApiError(400, "after: not a cursor this server gave", "invalid_request") from None
    return LIST.reply(200, {"messages": [message.to_json() for message in page], "next": after})
