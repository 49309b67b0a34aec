"""The phone side: JSON calls for tests and benchmarks, and `/phone`, a page for a person.

| call | body | answer |
|---|---|---|
| GET /_phone/state | | {"qr", "qr_issued", "devices", "outage", ...} |
| POST /_phone/scan | {"qr": payload} | 200 {"linked": true, "device": {...}}; 404 never shown; 410 rotated out |
| POST /_phone/logout | {} or {"device": id} | {"removed": [ids]}; 404 unknown device |
| POST /_phone/outage | {"seconds": n} (0 ends it) | {"outage": bool, "seconds": n} |
| POST /_phone/flaky | {"count": n} | {"flaky": n} |
| POST /_phone/conflict | | {"conflict": true} |
| POST /_phone/redesign | {"on": true/false} | {"redesign": bool}; a new WhatsApp build (see below) |
| POST /_phone/reset | {} or {"messages": true} | {"reset": true}; devices and faults go, conversations stay unless "messages" (then back to the demo chats) |
| GET /_phone/messages | | {"messages": [{"to", "text", "waId", "ack", "at", "id", "deliveredAt", "readAt"}]}: all the account sent, in the server's order |
| POST /_phone/ack | {"waId": id, "ack": "delivered"/"read"} or {"to": digits, "ack": ...} | {"messages": [those concerned]}; 404 unknown waId / nothing sent to that number |
| POST /_phone/unregistered | {"numbers": [digits, ...]} | {"unregistered": [every such number]} |
| POST /_phone/send | {"from": digits, "text": ..., "name"?: contact name, "kind"?: "text"/"image"} | {"message": inbox entry}; an image has no text |
| GET /_phone/inbox | | {"messages": [{"from", "name", "text", "kind", "waId", "read", "readAt", "at"}]}: all sent to the account; `read` once a page opened the chat |

`/_phone/redesign` is a test control, not a marker: while on, the web side serves a layout with
none of the documented markers (open pages switch to it through their live connection, later
loads start in it, storage is untouched); off, open pages reload into the old layout. `reset`
turns it off too.

A body, when present, must be a JSON object. Errors: JSON 4xx `{"error", "message"}`.
Times are ISO 8601 UTC. Messages of the demo chats (`seed.py`) are in no list here.
"""

from flask import Blueprint, current_app, jsonify, render_template

from . import chats, jsonapi
from .options import SimError

bp = Blueprint("phone", __name__)


def _state():
    return current_app.extensions["simulator"]


@bp.get("/phone")
def page():
    return render_template("phone.html")


@bp.get("/_phone/state")
def state():
    return jsonify(_state().phone_state())


@bp.post("/_phone/scan")
def scan():
    payload = jsonapi.string(jsonapi.body(), "qr", maximum=2048)
    return jsonify(linked=True, device=_state().scan(payload))


@bp.post("/_phone/logout")
def logout():
    data = jsonapi.body()
    device = None
    if data.get("device") is not None:
        device = jsonapi.number(data, "device", integer=True, maximum=10**9)
    return jsonify(removed=_state().phone_logout(device))


@bp.post("/_phone/outage")
def outage():
    seconds = jsonapi.number(jsonapi.body(), "seconds", integer=False, maximum=86400)
    _state().set_outage(seconds)
    return jsonify(outage=seconds > 0, seconds=seconds)


@bp.post("/_phone/flaky")
def flaky():
    count = jsonapi.number(jsonapi.body(), "count", integer=True, maximum=10**6)
    _state().set_flaky(count)
    return jsonify(flaky=count)


@bp.post("/_phone/conflict")
def conflict():
    jsonapi.body()
    _state().conflict()
    return jsonify(conflict=True)


@bp.post("/_phone/redesign")
def redesign():
    on = jsonapi.body().get("on")
    if not isinstance(on, bool):
        raise SimError(400, "bad_field", "'on' must be true or false.")
    _state().set_redesign(on)
    return jsonify(redesign=on)


@bp.post("/_phone/reset")
def reset():
    messages = jsonapi.body().get("messages", False)
    if not isinstance(messages, bool):
        raise SimError(400, "bad_field", "'messages' must be true or false.")
    _state().reset(messages=messages)
    return jsonify(reset=True)


@bp.get("/_phone/messages")
def messages():
    return jsonify(messages=_state().chats.sent())


@bp.get("/_phone/inbox")
def inbox():
    return jsonify(messages=_state().chats.inbox())


@bp.post("/_phone/ack")
def ack():
    data = jsonapi.body()
    ack_name = jsonapi.string(data, "ack", maximum=16)
    if ("waId" in data) == ("to" in data):
        raise SimError(400, "bad_field", "Give exactly one of 'waId' and 'to'.")
    if "waId" in data:
        acked = _state().chats.ack(ack=ack_name, wa_id=jsonapi.string(data, "waId", maximum=128))
    else:
        acked = _state().chats.ack(ack=ack_name, to=chats.check_number(data["to"], "to"))
    return jsonify(messages=acked)


@bp.post("/_phone/unregistered")
def unregistered():
    numbers = jsonapi.body().get("numbers")
    if not isinstance(numbers, list) or len(numbers) > 10_000:
        raise SimError(400, "bad_field", "'numbers' must be a list of phone numbers.")
    checked = [chats.check_number(n, "numbers") for n in numbers]
    return jsonify(unregistered=_state().chats.set_unregistered(checked))


@bp.post("/_phone/send")
def send():
    data = jsonapi.body()
    sender = chats.check_number(data.get("from"), "from")
    kind = data.get("kind") or "text"
    if kind not in chats.KINDS:
        raise SimError(400, "bad_field", f"'kind' must be one of {', '.join(chats.KINDS)}.")
    if kind == "text":
        text = jsonapi.string(data, "text", maximum=chats.TEXT_MAX)
    elif data.get("text") is not None:
        raise SimError(400, "bad_field", "A photo carries no 'text' here.")
    else:
        text = None
    name = jsonapi.string(data, "name", optional=True, maximum=128)
    return jsonify(message=_state().chats.receive(sender, text, name, kind))

