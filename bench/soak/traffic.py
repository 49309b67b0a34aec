"""The soak's steady traffic: messages POSTed to the server and messages the phone sends in.

`Outgoing` POSTs one message every `interval` seconds, each with its own Idempotency-Key, and
retries it (same key, same body) until the answer settles what happened to it:
- 200/202: `accepted` (the id is kept);
- 507 (disk full), 429, 503 `store_unavailable`: `refused` with that code, counted apart
  (nothing was stored, the API says) — but only when no earlier try of the same key may
  have reached the server; after such a try, only a 2xx settles it;
- refused connections and 503 `shutting_down` are retried (nothing was stored);
- anything else that may have reached the server (no answer in time, a reset, a 500) is
  ambiguous and retried with the same key; still unsettled after `settle_s`: `unknown`.
Texts are unique (`soak <seed>-<n> ...`, some with emoji, other scripts and newlines), so
the phone side's list says how often each one went out.

`Incoming` has the phone send one message every `interval` seconds (`sim.send`, through the
phone's link, which partitions do not cut) and notes each text the simulator took.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
from collections.abc import Callable

from simulator.testing import PhoneError, Sim

from .server import Server

RECIPIENTS = ("15550100001", "15550100002", "15550100003", "15550100004")
SENDERS = ("15550200001", "15550200002", "15550200003")
FLAVOURS = ("", " 👋🏽 emoji", " देवनागरी", "\nsecond line", " " + "x" * 300)
TRY_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 1.0


class RemoteSim(Sim):
    """`simulator.testing.Sim`'s phone calls, to a simulator in another process."""

    def __init__(self, url: str):  # no SimServer: only the HTTP calls are used
        self.url = url
        self.state = None  # type: ignore[assignment]
        self._server = None  # type: ignore[assignment]
        self.port = int(url.rstrip("/").rsplit(":", 1)[1])

    def state_changed(self, timeout: float) -> None:
        time.sleep(min(timeout, 0.05))  # polling interval of wait_qr's bounded wait

    def stop(self) -> None:
        pass  # the process is the runner's


@dataclasses.dataclass
class Out:
    n: int
    key: str
    to: str
    text: str
    first_try: float                 # monotonic
    outcome: str = "pending"         # pending | accepted | refused | unknown
    code: str | None = None          # the refusal's error code
    id: str | None = None
    settled: float | None = None     # monotonic time of the settling answer
    tries: int = 0


@dataclasses.dataclass
class In:
    n: int
    sender: str
    text: str
    sent: float                      # monotonic time the simulator took it


class Outgoing(threading.Thread):
    def __init__(self, server: Callable[[], Server], seed: int, interval: float, settle_s: float = 180.0):
        super().__init__(name="soak-outgoing", daemon=True)
        self.server, self.seed, self.interval, self.settle_s = server, seed, interval, settle_s
        self.ledger: list[Out] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.unexpected: list[str] = []   # answers the contract does not list

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            started = time.monotonic()
            n += 1
            out = Out(n, f"soak-{self.seed}-{n}", RECIPIENTS[n % len(RECIPIENTS)],
                      f"soak {self.seed}-{n:05d}{FLAVOURS[n % len(FLAVOURS)]}", started)
            with self.lock:
                self.ledger.append(out)
            self._settle(out)
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _settle(self, out: Out) -> None:
        maybe_stored = False
        deadline = out.first_try + self.settle_s
        while time.monotonic() < deadline:
            out.tries += 1
            verdict = self._try(out)
            if verdict == "accepted" or (verdict == "refused" and not maybe_stored):
                out.outcome, out.settled = verdict, time.monotonic()
                return
            maybe_stored = maybe_stored or verdict == "ambiguous"
            time.sleep(RETRY_PAUSE_S)  # the client's pause between retries (also while stopping)
        out.outcome, out.settled = "unknown", time.monotonic()

    def _try(self, out: Out) -> str:
        """accepted | refused | clean (nothing stored: retry) | ambiguous (retry)."""
        server = self.server()
        try:
            status, body = server.post("/api/whatsapp/messages", {"to": out.to, "text": out.text},
                                       headers={"Idempotency-Key": out.key}, timeout=TRY_TIMEOUT_S)
        except urllib.error.URLError as exc:
            return "clean" if isinstance(exc.reason, ConnectionRefusedError) else "ambiguous"
        except (OSError, ValueError, json.JSONDecodeError):  # reset, timeout, torn answer
            return "ambiguous"
        error = body.get("error") if isinstance(body, dict) else None
        if status in (200, 202) and isinstance(body, dict):
            out.id = body["id"]
            return "accepted"
        if status in (507, 429) or (status == 503 and error == "store_unavailable"):
            out.code = f"{status} {error}"
            return "refused"
        if status == 503 and error == "shutting_down":
            return "clean"
        if status == 401:  # the key file is being created by a fresh server: nothing stored
            return "clean"
        self.unexpected.append(f"message {out.n}: {status} {str(body)[:200]}")
        return "ambiguous"

    def snapshot(self) -> list[Out]:
        with self.lock:
            return list(self.ledger)


class Incoming(threading.Thread):
    def __init__(self, phone: Sim, seed: int, interval: float):
        super().__init__(name="soak-incoming", daemon=True)
        self.phone, self.seed, self.interval = phone, seed, interval
        self.ledger: list[In] = []
        self.failed: list[str] = []   # sends the simulator did not take (not counted as sent)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            started = time.monotonic()
            n += 1
            sender, text = SENDERS[n % len(SENDERS)], f"in {self.seed}-{n:05d} hello"
            try:
                self.phone.send(sender, text)
            except (PhoneError, OSError) as exc:
                self.failed.append(f"{text}: {exc!r}")
            else:
                with self.lock:
                    self.ledger.append(In(n, sender, text, time.monotonic()))
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def snapshot(self) -> list[In]:
        with self.lock:
            return list(self.ledger)
