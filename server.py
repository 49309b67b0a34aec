"""Entry point: `gunicorn server:app` (see Procfile), or `python server.py` for development."""
import os
import signal
import sys

from whatsapp import configure_logging, create_app, start_services, stop_services
from whatsapp.config import Config, ConfigError

try:
    config = Config.from_env(os.environ)
    configure_logging(config)
    app = create_app(config)  # may refuse a damaged key file (also a ConfigError)
except ConfigError as exc:
    # One line naming the variable, and nothing started.
    print(f"configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)


def main() -> None:
    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl+C as well, set here: a shell that starts a command in the background (`make run &`,
    # nohup, CI runners) hands it SIGINT ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, _terminate)
    start_services(app)
    try:
        app.run(host="0.0.0.0", port=app.config["WHATSAPP"].port, threaded=True,
                use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        stop_services(app)


if __name__ == "__main__":
    main()
