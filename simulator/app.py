"""`create_app(state)`: the Flask app serving the web side and the phone side of one state."""

from flask import Flask

from . import jsonapi, phone, web, webchat
from .state import SimState


def create_app(state: SimState) -> Flask:
    """Build the app around `state` (kept in `app.extensions["simulator"]`). Starts nothing."""
    app = Flask(__name__)
    app.extensions["simulator"] = state
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's setting
    app.register_blueprint(web.bp)
    app.register_blueprint(webchat.bp)
    app.register_blueprint(phone.bp)
    jsonapi.register(app)
    return app
