"""`python -m simulator --port 3002 [options]`: run the simulator until SIGTERM or Ctrl+C.

`--host` is the address to listen on (default 127.0.0.1; the soak runs it inside a network
namespace with `--host 0.0.0.0`, where only that namespace's addresses exist).

Exits 0 on SIGTERM/SIGINT, within about a second even with live connections open; exits 2
with one line on a bad option.
"""

import argparse
import logging
import signal
import sys
import threading

from .options import WEB_VERSIONS, Options
from .server import SimServer
from .state import SimState


def parse(argv) -> tuple[int, Options, bool, str]:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=3002, help="port to listen on (0: any free one)")
    p.add_argument("--phone", default=defaults.phone, help="the phone's number, digits only")
    p.add_argument("--pushname", default=defaults.pushname, help="the account's display name")
    p.add_argument("--platform", default=defaults.platform, help="the phone's platform")
    p.add_argument("--qr-ttl", type=float, default=defaults.qr_ttl, help="seconds a rotated QR lives")
    p.add_argument("--qr-first-ttl", type=float, default=defaults.qr_first_ttl,
                   help="seconds the first QR of a round lives")
    p.add_argument("--qr-max", type=int, default=defaults.qr_max,
                   help='codes shown before the "Click to reload QR code" button')
    p.add_argument("--sync-seconds", type=float, default=defaults.sync_seconds,
                   help='length of the "Loading your chats" screen')
    p.add_argument("--web-version", type=int, choices=WEB_VERSIONS, default=defaults.web_version,
                   help="which WhatsApp Web markup to mirror (message ids, send button, rows)")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be 0 to 65535, not {args.port}")
    try:
        options = Options(args.phone, args.pushname, args.platform, args.qr_ttl,
                          args.qr_first_ttl, args.qr_max, args.sync_seconds, args.web_version)
    except ValueError as exc:
        p.error(str(exc))
    return args.port, options, args.quiet, args.host


def main(argv=None) -> int:
    port, options, quiet, host = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stop = threading.Event()
    # Signal handlers only set the flag; the main thread does the stopping.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = SimServer(SimState(options), port=port, host=host, quiet=quiet).start()
    print(f"simulator: WhatsApp Web at {server.url}, phone at {server.url}phone", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print("simulator: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
