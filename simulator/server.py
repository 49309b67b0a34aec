"""The simulator's HTTP server: werkzeug's threaded server on 127.0.0.1, in a thread.

Outage: while `/_phone/outage` is on, a request for anything but `/phone` and `/_phone/*`
gets no answer at all: the connection is closed before a byte is sent. Chromium then shows
its own error page (net::ERR_EMPTY_RESPONSE) for a navigation, which ChromeDriver reports
as a failed `get()`, and a page's fetch fails, as with a real network failure. Open live
connections are dropped the same way (`web.poll`).

Stop: `SimServer.stop()` wakes every waiting poll (they answer 503 at once), stops the
accept loop and closes the socket; handler threads are daemons and never block exit.
"""

import threading
from urllib.parse import urlsplit

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import create_app
from .state import SimState


def phone_side(path: str) -> bool:
    """True for the paths that stay reachable during an outage."""
    return path == "/phone" or path.startswith("/_phone/")


class Handler(WSGIRequestHandler):
    """Werkzeug's handler, plus the outage and quieter logs."""

    def run_wsgi(self):
        path = urlsplit(self.path).path
        if self.server.sim_state.outage_active() and not phone_side(path):  # type: ignore[attr-defined]
            self.close_connection = True
            return  # no status line, no body: the client sees an empty response
        super().run_wsgi()

    def log_request(self, code="-", size="-"):
        if self.server.sim_quiet or self.path.startswith("/_wa/poll"):  # type: ignore[attr-defined]
            return
        super().log_request(code, size)


class SimServer:
    """One simulator listening on `host:port` (0: a free port); `url` ends with '/'."""

    def __init__(self, state: SimState, port: int = 0, host: str = "127.0.0.1", quiet: bool = False):
        self.state = state
        self._server = make_server(host, port, create_app(state), threaded=True, request_handler=Handler)
        # What the handler needs, hung on its server (werkzeug hands handlers only that).
        self._server.sim_state = state  # type: ignore[attr-defined]
        self._server.sim_quiet = quiet  # type: ignore[attr-defined]
        self.port = self._server.port
        self.url = f"http://{host}:{self.port}/"
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> "SimServer":
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                    name=f"simulator:{self.port}", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0):
        """Idempotent; returns once the port is closed (or after `timeout`)."""
        with self._lock:
            self.state.stop()
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout)
                self._thread = None
            self._server.server_close()
