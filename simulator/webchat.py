"""The page's messaging endpoints: what WhatsApp Web asks its servers about chats.

Every call names the page's linked device (`device`, as the poll does): 401 `unlinked`
when it is not linked. During an outage none of these answer (see `server.py`), so the
page keeps what it typed and sends it later (`static/outbox.js`).

- `GET /_wa/chats?device=<n>`: `{"mseq", "chats": [summary, ...]}`, most recent first. A
  summary is `{"id": "<digits>", "title", "unread": n, "last": message or null}`.
- `GET /_wa/chat?device=<n>&with=<digits>`: `{"mseq", "chat": summary, "messages": [...]}`
  oldest first; 404 `not_on_whatsapp` for a number said not to be on WhatsApp; 400
  `bad_field` for something that is not a phone number.
- `POST /_wa/send {"device", "to", "text", "id", "t"}`: stores the message (`id` made by
  the page, uppercase hex; `t` when it was typed, ms) and answers `{"message": ...}`
  with ack `sent`, or the message stored before under that id (a retry sends nothing).
- `POST /_wa/read {"device", "chat"}`: the page shows that chat: `{"read": n}`.

A message is `{"id", "chat", "out", "text" (null for a photo), "kind", "ack", "read",
"t" (ms), "n" (server order), "seq" (its last change)}`; `chats.Conversations` has the
rules.
"""

from flask import Blueprint, current_app, jsonify, request

from . import chats, jsonapi
from .options import SimError

bp = Blueprint("webchat", __name__)


def _state():
    return current_app.extensions["simulator"]


def _device(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SimError(400, "bad_field", "'device' must be a whole number.")
    _state().require_device(value)
    return value


@bp.get("/_wa/chats")
def chat_list():
    _device(jsonapi.query_int("device"))
    return jsonify(_state().chats.chat_list())


@bp.get("/_wa/chat")
def history():
    _device(jsonapi.query_int("device"))
    chat = chats.check_number(request.args.get("with"), "with")
    return jsonify(_state().chats.history(chat))


@bp.post("/_wa/send")
def send():
    data = jsonapi.body()
    _device(data.get("device"))
    to = chats.check_number(data.get("to"), "to")
    text = jsonapi.string(data, "text", maximum=chats.TEXT_MAX)
    msg_id = data.get("id")
    if not isinstance(msg_id, str) or not chats.ID_RE.match(msg_id):
        raise SimError(400, "bad_field", "'id' must be 16 to 32 uppercase hex digits.")
    typed = data.get("t")
    if typed is not None and (isinstance(typed, bool) or not isinstance(typed, int)):
        raise SimError(400, "bad_field", "'t' must be a time in milliseconds.")
    return jsonify(message=_state().chats.send(to, text, msg_id, typed))


@bp.post("/_wa/read")
def read():
    data = jsonapi.body()
    _device(data.get("device"))
    chat = chats.check_number(data.get("chat"), "chat")
    return jsonify(read=_state().chats.mark_read(chat))
