"""The WhatsApp Web session server: `create_app()` builds it, nothing starts at import.

Importing the package imports no web framework: gunicorn's master (which reads the
configuration through it) stays light, and the session can start before Flask loads
(`early`).
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .config import Config

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(config: Config) -> None:
    """The server's log lines on stderr at LOG_LEVEL. Called before anything logs:
    in gunicorn's worker that is `post_fork`, where the session starts (a no-op the second
    time, as `logging.basicConfig` is once the root logger has a handler)."""
    logging.basicConfig(level=config.log_level, format=LOG_FORMAT)


def create_app(test_config: Config | None = None) -> Flask:
    """Build the app. The session's threads start only in `start_services()` (or earlier, in
    `early.start`, whose running parts this takes over)."""
    from flask import Flask

    from . import early
    from .api import access, errors
    from .api import messages as messages_api
    from .api import routes as api
    from .notify import Notifier

    config = test_config or Config.from_env(os.environ)
    app = Flask(__name__, template_folder=os.path.join(os.path.dirname(__file__), "..", "templates"))
    app.config["WHATSAPP"] = config
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's setting

    parts = early.take(config) or early.build(config)
    session = parts.session
    notifier = Notifier(config, parts.bus, session.snapshot, outbox=session.outbox_status)
    app.extensions["whatsapp"] = {"session": session, "bus": parts.bus, "notifier": notifier,
                                  "store": parts.store, "store_error": parts.store_error}

    errors.register_error_handlers(app)
    access.init_app(app, config)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(messages_api.blueprint)
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
    if parts["store"] is not None:
        parts["store"].close()
