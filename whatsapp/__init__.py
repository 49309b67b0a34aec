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
    from .api import messages as messages_api
    from .api import routes as api
    from .bus import Bus
    from .notify import Notifier
    from .session import Session

    config = test_config or Config.from_env(os.environ)
    app = Flask(__name__, template_folder=os.path.join(os.path.dirname(__file__), "..", "templates"))
    app.config["WHATSAPP"] = config
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's setting

    bus = Bus(config.client_id)
    store, store_error = _open_store(config)
    session = Session(config, bus, store=store)
    notifier = Notifier(config, bus, session.snapshot, outbox=session.outbox_status)
    app.extensions["whatsapp"] = {"session": session, "bus": bus, "notifier": notifier,
                                  "store": store, "store_error": store_error}

    errors.register_error_handlers(app)
    access.init_app(app, config)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(messages_api.blueprint)
    notifier.register(app)
    return app


def _open_store(config: Config):
    """The message store (SQLite in the data folder, or PostgreSQL); (None, why) when it
    cannot be opened: the server still runs (the login matters most) and says why."""
    from .messages import StoreUnavailable, open_store
    from .persistence.profile import private_dir

    if config.database_url:
        from .messages.bounded import mask_url

        log.info("messages and backups in PostgreSQL %s (from %s)", mask_url(config.database_url),
                 config.database_url_source)
    try:
        private_dir(config.session_dir)
        return open_store(client_id=config.client_id, data_dir=config.session_dir,
                          database_url=config.database_url, timeout_s=config.database_timeout_s), None
    except (StoreUnavailable, OSError) as exc:
        log.error("the message store cannot be opened; POST /messages answers 503 until it can: %s", exc)
        return None, str(exc)


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
