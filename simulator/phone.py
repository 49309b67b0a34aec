"""The phone side: JSON calls for tests and benchmarks, and `/phone`, a page for a person.

| call | body | answer |
|---|---|---|
| GET /_phone/state | | {"qr", "qr_issued", "devices", "outage", ...} |
| POST /_phone/scan | {"qr": payload} | 200 {"linked": true, "device": {...}}; 404 never shown; 410 rotated out |
| POST /_phone/logout | {} or {"device": id} | {"removed": [ids]}; 404 unknown device |
| POST /_phone/outage | {"seconds": n} (0 ends it) | {"outage": bool, "seconds": n} |
| POST /_phone/flaky | {"count": n} | {"flaky": n} |
| POST /_phone/conflict | | {"conflict": true} |
| POST /_phone/reset | | {"reset": true} |

A body, when present, must be a JSON object. Errors: JSON 4xx `{"error", "message"}`.
"""

from flask import Blueprint, current_app, jsonify, render_template

from . import jsonapi

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


@bp.post("/_phone/reset")
def reset():
    jsonapi.body()
    _state().reset()
    return jsonify(reset=True)

