"""Run the simulator inside a test or benchmark process.

    from simulator.testing import start

    with start(qr_ttl=0.5, qr_first_ttl=1, sync_seconds=0.2) as sim:
        driver.get(sim.url)                     # "http://127.0.0.1:<port>/"
        payload = sim.wait_qr()                 # the code a page shows now (waits for one)
        sim.scan(payload)                       # link it -> {"linked": True, "device": {...}}
        sim.phone_state()                       # {"qr", "qr_issued", "devices", "outage", ...}
        sim.logout()                            # phone removes every device (or device=id)
        sim.outage(5); sim.outage(0)            # WhatsApp unreachable for 5 s; 0 ends it
        sim.flaky(2)                            # next 2 login checks fail temporarily
        sim.conflict()                          # open linked pages: "open in another window"
        sim.redesign(True)                      # WhatsApp ships a layout with none of the known markers
        sim.redesign(False)                     # ... and back (open pages reload into the old one)
        sim.reset()                             # forget devices, end outage, flakiness, redesign
        sim.reset(messages=True)                # ... and go back to the demo conversations
        sim.messages()                          # [{"to", "text", "waId", "ack", "at", ...}]: all sent
        sim.ack(wa_id=w, ack="delivered")       # or sim.ack(to="15550002222", ack="read")
        sim.unregistered(["15550009999"])       # not on WhatsApp: /send shows the invalid dialog
        sim.send("15550002222", "hi", name="Carol")   # someone writes to the account
        sim.send("15550002222", None, kind="image")   # a photo: a row with no text
        sim.inbox()                             # [{"from", "text", "waId", "read", ...}]: all received

`start(port=0, quiet=True, **options)` takes the `Options` fields (phone, pushname,
platform, qr_ttl, qr_first_ttl, qr_max, sync_seconds, web_version) and returns a running `Sim` on a
free port of 127.0.0.1, served from a daemon thread of this process. Every convenience
call goes through the real HTTP API with stdlib urllib (5 s timeout) and returns the JSON
answer; a 4xx/5xx raises `PhoneError` (`.status`, `.body`). `sim.request(method, path,
body)` returns `(status, json)` without raising. `sim.stop()` (or leaving the `with`) ends
the server and its live connections; it is idempotent. `sim.state` is the `SimState`.
"""

import json
import time
import urllib.error
import urllib.request

from .options import Options
from .server import SimServer
from .state import SimState

TIMEOUT_S = 5.0


class PhoneError(Exception):
    """A phone call answered with an error status."""

    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class Sim:
    def __init__(self, server: SimServer):
        self._server = server
        self.state = server.state
        self.port = server.port
        self.url = server.url

    # -- HTTP ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None,
                timeout: float = TIMEOUT_S) -> tuple[int, object]:
        """One HTTP call; `body` is sent as JSON (`raw` as is). Returns (status, JSON or None)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, None

    def _call(self, method: str, path: str, body=None):
        status, answer = self.request(method, path, body)
        if status >= 400:
            raise PhoneError(status, answer)
        return answer

    # -- the phone -----------------------------------------------------------------------

    def phone_state(self) -> dict:
        return self._call("GET", "/_phone/state")

    def scan(self, payload: str) -> dict:
        return self._call("POST", "/_phone/scan", {"qr": payload})

    def logout(self, device: int | None = None) -> dict:
        return self._call("POST", "/_phone/logout", {} if device is None else {"device": device})

    def outage(self, seconds: float) -> dict:
        return self._call("POST", "/_phone/outage", {"seconds": seconds})

    def flaky(self, count: int) -> dict:
        return self._call("POST", "/_phone/flaky", {"count": count})

    def conflict(self) -> dict:
        return self._call("POST", "/_phone/conflict", {})

    def redesign(self, on: bool = True) -> dict:
        """A test control, not a marker: the web side serves a layout with none of the
        documented markers (open pages switch to it live) until `redesign(False)`."""
        return self._call("POST", "/_phone/redesign", {"on": on})

    def reset(self, messages: bool = False) -> dict:
        return self._call("POST", "/_phone/reset", {"messages": True} if messages else {})

    # -- messaging -----------------------------------------------------------------------

    def messages(self) -> list[dict]:
        """Every message the account sent, as the server saw them, in order."""
        return self._call("GET", "/_phone/messages")["messages"]

    def inbox(self) -> list[dict]:
        """Every message sent to the account, with `read` (a page opened the chat)."""
        return self._call("GET", "/_phone/inbox")["messages"]

    def ack(self, wa_id: str | None = None, to: str | None = None, ack: str = "delivered") -> list[dict]:
        """The recipient got (`delivered`) or read (`read`) one message or all to `to`."""
        body: dict[str, str | None] = {"ack": ack}
        body.update({"waId": wa_id} if wa_id is not None else {"to": to})
        return self._call("POST", "/_phone/ack", body)["messages"]

    def unregistered(self, numbers) -> list[str]:
        return self._call("POST", "/_phone/unregistered", {"numbers": list(numbers)})["unregistered"]

    def send(self, from_: str, text: str | None, name: str | None = None, kind: str | None = None) -> dict:
        """`from_` sends the account a message; returns it as stored (with its `waId`)."""
        body = {"from": from_}
        for key, value in (("text", text), ("name", name), ("kind", kind)):
            if value is not None:
                body[key] = value
        return self._call("POST", "/_phone/send", body)["message"]

    def wait_qr(self, timeout: float = 10.0, *, other_than: str | None = None) -> str:
        """The code shown now, waiting (bounded) until there is one (and not `other_than`)."""
        deadline = time.monotonic() + timeout
        while True:
            qr = self.phone_state()["qr"]
            if qr and qr != other_than:
                return qr
            if time.monotonic() > deadline:
                raise TimeoutError(f"no new QR code shown within {timeout} s")
            self.state_changed(0.05)

    def state_changed(self, timeout: float):
        """Block until the state changes or `timeout` passes (a wait, not a sleep)."""
        with self.state.changed:
            self.state.changed.wait(timeout)

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self):
        self._server.stop()

    def __enter__(self) -> "Sim":
        return self

    def __exit__(self, *exc):
        self.stop()


def start(port: int = 0, quiet: bool = True, **options) -> Sim:
    """A running simulator; see the module docstring."""
    server = SimServer(SimState(Options(**options)), port=port, quiet=quiet)
    return Sim(server.start())
