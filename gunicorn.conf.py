"""gunicorn settings for the Procfile: `gunicorn -c gunicorn.conf.py server:app`.

The numbers come from the deploy platform's rules (see README, Deployment).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # started from another folder too

import gunicorn.util

from whatsapp import early  # imports nothing of the session's: the worker's first handler
from whatsapp.api import keys
from whatsapp.config import Config, ConfigError


def _write_error(sock, status_int, reason, mesg):
    # Imported on first use, in the worker: the master never loads Flask (it would delay
    # the fork, and with it the browser's launch).
    from whatsapp.api import errors

    errors.gunicorn_write_error(sock, status_int, reason, mesg)


# gunicorn answers requests it cannot parse itself, with HTML: make those JSON as well.
gunicorn.util.write_error = _write_error

# Validate the configuration in the master, before anything starts: one line naming the
# variable, exit code 2, no worker booted.
try:
    _config = Config.from_env(os.environ)
except ConfigError as exc:
    print(f"configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)

# Locked by default: without WHATSAPP_API_KEY (and outside WHATSAPP_LOCAL_ONLY) the key is the
# one generated in <dir>/api-key. Made (or checked) here, in the master, so that an unusable
# key file is one line and exit code 2 as well; the worker reads it again and logs where it is.
if _config.api_key is None and not _config.local_only:
    try:
        keys.load_or_create(_config.api_key_path)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)

bind = f"0.0.0.0:{_config.port}"
# One worker, whatever WEB_CONCURRENCY says (Heroku sets it to 2 on small dynos): every
# worker would own a browser, and two browsers on one profile corrupt the login.
workers = 1
# gthread keeps the worker's heartbeat while handler threads wait on the browser, and lets
# /status answer while a command runs. Its subclass reads each request whole in the event loop
# (within 5 s) before a thread takes it: clients trickling bytes never hold a thread.
worker_class = "whatsapp.serving.BufferingWorker"
threads = 8
timeout = 60
# Heroku sends SIGKILL 30 s after SIGTERM; the session's own stop is bounded well below 20 s.
graceful_timeout = 20
# Several servers on one machine would share ~/.gunicorn/gunicorn.ctl.
control_socket_disable = True
# The app must be imported in the worker: the session's threads belong there.
preload_app = False
accesslog = "-" if os.environ.get("WHATSAPP_ACCESS_LOG", "0") == "1" else None
errorlog = "-"
loglevel = _config.log_level.lower()


def post_fork(server, worker):
    """Start the session in the worker right after the fork, before the app is imported:
    Chromium launches first, and the app imports once the session has settled (on a restart
    after the launch's page load, on a first start once Chromium is asked for; at most
    `early.SETTLE_S`, see whatsapp/early.py). `create_app` takes the running session over;
    `post_worker_init` then starts the rest."""
    import signal

    # First: until gunicorn installs the worker's handlers, a stop signal would be lost
    # (early.ask_stop). SIGTERM is the platform's; SIGINT and SIGQUIT gunicorn's quick stop.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, early.ask_stop)
    from whatsapp.web import version

    # On a first start it runs `chromium --version` (~0.15 s) while the rest imports.
    version.warm_up_soon(_config.chrome_bin, _config.session_dir)
    from whatsapp import configure_logging

    configure_logging(_config)  # before the session's first line (the store it opens)
    early.start(_config)
    if early.stop_asked():  # a stop signal while booting: the app is not imported at all
        sys.exit(0)  # gunicorn then runs worker_exit, which stops the session


def post_worker_init(worker):
    """Start the notifier (the session runs since post_fork) once the worker's signal
    handlers exist.

    gunicorn runs no hook when the worker receives SIGTERM; it first waits up to
    graceful_timeout for open connections, and an open event stream (the QR page) would
    hold it there. So gunicorn's own handler is wrapped: the stop begins at once (event
    streams end, commands are refused, the browser starts closing), then gunicorn's graceful
    stop runs as usual and `worker_exit` waits for the session to finish.
    """
    import signal

    from whatsapp import begin_shutdown, start_services

    start_services(worker.wsgi)
    if early.stop_asked():  # a stop signal between post_fork and gunicorn's own handlers
        worker.alive = False  # its loop ends at once; worker_exit stops everything
        begin_shutdown(worker.wsgi)
    gunicorn_handler = worker.handle_exit

    def handle_exit(signum, frame):
        begin_shutdown(worker.wsgi)  # only sets flags and queues a command: signal-safe
        gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, handle_exit)


def worker_exit(server, worker):
    """Close the browser properly (its storage is flushed) before the worker goes, also when
    the app never loaded (the session started in post_fork)."""
    from whatsapp import stop_services

    app = getattr(worker, "wsgi", None)
    if app is not None:
        stop_services(app)
    early.stop_unclaimed()
