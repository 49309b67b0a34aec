"""The web side: `/` (the WhatsApp Web page) and the endpoints its script calls.

- `GET /`: the page (`templates/index.html` + `static/*.js`), or the unsupported-browser
  page when the User-Agent contains `HeadlessChrome`. `?post_logout=1` is accepted and
  changes nothing: the page it loads has no login, so it shows a fresh QR. While the
  redesign is on (`/_phone/redesign`) the page starts in the new layout (`static/redesign.js`).
- `GET /send?phone=<digits>&text=<text>`: the same page; its script opens that chat once
  the chat list is shown (see `static/chat.js`).
- `GET /_wa/poll?page=<id>&since=<version>[&device=<n>[&mseq=<n>]][&watch=1]`: the live
  connection (long-poll, at most POLL_S seconds). Answers what the page should show (see
  `SimState.poll`; `watch=1`: a page in the redesigned layout, told only `redesign`); when
  an outage begins the connection is dropped without an answer; when the server stops, 503.
- `POST /_wa/login {"wid", "secret"}`: the login check a page with a stored login makes.
- `POST /_wa/logout {"wid", "secret"}`: the page's own "Log out".
- `POST /_wa/qr/reload {"page"}`: the "Click to reload QR code" button.
During an outage none of these answer (see `server.py`).
"""

import functools
import socket

from flask import Blueprint, current_app, jsonify, render_template, request

from . import codes, jsonapi
from .options import SimError
from .state import PAGE_ID_RE

POLL_S = 20.0

bp = Blueprint("web", __name__)


def _state():
    return current_app.extensions["simulator"]


@functools.lru_cache(maxsize=256)
def _matrix(payload: str) -> tuple:
    return tuple(codes.matrix(payload))


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
@bp.get("/send")
def index():
    if "HeadlessChrome" in request.headers.get("User-Agent", ""):
        return _no_store(current_app.make_response(render_template("unsupported.html")))
    options = _state().options
    # What the script must know before it draws anything; a global, not a DOM marker.
    config = {"webVersion": options.web_version, "pushname": options.pushname,
              "redesign": _state().redesign}
    return _no_store(current_app.make_response(render_template("index.html", config=config)))


def _page_id(value) -> str:
    if not isinstance(value, str) or not PAGE_ID_RE.match(value):
        raise SimError(400, "bad_page", "'page' must be 1 to 64 letters, digits, '-' or '_'.")
    return value


@bp.get("/_wa/poll")
def poll():
    page_id = _page_id(request.args.get("page"))
    since, device, mseq = jsonapi.query_int("since", 0), jsonapi.query_int("device"), jsonapi.query_int("mseq")
    state = _state()
    snap = state.poll(page_id, device, since, POLL_S, mseq, watch=request.args.get("watch") == "1")
    if snap is None:
        sock = request.environ.get("werkzeug.socket")
        if state.outage_active() and sock is not None:
            # The network is "down": end the connection without an answer, as a real
            # outage would, so that the page's fetch fails.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise SimError(503, "unavailable", "The server is not available.")
    qr = snap.get("qr")
    if qr is not None:
        qr["matrix"] = list(_matrix(qr["payload"]))
    return _no_store(jsonify(snap))


@bp.post("/_wa/login")
def login():
    data = jsonapi.body()
    wid = jsonapi.string(data, "wid", maximum=64)
    secret = jsonapi.string(data, "secret", optional=True)
    return jsonify(_state().login_check(wid, secret))


@bp.post("/_wa/logout")
def logout():
    data = jsonapi.body()
    wid = jsonapi.string(data, "wid", maximum=64)
    secret = jsonapi.string(data, "secret", optional=True)
    return jsonify(removed=_state().web_logout(wid, secret))


@bp.post("/_wa/qr/reload")
def reload_qr():
    _state().reload_qr(_page_id(jsonapi.body().get("page")))
    return jsonify(ok=True)
