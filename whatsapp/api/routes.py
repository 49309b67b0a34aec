"""The /api/whatsapp blueprint: handlers read the session's snapshot or submit a command.

No handler ever calls Selenium: the session's owner thread does, so `/status` answers at
once whatever the browser is doing. Each route is declared once (`operations.Operation`,
models in `schemas.py`): its inputs are read and its JSON answers sent through that
declaration, and the OpenAPI document (`openapi.py`, nested here) is generated from it.
"""
from __future__ import annotations

import base64
import io
import secrets
import time

import qrcode
from flask import Blueprint, current_app, make_response, render_template, request

from ..session import CommandError, ShuttingDown
from ..states import Status
from . import openapi
from .errors import ApiError
from .operations import Operation, Reply, error
from .schemas import CommandBody, QrJson, QrQuery
from .session_schemas import CommandAnswer, StatusBody

blueprint = Blueprint("whatsapp", __name__, url_prefix="/api/whatsapp")
blueprint.register_blueprint(openapi.blueprint)

# Commands answer within this bound whatever the browser does (contract: within 20 s).
COMMAND_DEADLINE_S = 18.0
QR_RELOAD_WAIT_S = 8.0      # expired codes: the page's reload button brings a new one in ~1 s


def _session():
    return current_app.extensions["whatsapp"]["session"]


STATUS = Operation("The session now", tags=("session",),
                   description="Answers at once whatever the browser is doing (hung, crashed, restarting).",
                   replies={200: Reply("The status snapshot and its blocks.", StatusBody)})


def _command(summary: str, description: str) -> Operation:
    return Operation(summary, tags=("session",), description=description, body=CommandBody, body_required=False,
                     replies={200: Reply("Done; `status` is the status right after.", CommandAnswer),
                              400: error("The body is not valid JSON or not an empty object.", "invalid_request"),
                              415: error("A body that is not `application/json`.", "unsupported_media_type"),
                              503: error("The server is shutting down, or the session does not run in this "
                                         "process.", "unavailable"),
                              504: error("The command did not finish within 18 s; see `/status`.", "timeout")})


INITIALIZE = _command("Start the session", "Restore the saved login, or show a QR. Idempotent: while starting "
                      "or ready it starts no second browser.")
DISCONNECT = _command("Log out and delete the login", "Log out of WhatsApp (the phone's linked-device entry goes "
                      "away), close the browser, delete the saved login; status `stopped`. Messages still queued "
                      "fail with `logged_out`.")
CLEAR_SESSION = _command("Close and delete the login", "Close the browser and delete the saved login even when "
                         "logging out is impossible; status `stopped`.")
QR = Operation(
    "The QR code: a page for a person, or JSON", tags=("qr",), query=QrQuery,
    description="HTML (a page that follows the rotating code and becomes a console once linked) unless "
                "`Accept` prefers `application/json` or `format=json` is given.",
    replies={200: Reply("The page, or the code as JSON.", QrJson, media={"text/html": None}),
             409: error("JSON asked for and no QR is shown now.", "no_qr")})
QR_PNG = Operation("The QR code as PNG", tags=("qr",),
                   replies={200: Reply("The code shown now.", media={"image/png": None}),
                            409: error("No QR is shown now.", "no_qr")})
SCREENSHOT = Operation(
    "What the browser shows now, as PNG", tags=("session",),
    replies={200: Reply("A screenshot taken by the session's owner thread.", media={"image/png": None}),
             409: error("No browser is running.", "no_browser"),
             503: error("The server is shutting down, or the session does not run in this process.", "unavailable"),
             504: error("The browser did not answer in time; see `/status`.", "timeout")})


@blueprint.get("/status")
@STATUS
def status():
    body = _session().status_json()
    body["notifications"] = current_app.extensions["whatsapp"]["notifier"].status()
    return STATUS.reply(200, body)


def _run(operation: Operation, command: str):
    operation.read_body()  # commands take no parameters: none, or an empty JSON object
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
    return operation.reply(200, {"success": True, "message": result, "status": snapshot.status.value,
                                 "timestamp": _session().status_json()["timestamp"]})


@blueprint.post("/initialize")
@INITIALIZE
def initialize():
    return _run(INITIALIZE, "initialize")


@blueprint.post("/disconnect")
@DISCONNECT
def disconnect():
    return _run(DISCONNECT, "disconnect")


@blueprint.post("/clear-session")
@CLEAR_SESSION
def clear_session():
    return _run(CLEAR_SESSION, "clear-session")


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
@QR
def qr():
    wants_json = QR.read_query().format == "json" or (
        request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json")
    if wants_json:
        payload = _current_qr()
        image = base64.b64encode(_qr_png(payload)).decode()
        return _no_store(QR.reply(200, {"qr": payload, "image": f"data:image/png;base64,{image}"}))
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
@QR_PNG
def qr_png():
    response = make_response(_qr_png(_current_qr()))
    response.headers["Content-Type"] = "image/png"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return _no_store(response)


@blueprint.get("/screenshot")
@SCREENSHOT
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
