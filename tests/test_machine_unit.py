"""The session's state machine, driven by scripted page states with zero delays.

Every row of the fault table, every command in every phase, and a property: no sequence of
page states, failures and commands removes the login unless it holds a phone logout,
`disconnect` or `clear-session`. The same scenarios run end to end in
`test_e2e_faults.py` against real Chromium; here each takes microseconds.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from machine_world import World, chats, conflict, loading, qr, qr_expired, screen

from whatsapp.failures import (
    BrowserGone,
    LaunchFailed,
    NetworkDown,
    PageUnresponsive,
    ProfileLocked,
)
from whatsapp.session import steps as S
from whatsapp.session.machine import Phase, Timing
from whatsapp.states import Reason, Status
from whatsapp.web.page import Screen

INIT, DISCONNECT, CLEAR, SHUTDOWN = (S.Command.INITIALIZE, S.Command.DISCONNECT, S.Command.CLEAR,
                                     S.Command.SHUTDOWN)


def ready_world(**kwargs) -> World:
    """A session that restored its saved login and is ready."""
    outbox = kwargs.pop("outbox", 0)
    world = World(expects_login=True, pages=[loading(), chats()], **kwargs)
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.READY)
    world.outbox = outbox
    return world


def login_untouched(world: World) -> bool:
    return not world.of(S.DeleteLogin) and not world.of(S.ForgetLogin)


# -- start, link, restore ------------------------------------------------------------------------

def test_a_fresh_profile_offers_the_qr_and_follows_its_rotation():
    world = World(pages=[screen(Screen.UNKNOWN), qr("2@a"), qr("2@a"), qr("2@b")])
    assert world.ask(INIT) == "Starting the session."
    world.run_until(lambda: world.machine.status is Status.QR)
    assert world.statuses == [Status.STARTING, Status.QR]
    world.run_steps(3)
    assert [d["qr"] for d in world.published("qr")] == ["2@a", "2@b"]
    assert world.machine.due is not None, "a QR page keeps being read"
    assert not world.of(S.RestoreNext), "nothing was expected: no restore"


def test_linking_makes_ready_and_records_the_new_link():
    world = World(pages=[qr(), qr(), loading(), chats()])
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.READY)
    assert world.statuses == [Status.STARTING, Status.QR, Status.SYNCING, Status.READY]
    assert world.of(S.MarkReady)[-1].linked_now is True
    assert world.published("ready")[-1]["restored"] is False


def test_a_saved_login_is_ready_without_a_qr():
    world = ready_world()
    assert world.statuses == [Status.STARTING, Status.SYNCING, Status.READY]
    assert world.of(S.MarkReady)[-1].linked_now is False
    assert world.published("ready")[-1]["restored"] is True
    assert world.machine.due == pytest.approx(world.now + 30), "probed every monitor interval"


def test_syncing_longer_than_its_timeout_is_a_failure_not_a_logout():
    world = World(expects_login=True, pages=[loading()],
                  timing=Timing(sync_timeout_s=5, reconnect_step_s=1, reconnect_max_delay_s=1))
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.RECONNECTING, steps=1000)
    assert world.last_update("reason") is Reason.PAGE_UNRESPONSIVE
    assert login_untouched(world)


# -- the fault table ---------------------------------------------------------------------------

@pytest.mark.parametrize("failure, reason", [
    (BrowserGone("the browser is gone"), Reason.BROWSER_CRASHED),           # browser or chromedriver killed
    (PageUnresponsive("chromedriver did not answer"), Reason.PAGE_UNRESPONSIVE),  # driver frozen
    (PageUnresponsive("Timed out receiving message from renderer"), Reason.PAGE_UNRESPONSIVE),  # renderer hung
])
def test_a_broken_browser_is_relaunched_on_the_saved_login(failure, reason):
    world = ready_world()
    world.pages.extend([failure, loading(), chats()])
    world.pages.popleft()  # drop the chats kept as "last page"
    world.run_until(lambda: world.machine.status is Status.RECONNECTING)
    assert world.last_update("reason") is reason
    assert world.of(S.Close), "the broken browser is closed first"
    world.run_until(lambda: world.machine.status is Status.READY)
    assert Status.QR not in world.statuses and login_untouched(world)
    assert world.published("ready")[-1]["restored"] is True


def test_backoff_is_linear_and_capped_then_failed_then_retried_when_reachable():
    world = World(expects_login=True, pages=[screen(Screen.ERROR)])
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.FAILED, steps=100)
    assert [p["delay"] for p in world.published("reconnecting")] == [1, 2, 3]
    assert world.last_update("reason") is Reason.NETWORK
    assert world.of(S.ReleaseLock), "failed lets another process take the profile"
    # WHATSAPP_FAILED_RETRY_S: look again later, start a fresh round once WhatsApp answers.
    failed_at = world.now
    world.reachable = False
    world.tick()
    assert world.of(S.CheckReachable) and world.now == pytest.approx(failed_at + 60)
    assert world.machine.status is Status.FAILED
    world.reachable, world.pages = True, __import__("collections").deque([loading(), chats()])
    world.run_until(lambda: world.machine.status is Status.READY)
    assert world.machine.backoff.attempts == 0 and login_untouched(world)


def test_a_single_unanswered_reachability_check_is_not_an_outage():
    world = ready_world(reachable=__import__("collections").deque([False, True, True]))
    world.run_steps(5)
    assert world.machine.status is Status.READY and not world.published("reconnecting")


def test_an_outage_seen_by_two_checks_in_a_row_reconnects_without_a_qr():
    from collections import deque
    world = ready_world(reachable=deque([False, False, True]))
    world.pages = deque([chats(), chats(), screen(Screen.ERROR), loading(), chats()])
    world.run_until(lambda: world.machine.status is Status.RECONNECTING)
    assert world.last_update("reason") is Reason.NETWORK
    world.run_until(lambda: world.machine.status is Status.READY)
    assert Status.QR not in world.statuses and login_untouched(world)


def test_flaky_login_checks_stay_on_the_loading_screen_and_end_ready():
    world = World(expects_login=True, pages=[loading()] * 5 + [chats()])
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.READY)
    assert Status.QR not in world.statuses and not world.of(S.RestoreNext)


def test_conflict_is_taken_back_once_per_occurrence():
    from collections import deque
    world = ready_world()
    world.pages = deque([conflict(), conflict(), conflict(), chats(), chats(), conflict(), chats()])
    world.run_steps(4)
    assert len(world.of(S.UseHere)) == 1
    assert world.last_update("reason") is Reason.CONFLICT
    world.run_steps(6)
    assert len(world.of(S.UseHere)) == 2, "a new occurrence is taken back again"
    assert world.machine.status is Status.READY and login_untouched(world)


def test_a_phone_logout_forgets_the_link_offers_a_qr_and_is_not_retried():
    from collections import deque
    world = ready_world()
    world.pages = deque([qr("2@new", post_logout=True)])
    world.run_until(lambda: world.machine.status is Status.QR)
    assert world.last_update("reason") is Reason.LOGGED_OUT
    assert len(world.of(S.ForgetLogin)) == 1 and not world.of(S.DeleteLogin)
    assert not world.published("reconnecting") and not world.of(S.RestoreNext)
    assert world.published("logged_out")[-1]["phone"] == "15550001111"
    assert world.last_update("has_session") is False


def test_a_qr_where_a_login_was_expected_restores_a_backup_without_offering_the_qr():
    world = World(expects_login=True, pages=[qr(stored=True)], backups=["b2", "b1"])
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.READY)
    assert world.of(S.RestoreNext)[0].tried == frozenset()
    assert Status.QR not in world.statuses, "the QR was never offered"
    assert world.last_update("reason") is Reason.AUTH_FAILED
    assert login_untouched(world)


def test_backups_are_tried_newest_first_once_each_then_the_qr():
    world = World(expects_login=True, pages=[qr(stored=True)], backups=["b3", "b2", "b1"])
    world.broken_backups = {"b3"}
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.READY)
    assert world.of(S.RestoreNext)[-1].tried == frozenset()  # b3 failed, b2 opened: one action
    # A second episode where none restores: each is tried once, then the QR is offered.
    from collections import deque
    world.broken_backups = {"b3", "b2", "b1"}
    world.pages = deque([qr(stored=True)])
    world.run_until(lambda: world.machine.status is Status.QR, steps=300)
    assert world.of(S.RestoreNext)[-1].tried == {"b1", "b2", "b3"}
    assert world.published("restore_failed"), "a failed restore is told"
    assert world.last_update("reason") is Reason.AUTH_FAILED
    assert login_untouched(world)


def test_a_broken_login_without_backups_offers_the_qr():
    world = World(expects_login=True, pages=[qr(stored=True)])
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.QR)
    assert len(world.of(S.RestoreNext)) == 1
    assert world.last_update("reason") is Reason.AUTH_FAILED
    assert not world.published("restore_failed"), "nothing was tried"
    assert login_untouched(world)


def test_a_locked_profile_is_waited_for_at_the_cap_never_given_up():
    world = World()
    world.launches.extend([ProfileLocked("another process holds it")] * 20)
    world.ask(INIT)
    world.run_steps(40)
    assert world.machine.status is Status.RECONNECTING
    assert world.published("reconnecting")[-1]["delay"] == 3
    assert world.last_update("reason") is Reason.PROFILE_LOCKED


@pytest.mark.parametrize("where", ["watch", "probe"])
def test_the_unsupported_browser_page_fails_at_once_and_is_not_retried(where):
    from collections import deque
    world = ready_world() if where == "probe" else World()
    world.pages = deque([screen(Screen.UNSUPPORTED)])
    if where == "watch":
        world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.FAILED)
    assert world.last_update("reason") is Reason.UNSUPPORTED_BROWSER
    assert not world.published("reconnecting")
    assert world.machine.due is None, "a fatal kind is not retried by itself"


def test_a_launch_failure_backs_off():
    world = World()
    world.launches.append(LaunchFailed("chromedriver did not start"))
    world.pages.append(qr())
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.QR)
    assert world.published("reconnecting")[0]["reason"] == "launch_failed"


@pytest.mark.parametrize("where", ["launch", "ready"])
def test_a_page_we_do_not_know_is_kept_and_reconnected_as_unrecognized(where):
    from collections import deque
    timing = Timing(startup_timeout_s=10, page_timeout_s=5, reconnect_step_s=1, reconnect_max_delay_s=1)
    world = ready_world(timing=timing) if where == "ready" else World(expects_login=True, timing=timing)
    world.pages = deque([screen(Screen.UNKNOWN)])
    if where == "launch":
        world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.RECONNECTING, steps=1000)
    assert world.last_update("reason") is Reason.UNRECOGNIZED_PAGE
    evidence = world.actions.index(world.of(S.SaveEvidence)[0])
    assert isinstance(world.actions[evidence + 1], S.Close), "the screenshot before the browser closes"
    assert login_untouched(world) and not world.of(S.RestoreNext)


def test_a_screenshot_is_taken_only_while_a_browser_runs():
    world = World()
    assert world.ask(S.Command.SCREENSHOT) == "" and not world.of(S.Screenshot)
    world = ready_world()
    world.ask(S.Command.SCREENSHOT)
    assert world.of(S.Screenshot) and world.machine.status is Status.READY


def test_a_page_caught_between_screens_is_watched_not_judged():
    from collections import deque
    world = ready_world()
    world.pages = deque([screen(Screen.UNKNOWN), screen(Screen.UNKNOWN), chats()])
    world.run_until(lambda: len(world.published("ready")) == 2)
    assert not world.published("reconnecting")


def test_expired_codes_are_reloaded_only_while_someone_looks_and_online():
    world = World(pages=[qr_expired()])
    world.ask(INIT)
    world.run_steps(5)
    assert not world.of(S.ClickReload)
    world.qr_wanted = True
    world.run_steps(1)
    assert world.of(S.ClickReload)
    count = len(world.of(S.ClickReload))
    from collections import deque
    world.pages = deque([qr_expired(offline=True)])
    world.run_steps(3)
    assert len(world.of(S.ClickReload)) == count, "offline, a reload cannot help"


def test_a_never_linked_qr_keeps_asking_an_unreachable_database():
    world = World(pages=[qr()], restore_unresolved=True, backups=["db-7"])
    world.ask(INIT)
    world.run_until(lambda: world.machine.status is Status.READY, steps=500)
    assert world.of(S.RestoreNext), "the database was asked again while the QR waited"


def test_a_backup_is_taken_only_after_a_probe_saw_the_chats():
    world = ready_world(backup_in=0.0)
    assert not world.of(S.Backup), "not on becoming ready: only once a probe confirmed it"
    world.tick()
    backup = world.of(S.Backup)[0]
    assert isinstance(world.actions[world.actions.index(backup) - 1], S.Probe)
    from collections import deque
    world.pages = deque([BrowserGone("gone")])
    before = len(world.of(S.Backup))
    world.tick()
    assert len(world.of(S.Backup)) == before, "no backup of a page that was not confirmed"


@pytest.mark.parametrize("phase", ["qr", "syncing", "ready", "backoff", "failed"])
def test_a_login_cleared_elsewhere_is_closed_and_deleted_here_too(phase):
    world = world_in(phase)
    world.cleared_elsewhere = True
    world.feed(S.Due())
    assert world.machine.status is Status.STOPPED and world.machine.phase is Phase.IDLE
    assert world.of(S.DeleteLogin) and not world.browser_open and world.machine.due is None


def test_a_bug_goes_to_failed_and_is_not_retried():
    world = ready_world()
    actions = world.machine.bug("KeyError('x')", world.facts())
    assert world.machine.status is Status.FAILED
    assert world.machine.due == pytest.approx(world.now + 60), "not at once: after WHATSAPP_FAILED_RETRY_S"
    assert any(isinstance(a, S.Close) for a in actions)


# -- every command in every phase ------------------------------------------------------------

def world_in(phase: str) -> World:
    from collections import deque
    if phase == "idle":
        return World()
    if phase == "ready":
        return ready_world()
    world = World(expects_login=phase in ("syncing", "backoff", "failed"))
    if phase == "qr":
        world.pages = deque([qr()])
    elif phase == "syncing":
        world.pages = deque([loading()])
    elif phase in ("backoff", "failed"):
        world.pages = deque([screen(Screen.ERROR)])
    world.ask(INIT)
    target = {"launch": None, "qr": Status.QR, "syncing": Status.SYNCING, "backoff": Status.RECONNECTING,
              "failed": Status.FAILED}[phase]
    if target is not None:
        world.run_until(lambda: world.machine.status is target, steps=100)
    return world


PHASES = ["idle", "launch", "qr", "syncing", "ready", "backoff", "failed"]


@pytest.mark.parametrize("phase", PHASES)
def test_initialize_in_every_phase(phase):
    world = world_in(phase)
    browsers = world.browser_open
    reply = world.ask(INIT)
    if phase in ("idle", "failed"):
        assert reply == "Starting the session." and world.machine.phase is Phase.LAUNCH
        assert world.machine.due == world.now
    elif phase == "backoff":
        assert reply == "Reconnecting now." and world.machine.due == world.now
    else:
        assert reply.startswith("Already ") and world.browser_open == browsers
        assert not world.of(S.Launch) or phase != "launch" or len(world.of(S.Launch)) <= 1


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("command", [DISCONNECT, CLEAR])
def test_disconnect_and_clear_session_in_every_phase(phase, command):
    world = world_in(phase)
    world.logged_out_told = True
    reply = world.ask(command)
    assert world.machine.status is Status.STOPPED and world.machine.phase is Phase.IDLE
    assert world.machine.due is None and not world.browser_open
    assert len(world.of(S.DeleteLogin)) == 1 and world.of(S.ReleaseLock)
    assert world.last_update("has_session") is False
    if command is DISCONNECT and phase in ("qr", "syncing", "ready"):
        assert reply.startswith("Logged out")
    elif command is DISCONNECT:
        assert "could not log out" in reply
    else:
        assert reply == "Browser closed and the saved login deleted."


@pytest.mark.parametrize("phase", PHASES)
def test_shutdown_in_every_phase(phase):
    world = world_in(phase)
    assert world.ask(SHUTDOWN) == "stopped"
    assert world.machine.status is Status.STOPPED and world.machine.due is None
    assert not world.browser_open and world.of(S.CleanShutdown) and world.of(S.ReleaseLock)
    assert login_untouched(world)
    if phase == "ready":
        assert world.of(S.CleanShutdown)[-1].ready_for >= 0


# -- the property ------------------------------------------------------------------------------

PAGES = st.sampled_from([chats(), loading(), qr(), qr(stored=True), qr_expired(), conflict(),
                         screen(Screen.UNKNOWN), screen(Screen.ERROR), qr("2@x", post_logout=True)])
FAILURES = st.sampled_from([BrowserGone("gone"), PageUnresponsive("hung"), NetworkDown("down"),
                            ProfileLocked("locked")])
STEPS = st.lists(st.one_of(
    st.tuples(st.just("page"), PAGES),
    st.tuples(st.just("fail"), FAILURES),
    st.tuples(st.just("launch_fails"), FAILURES),
    st.tuples(st.just("command"), st.sampled_from([INIT, DISCONNECT, CLEAR, SHUTDOWN])),
    st.tuples(st.just("tick"), st.integers(1, 5)),
    st.tuples(st.just("reachable"), st.booleans()),
    st.tuples(st.just("cleared"), st.just(True)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, expects_login=st.booleans(), backups=st.lists(st.sampled_from(["b1", "b2", "b3"]), unique=True))
def test_only_a_phone_logout_disconnect_or_clear_session_ever_removes_the_login(steps, expects_login, backups):
    from collections import deque
    world = World(expects_login=expects_login, pages=[loading()], backups=backups, outbox=3, receiving=True)
    world.ask(INIT)
    for kind, value in steps:
        if kind == "page":
            world.pages = deque([value])
        elif kind == "fail":
            world.pages = deque([value, loading()])
        elif kind == "launch_fails":
            world.launches.append(value)
        elif kind == "command":
            world.ask(value)
        elif kind == "reachable":
            world.reachable = value
        elif kind == "cleared":
            world.cleared_elsewhere = True
        else:
            world.run_steps(value)
        assert world.most_browsers <= 1
    asked_to_delete = any((kind == "command" and value in (DISCONNECT, CLEAR)) or kind == "cleared"
                          for kind, value in steps)
    saw_logout_page = any(kind == "page" and value.post_logout for kind, value in steps)
    if not asked_to_delete:
        assert not world.of(S.DeleteLogin)
    if not saw_logout_page:
        assert not world.of(S.ForgetLogin)
    # Launch-watch pairing: no read without a browser was asserted by the world itself.


# -- sending and receiving take turns between probes -------------------------------------------

def steps_of(world: World, kinds=(S.Probe, S.SendNext, S.ReadIncoming)) -> list[str]:
    return [type(a).__name__ for a in world.actions if isinstance(a, kinds)]


def test_the_outbox_is_sent_in_turn_at_the_send_interval():
    world = ready_world(outbox=3, timing=Timing(send_interval_s=2, monitor_interval_s=30))
    times = []
    for _ in range(10):
        before = len(world.of(S.SendNext))
        world.tick()
        if len(world.of(S.SendNext)) > before:
            times.append(world.now)
    assert len(times) == 3 and world.outbox == 0
    assert all(b - a >= 2 for a, b in zip(times, times[1:], strict=False)), "at least the send interval apart"


def test_a_message_accepted_while_ready_wakes_the_owner():
    world = ready_world(timing=Timing(monitor_interval_s=30))
    assert world.machine.due == pytest.approx(world.now + 30)
    world.outbox = 1
    world.feed(S.OutboxChanged())
    assert world.machine.due == world.now, "sent now, not at the next probe"
    world.tick()
    assert world.of(S.SendNext) and world.outbox == 0


def test_sends_and_reads_take_turns_and_probes_are_never_starved():
    world = ready_world(outbox=50, receiving=True, unread=True,
                        timing=Timing(send_interval_s=0, monitor_interval_s=5))
    world.run_steps(120)
    kinds = steps_of(world)
    sends, reads = kinds.count("SendNext"), kinds.count("ReadIncoming")
    assert sends >= 20 and reads >= 20, kinds
    moving = [kind for kind in kinds if kind != "Probe"][:2 * sends - 2]
    assert "SendNext, SendNext" not in ", ".join(moving), "a steady stream of reads never starves the outbox"
    assert "ReadIncoming, ReadIncoming" not in ", ".join(moving), "a long outbox never hides an answer"
    probe_times = world.probe_times
    assert len(probe_times) >= 3, "probes still run while messages move"
    assert max(b - a for a, b in zip(probe_times, probe_times[1:])) <= 5 + 0.5, \
        "a probe waits behind one step at most"


def test_a_change_the_page_tells_of_is_read_soon_but_never_more_often_than_the_gap():
    from whatsapp.session.machine_base import RECEIVE_GAP_S, RECEIVE_POLL_S

    world = ready_world(receiving=True, timing=Timing(monitor_interval_s=30))
    world.run_until(lambda: world.of(S.ReadIncoming))
    read_at = world.now + world.step_cost  # the read ends (the world's clock moves by its cost)
    world.now = read_at
    world.feed(S.Received(unread=False))
    assert world.machine.due == pytest.approx(read_at + RECEIVE_POLL_S), "no change: the next poll"
    world.feed(S.PageChanged())
    assert world.machine.due == pytest.approx(read_at + RECEIVE_GAP_S), "told right after a read: after the gap"
    world.now = read_at + 0.5
    world.feed(S.PageChanged())
    assert world.machine.due == pytest.approx(world.now), "told later: read now"
    before = len(world.of(S.ReadIncoming))
    world.tick()
    assert len(world.of(S.ReadIncoming)) == before + 1


def test_a_page_change_outside_ready_does_nothing():
    world = World(pages=[qr()], receiving=True)
    world.ask(INIT)
    world.run_steps(5)
    due = world.machine.due
    world.feed(S.PageChanged())
    assert world.machine.due == due and not world.of(S.ReadIncoming)


def test_nothing_is_sent_or_read_unless_ready():
    world = World(pages=[qr()], outbox=5, receiving=True, unread=True)
    world.ask(INIT)
    world.run_steps(20)
    assert not world.of(S.SendNext) and not world.of(S.ReadIncoming)


def test_a_browser_failure_during_a_send_reconnects_and_sending_resumes():
    world = ready_world(outbox=2)
    world.send_failures.append(BrowserGone("killed while typing"))
    from collections import deque
    world.pages = deque([chats(), loading(), chats()])
    world.run_until(lambda: world.machine.status is Status.RECONNECTING)
    world.run_until(lambda: world.machine.status is Status.READY)
    world.run_until(lambda: world.outbox == 0)
    assert login_untouched(world)
