"""The WhatsApp Web session server: `create_app()` builds it, nothing starts at import."""
from __future__ import annotations

import logging
import os

from flask import Flask

from .config import Config

log = logging.getLogger(__name__)


def create_app(test_config: Config | None = None) -> Flask:
    """Build the app. The session's threads start only in `start_services()`."""
    from .api import access, errors
    from .api import routes as api
    from .bus import Bus
    from .notify import Notifier
    from .session import Session

    config = test_config or Config.from_env(os.environ)
    app = Flask(__name__, template_folder=os.path.join(os.path.dirname(__file__), "..", "templates"))
    app.config["WHATSAPP"] = config
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's setting

    bus = Bus(config.client_id)
    session = Session(config, bus)
    notifier = Notifier(config, bus, session.snapshot)
    app.extensions["whatsapp"] = {"session": session, "bus": bus, "notifier": notifier}

    errors.register_error_handlers(app)
    access.init_app(app, config)
    app.register_blueprint(api.blueprint)
    notifier.register(app)
    return app


def start_services(app: Flask) -> None:
    """Start the notifier and the session owner (in the serving process, after any fork)."""
    parts = app.extensions["whatsapp"]
    parts["notifier"].start()
    parts["session"].start()


def begin_shutdown(app: Flask) -> None:
    """Start stopping without waiting: refuse commands, end event streams, close the browser."""
    parts = app.extensions["whatsapp"]
    parts["notifier"].close_streams()
    parts["session"].begin_stop()


def stop_services(app: Flask, timeout: float = 15.0) -> None:
    """Stop the session (browser closed properly), then the notifier. Bounded by `timeout`."""
    parts = app.extensions["whatsapp"]
    parts["session"].stop(timeout=timeout)
    parts["notifier"].stop(timeout=3.0)
