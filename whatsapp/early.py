"""The parts that hold the session (its bus, the message store, the session itself), built
and optionally started before the web app is imported.

gunicorn imports the app in the worker (`server.py` -> Flask, the API, their dependencies:
about half a second). Started from the worker's `post_fork` hook instead, the session
launches Chromium while that import runs, so a restart reaches `ready` about as fast as a
bare Selenium script (issue 20). `create_app` then takes the running parts over.

    early.start(config)          # gunicorn.conf.py, post_fork: in the worker, after the fork
    parts = early.take(config)   # create_app: the running parts, or None (then it builds them)

Nothing here imports Flask. Events the session publishes before anyone subscribes are kept
by the bus for the first subscriber (the notifier), so webhooks and metrics miss nothing.
"""
from __future__ import annotations

import dataclasses
import logging

from .bus import Bus
from .config import Config
from .messages import MessageStore, StoreCorrupt, StoreUnavailable, open_store
from .persistence.profile import private_dir
from .session import Session

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Parts:
    config: Config
    bus: Bus
    store: MessageStore | None
    store_error: str | None
    session: Session


_started: Parts | None = None


def build(config: Config) -> Parts:
    """The parts, not started. The message store is opened now (SQLite) or lazily (PostgreSQL);
    when it cannot be, the server still runs (the login matters most) and says why."""
    if config.database_url:
        from .messages.bounded import mask_url

        log.info("messages and backups in PostgreSQL %s (from %s)", mask_url(config.database_url),
                 config.database_url_source)
    store: MessageStore | None = None
    error: str | None = None
    try:
        private_dir(config.session_dir)
        store = open_store(client_id=config.client_id, data_dir=config.session_dir,
                           database_url=config.database_url, timeout_s=config.database_timeout_s)
    except StoreCorrupt as exc:  # a person must look: it may hold accepted messages
        log.error("the message store cannot be opened; POST /messages answers 503 until it is repaired: %s", exc)
        error = str(exc)
    except (StoreUnavailable, OSError) as exc:
        log.error("the message store cannot be opened yet; POST /messages answers 503 until it can: %s", exc)
        if config.database_url:  # PostgreSQL itself is reached lazily: this is the folder
            error = str(exc)
        else:  # a full disk, a folder not writable yet: every call tries again (once a second at most)
            from .messages.sqlite import SqliteMessageStore, default_path

            store = SqliteMessageStore(default_path(config.session_dir, config.client_id), config.client_id,
                                       busy_timeout_s=config.database_timeout_s, open_now=False)
    bus = Bus(config.client_id)
    return Parts(config, bus, store, error, Session(config, bus, store=store))


# How long `start` waits for the session to reach Chromium's own start. Before that the
# session thread does ~50 ms of short reads (lock, orphans, profile markers, chromedriver's
# spawn); run beside the app's import, each read waits up to 5 ms for the interpreter, which
# made that part ~0.3 s (issue 20). A restore from a backup may take longer: the bound
# keeps /status from waiting for it.
SETTLE_S = 1.0


def start(config: Config, settle_s: float = SETTLE_S) -> Parts:
    """Build the parts and start the session now (in the serving process); return once the
    session has asked for the browser (or waits for a command), or after `settle_s`."""
    global _started
    parts = build(config)
    parts.session.start()
    _started = parts
    parts.session.wait_settled(settle_s)
    return parts


def take(config: Config) -> Parts | None:
    """The parts `start` started for this same configuration, handed over once; else None."""
    global _started
    parts, _started = _started, None
    if parts is not None and parts.config != config:
        log.warning("the session started early was for another configuration; stopping it")
        stop(parts)
        return None
    return parts


def stop_unclaimed(timeout: float = 15.0) -> None:
    """The worker is going before the app took the parts (it failed to import): stop them."""
    global _started
    parts, _started = _started, None
    if parts is not None:
        stop(parts, timeout)


def stop(parts: Parts, timeout: float = 15.0) -> None:
    parts.session.stop(timeout=timeout)
    if parts.store is not None:
        parts.store.close()
