"""The /api/whatsapp blueprint: handlers read the session's snapshot or submit a command.

No handler ever calls Selenium: the session's owner thread does, so `/status` answers at
once whatever the browser is doing.
"""
from __future__ import annotations

import base64
import io
import secrets
import time

import qrcode
from flask import Blueprint, current_app, jsonify, make_response, render_template, request

from ..session import CommandError, ShuttingDown
from ..states import Status
from .errors import ApiError

blueprint = Blueprint("whatsapp", __name__, url_prefix="/api/whatsapp")

# Commands answer within this bound whatever the browser does (contract: within 20 s).
COMMAND_DEADLINE_S = 18.0
QR_RELOAD_WAIT_S = 8.0      # expired codes: the page's reload button brings a new one in ~1 s


def _session():
    return current_app.extensions["whatsapp"]["session"]


@blueprint.get("/status")
def status():
    body = _session().status_json()
    body["notifications"] = current_app.extensions["whatsapp"]["notifier"].status()
    return jsonify(body)


def _check_body() -> None:
    """Commands take no parameters: an empty body or a JSON object, nothing else."""
    if not request.get_data(cache=True):  # also a chunked body, which has no Content-Length
        return
    if not request.is_json:
        raise ApiError(415, "This endpoint takes no body, or a JSON object with Content-Type: application/json.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    if body:
        raise ApiError(400, f"Unknown field(s): {', '.join(sorted(map(str, body)))}; this endpoint takes none.")


def _run(command: str):
    _check_body()
    try:
        result = _session().submit(command, timeout=COMMAND_DEADLINE_S)
    except ShuttingDown:
        raise ApiError(503, "The server is shutting down; try again when it is back.") from None
    except TimeoutError:
        raise ApiError(504, f"{command} did not finish within {COMMAND_DEADLINE_S:.0f} s; see /status.",
                       "timeout") from None
    except CommandError as exc:
        raise ApiError(exc.status, str(exc), exc.error) from None
    snapshot = _session().snapshot()
    return jsonify({"success": True, "message": result, "status": snapshot.status.value,
                    "timestamp": _session().status_json()["timestamp"]})


@blueprint.post("/initialize")
def initialize():
    return _run("initialize")


@blueprint.post("/disconnect")
def disconnect():
    return _run("disconnect")


@blueprint.post("/clear-session")
def clear_session():
    return _run("clear-session")


def _qr_png(payload: str) -> bytes:
    image = qrcode.make(payload, box_size=8, border=4, error_correction=qrcode.constants.ERROR_CORRECT_L)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _current_qr() -> str:
    """The code shown now. When the codes ran out ("Click to reload QR code"), asking for one
    is what makes the session click it: wait (bounded) for the fresh code rather than 409."""
    session = _session()
    session.note_qr_viewed()  # someone is looking: expired codes get reloaded
    deadline = time.monotonic() + QR_RELOAD_WAIT_S
    snapshot = session.snapshot()
    while snapshot.status is Status.QR and snapshot.qr is None and time.monotonic() < deadline:
        session.wait_for_change(deadline - time.monotonic())
        snapshot = session.snapshot()
    if snapshot.qr is None or snapshot.status is not Status.QR:
        raise ApiError(409, f"No QR code is shown now (status is {snapshot.status.value}).", "no_qr")
    return snapshot.qr


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/qr")
def qr():
    wants_json = request.args.get("format") == "json" or (
        request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json")
    if wants_json:
        payload = _current_qr()
        image = base64.b64encode(_qr_png(payload)).decode()
        return _no_store(jsonify({"qr": payload, "image": f"data:image/png;base64,{image}"}))
    nonce = secrets.token_urlsafe(16)
    response = make_response(render_template("qr.html", nonce=nonce,
                                             client_id=current_app.config["WHATSAPP"].client_id))
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return _no_store(response)


@blueprint.get("/qr.png")
def qr_png():
    response = make_response(_qr_png(_current_qr()))
    response.headers["Content-Type"] = "image/png"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return _no_store(response)


@blueprint.get("/screenshot")
def screenshot():
    """What the browser shows now, as PNG (taken by the owner thread between its steps)."""
    try:
        png = _session().screenshot(timeout=COMMAND_DEADLINE_S)
    except ShuttingDown:
        raise ApiError(503, "The server is shutting down.") from None
    except TimeoutError:
        raise ApiError(504, "The browser did not answer in time; see /status.", "timeout") from None
    except CommandError as exc:
        raise ApiError(exc.status, str(exc), exc.error) from None
    if not png:
        raise ApiError(409, f"No browser is running (status is {_session().snapshot().status.value}).",
                       "no_browser")
    response = make_response(png)
    response.headers["Content-Type"] = "image/png"
    return _no_store(response)
