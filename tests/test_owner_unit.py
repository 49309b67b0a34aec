"""The owner thread's plumbing with a fake world: commands, stops, kills (no browser).

The real `Session` runs its real thread and state machine; only the effects (what touches
the browser and the disk) and the keeper are fakes, so that a test can hold the owner
inside a "driver call" or a "database call" at will.
"""
from __future__ import annotations

import threading
import time

import pytest
from harness import wait_for

from whatsapp.bus import Bus
from whatsapp.config import Config
from whatsapp.session import owner as owner_module
from whatsapp.session import steps as S
from whatsapp.session.effects import Effects
from whatsapp.session.owner import Session
from whatsapp.states import Account, Status


class FakeKeeper:
    def __init__(self):
        self.calls: list[str] = []

    def start(self): pass
    def stop(self, timeout): pass
    def expects_login(self): return False
    def restore_unresolved(self): return False
    def cleared_elsewhere(self): return False
    def seconds_to_backup(self, ready_for): return float("inf")
    def status(self): return {}
    def on_clean_shutdown(self, *args): self.calls.append("clean_shutdown")


class FakeEffects:
    """Runs actions instantly, except `hold` (an action class): that one blocks until
    `release` is set, inside a driver call when `in_driver` says so."""

    def __init__(self, hold=None, in_driver: bool = True):
        self.hold, self.in_driver = hold, in_driver
        self.release, self.holding = threading.Event(), threading.Event()
        self.ran: list[str] = []
        self.kills = 0
        self.in_driver_call = False
        self.killed = False

    def prepare(self): pass
    def saved_login(self): return False

    def kill_browser(self):
        self.kills += 1
        self.release.set()  # a killed browser makes the hung call fail at once

    def run(self, action):
        self.ran.append(type(action).__name__)
        if self.hold is not None and isinstance(action, self.hold):
            self.in_driver_call = self.in_driver
            self.holding.set()
            assert self.release.wait(10), "never released"
            self.in_driver_call = False
            from whatsapp.failures import BrowserGone
            return S.Broke(BrowserGone("killed")) if self.kills else S.Launched(0.1, False)
        if isinstance(action, S.Launch):
            return S.Launched(0.1, False)
        if isinstance(action, S.ReadPage):
            from machine_world import qr
            return S.PageRead(qr())
        if isinstance(action, S.LogOutPage):
            return S.PageLoggedOut(False)
        return None


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setattr(owner_module, "PICKUP_S", 0.2)
    made = []

    def make(effects: FakeEffects, auto_init: bool = False) -> Session:
        config = Config(session_dir=tmp_path, auto_init=auto_init)
        running = Session(config, Bus("test"), keeper=FakeKeeper())
        running.effects = effects
        running.start()
        made.append(running)
        return running

    yield make
    for running in made:
        running.stop(timeout=5)


def test_a_stop_kills_a_browser_whose_driver_call_hangs(session):
    effects = FakeEffects(hold=S.Launch, in_driver=True)
    running = session(effects)
    threading.Thread(target=running.submit, args=("initialize", 5), daemon=True).start()
    assert effects.holding.wait(5)
    assert "Browser closed" in running.submit("clear-session", timeout=5)
    assert effects.kills == 1


def test_a_stop_never_kills_the_browser_while_the_owner_is_busy_elsewhere(session):
    effects = FakeEffects(hold=S.Launch, in_driver=False)  # e.g. a backup copy, a database call
    running = session(effects)
    threading.Thread(target=running.submit, args=("initialize", 5), daemon=True).start()
    assert effects.holding.wait(5)
    timer = threading.Timer(1.0, effects.release.set)  # the busy step ends by itself
    timer.start()
    try:
        running.submit("clear-session", timeout=5)
    finally:
        timer.cancel()
    assert effects.kills == 0


def test_a_command_that_timed_out_never_runs_later(session):
    effects = FakeEffects(hold=S.Launch, in_driver=False)
    running = session(effects)
    threading.Thread(target=running.submit, args=("initialize", 5), daemon=True).start()
    assert effects.holding.wait(5)
    with pytest.raises(TimeoutError):
        running.submit("clear-session", timeout=0.3)  # the API answers 504
    effects.release.set()
    running.submit("initialize", timeout=5)  # the owner has gone past the queue
    assert "DeleteLogin" not in effects.ran, "the abandoned clear-session ran after its 504"
    assert running.snapshot().status is not Status.STOPPED


def test_a_second_sigterm_inside_the_first_queues_one_shutdown(session):
    running = session(FakeEffects())
    running.begin_stop()
    running.begin_stop()
    shutdowns = [p for p in list(running._queue.queue) if p.command is S.Command.SHUTDOWN]
    assert len(shutdowns) <= 1 and running.snapshot().is_shutting_down


def test_a_killed_browser_is_never_called_a_clean_shutdown(tmp_path):
    keeper = FakeKeeper()
    effects = Effects(Config(session_dir=tmp_path), keeper)  # type: ignore[arg-type]
    effects.killed = True
    effects.run(S.CleanShutdown(account=Account(), ready_for=100))
    assert keeper.calls == []
    effects.killed = False
    effects.run(S.CleanShutdown(account=Account(), ready_for=100))
    assert keeper.calls == ["clean_shutdown"]


def test_a_bug_in_an_action_goes_to_failed_and_the_thread_lives_on(session):
    class Buggy(FakeEffects):
        def run(self, action):
            if isinstance(action, S.Launch):
                raise KeyError("a bug of ours")
            return super().run(action)

    running = session(Buggy())
    running.submit("initialize", timeout=5)  # the launch itself runs next, on the owner's clock
    wait_for(lambda: running.snapshot().status is Status.FAILED, 5, message="failed after the bug")
    assert "internal error" in (running.snapshot().last_error or "")
    due = running.machine.due
    assert due is not None and due - time.monotonic() > 60, "not retried at once (after WHATSAPP_FAILED_RETRY_S)"
    assert running.submit("initialize", timeout=5) == "Starting the session.", "the owner lives on"


def test_an_idle_owner_is_settled_at_once(session):
    running = session(FakeEffects(), auto_init=False)
    assert running.wait_settled(5)


def test_the_start_is_not_settled_while_its_launch_runs(session):
    # Held, the launch is not over: post_fork's wait must time out (bounded) rather than
    # return; once it is over (whatever its outcome), the start is settled.
    effects = FakeEffects(hold=S.Launch, in_driver=False)
    running = session(effects, auto_init=True)
    assert effects.holding.wait(5)
    assert not running.wait_settled(0.3)
    effects.release.set()
    assert running.wait_settled(5), "idle again after the launch"
