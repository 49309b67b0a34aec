"""The parts that hold the session (its bus, the message store, the session itself), built
and optionally started before the web app is imported.

gunicorn imports the app in the worker (`server.py` -> Flask, the API, their dependencies:
about 0.4 s of CPU). Started from the worker's `post_fork` hook instead, the session launches
Chromium first, and the worker imports the app when the session has settled
(`Session.wait_settled`): on a restart (a login in the profile) once the launch is over, so
that the import runs while the page syncs its chats instead of taking CPU from Chromium's own
start on a small machine; on a first start as soon as Chromium's start is asked, since the QR
follows the page load at once and nobody sees it until the app serves it (issue 20).
`create_app` then takes the running parts over.

    signal.signal(SIGTERM, early.ask_stop)   # post_fork, first (SIGINT, SIGQUIT too): see `ask_stop`
    early.start(config)          # gunicorn.conf.py, post_fork: in the worker, after the fork
    parts = early.take(config)   # create_app: the running parts, or None (then it builds them)

Nothing here imports Flask, and importing this module imports nothing of the session's
(`build` does): gunicorn's master imports it to hand its handler to the worker. Events the
session publishes before anyone subscribes are kept by the bus for the first subscriber (the
notifier), so webhooks and metrics miss nothing.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from .config import Config

if TYPE_CHECKING:
    from .bus import Bus
    from .messages import MessageStore
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
_stop_asked = False


def build(config: Config) -> Parts:
    """The parts, not started. The message store is not opened yet: `Session.start` makes the
    data folder owner-only, then opens the store beside the browser's launch
    (`MessageStore.open_soon`). When the store cannot be used, the server still runs (the
    login matters most) and says why."""
    from .bus import Bus
    from .messages import StoreUnavailable, open_store
    from .session import Session

    if config.database_url:
        from .messages.bounded import mask_url

        log.info("messages and backups in PostgreSQL %s (from %s)", mask_url(config.database_url),
                 config.database_url_source)
    store: MessageStore | None = None
    error: str | None = None
    try:
        store = open_store(client_id=config.client_id, data_dir=config.session_dir,
                           database_url=config.database_url, timeout_s=config.database_timeout_s,
                           open_now=False)
    except StoreUnavailable as exc:  # this SQLite is too old for the store
        log.error("the message store cannot be used; POST /messages answers 503: %s", exc)
        error = str(exc)
    bus = Bus(config.client_id)
    return Parts(config, bus, store, error, Session(config, bus, store=store))


# How long `start` waits for the session to settle (see `Session.wait_settled`). A restore
# from a backup before the launch, or a browser that takes long to start, may take longer:
# the bound keeps /status from waiting for them. A restart's launch is over ~1 s after the
# fork here.
SETTLE_S = 2.0


def start(config: Config, settle_s: float = SETTLE_S) -> Parts:
    """Build the parts and start the session now (in the serving process); return once the
    session has settled (`Session.wait_settled`), or after `settle_s`. After
    `ask_stop` the session is not started, or its shutdown waits behind the launch of the
    moment (the wait is the same: the worker then exits, see gunicorn.conf.py)."""
    global _started
    parts = build(config)
    _started = parts
    if not _stop_asked:  # a SIGTERM from here on begins the started session's stop
        parts.session.start()
        parts.session.wait_settled(settle_s)
    return parts


def ask_stop(signum: int | None = None, frame: object = None) -> None:
    """The handler of SIGTERM (and SIGINT, SIGQUIT) while the worker boots: from the start
    of post_fork until gunicorn installs the worker's own handlers.

    Until then the worker has the master's handlers, copied by the fork, which only queue the
    signal for a master loop that never runs in the worker: the signal would be lost, and the
    worker would run on with its browser until the master's SIGKILL, `graceful_timeout` later.
    Signal-safe: it sets a flag and queues the session's shutdown (`Session.begin_stop`)."""
    global _stop_asked
    _stop_asked = True
    parts = _started
    if parts is not None:
        parts.session.begin_stop()


def stop_asked() -> bool:
    """Whether a stop signal came while the worker booted (see `ask_stop`)."""
    return _stop_asked


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
