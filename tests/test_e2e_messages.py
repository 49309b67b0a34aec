"""Sending end to end: the server as the Procfile runs it, real Chromium, the simulator's phone.

Every promise of contract section 5 is checked on the phone side (`/_phone/messages`: what
WhatsApp's servers saw, a message sent twice listed twice): exact text, once, in order,
through idempotency keys, accepted in any status, through SIGKILLs of the browser, of
chromedriver and of the whole server at the moment a message is `sending`, through an
outage with messages queued and one typed offline; the invalid-number dialog; ticks; both
stores. Both web versions where the page differs.
"""
from __future__ import annotations

import os
import signal

import pytest
from harness import ServerProcess, browser_tree, link_phone, linked_server, wait_for

FAST = {"WHATSAPP_SEND_INTERVAL_S": "0", "WHATSAPP_MONITOR_INTERVAL_S": "1"}
SENT = ("sent", "delivered", "read")


@pytest.fixture(params=[2026, 2025])
def web_sim(request):
    from simulator.testing import start

    with start(qr_ttl=20, qr_first_ttl=60, sync_seconds=0.3, web_version=request.param) as running:
        yield running


def ready_server(servers, sim, env=None, data_dir=None) -> ServerProcess:
    """Linked, and the login on disk: a fault injected now meets a saved login."""
    return linked_server(servers, sim, env={**FAST, **(env or {})}, data_dir=data_dir)[0]


def send(server: ServerProcess, to: str, text: str, key: str | None = None) -> dict:
    headers = {"Idempotency-Key": key} if key else None
    code, body = server.post("/api/whatsapp/messages", {"to": to, "text": text}, headers=headers)
    assert code in (200, 202), (code, body)
    return body


def message(server: ServerProcess, message_id: str) -> dict:
    code, body = server.get(f"/api/whatsapp/messages/{message_id}")
    assert code == 200, (code, body)
    return body


def wait_status(server, message_id, statuses=SENT, timeout=90) -> dict:
    return wait_for(lambda: (m := message(server, message_id))["status"] in statuses and m, timeout,
                    message=f"message {message_id} {statuses}")


def on_phone(sim, to=None, text=None) -> list[dict]:
    return [m for m in sim.messages()
            if (to is None or m["to"] == to) and (text is None or m["text"] == text)]


# -- exact text, once, in order -------------------------------------------------------------------

TEXTS = ["plain ascii", "emoji 👋🏽🎉 and a flag 🇮🇳", "देवनागरी में संदेश", "مرحبا بالعالم",
         "line one\nline two\n\nline four", "x" * 10_000]


def test_exact_text_arrives_once(servers, web_sim):
    server = ready_server(servers, web_sim)
    ids = [send(server, "15550002222", text)["id"] for text in TEXTS]
    for message_id in ids:
        sent = wait_status(server, message_id)
        assert sent["waId"] and sent["sentAt"] and sent["attempts"] == 1, sent
    phone = on_phone(web_sim, "15550002222")
    assert [m["text"] for m in phone] == TEXTS, "each exactly once, in order, unchanged"
    assert {m["waId"] for m in phone} == {message(server, i)["waId"] for i in ids}


def test_the_same_idempotency_key_twice_sends_once(servers, sim):
    server = ready_server(servers, sim)
    first = send(server, "15550002222", "only once", key="invoice-7")
    again = send(server, "15550002222", "only once", key="invoice-7")
    assert again["id"] == first["id"]
    wait_status(server, first["id"])
    assert len(on_phone(sim, text="only once")) == 1


def test_a_hundred_messages_to_ten_numbers_arrive_in_order(servers, sim):
    server = ready_server(servers, sim)
    numbers = [f"1555000{3000 + n}" for n in range(10)]
    ids = [send(server, numbers[i % 10], f"message {i:03d}")["id"] for i in range(100)]
    wait_status(server, ids[-1], timeout=400)
    phone = on_phone(sim)
    assert [m["text"] for m in phone] == [f"message {i:03d}" for i in range(100)]
    assert all(message(server, i)["status"] in SENT for i in ids[::9])


# -- accepted in any status ----------------------------------------------------------------------

def test_accepted_while_stopped_or_qr_goes_out_once_ready(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_AUTO_INIT": "0", **FAST})
    assert server.status()["status"] == "stopped"
    stopped = send(server, "15550002222", "accepted while stopped")
    server.post("/api/whatsapp/initialize")
    server.wait_status(lambda s: s["status"] == "qr", 60, "a QR")
    in_qr = send(server, "15550002222", "accepted while qr")
    link_phone(server, sim)
    for body in (stopped, in_qr):
        wait_status(server, body["id"])
        assert len(on_phone(sim, text=body["text"])) == 1


def test_accepted_while_reconnecting_goes_out_once(servers, sim):
    server = ready_server(servers, sim)
    tree = browser_tree(server)
    os.kill(tree["main"], signal.SIGKILL)
    server.wait_status(lambda s: s["status"] in ("reconnecting", "starting"), 30, "reconnecting")
    body = send(server, "15550002222", "accepted while reconnecting")
    wait_status(server, body["id"])
    assert len(on_phone(sim, text=body["text"])) == 1


# -- kills at the moment a message is sending --------------------------------------------------------

def catch_sending(server, sim, to="15550004444", tries=8) -> dict:
    """Accept messages until one is seen `sending`; returns it (the others go out as usual)."""
    for attempt in range(tries):
        body = send(server, to, f"caught sending {attempt} " + "y" * 4000)
        try:
            return wait_for(lambda: (m := message(server, body["id"]))["status"] == "sending" and m, 20,
                            interval=0.01, message="a message in sending")
        except AssertionError:
            continue
    raise AssertionError("never caught a message in `sending`")


@pytest.mark.parametrize("victim", ["chromium", "chromedriver", "server"])
def test_sigkill_while_sending_then_recovery_sends_exactly_once(servers, sim, victim):
    server = ready_server(servers, sim)
    caught = catch_sending(server, sim)
    tree = browser_tree(server)
    if victim == "chromium":
        os.kill(tree["main"], signal.SIGKILL)
    elif victim == "chromedriver":
        os.kill(tree["chromedriver"], signal.SIGKILL)
    else:
        os.killpg(server.proc.pid, signal.SIGKILL)  # gunicorn's whole process group
        server.proc.wait(10)
        server = servers(env=server.extra_env, data_dir=server.data_dir)
    done = wait_status(server, caught["id"], timeout=120)
    assert len(on_phone(sim, text=caught["text"])) == 1, "exactly once on the phone side"
    assert done["waId"] in {m["waId"] for m in on_phone(sim, text=caught["text"])}


def test_queued_at_a_restart_go_out_after_it_once(servers, sim):
    """Accepted by a run that never started the session, then a restart with the saved
    login: the new server opens its store beside the launch (not before it), counts what
    waits, and sends it once each."""
    server = ready_server(servers, sim)
    server.stop()
    idle = servers(env={**server.extra_env, "WHATSAPP_AUTO_INIT": "0"}, data_dir=server.data_dir)
    queued = [send(idle, "15550002222", f"queued before the restart {i}") for i in range(3)]
    assert idle.status()["status"] == "stopped" and idle.status()["outbox"]["queued"] == 3
    idle.stop()
    again = servers(env=server.extra_env, data_dir=server.data_dir)
    for body in queued:
        wait_status(again, body["id"])
        assert len(on_phone(sim, text=body["text"])) == 1, body["text"]


def test_a_damaged_message_store_does_not_hold_up_the_login(servers, sim):
    """The store's file is damaged between two runs: the restart still comes back with its
    login, POST /messages answers 503 naming the file, the log says so once (the open beside
    the launch found it; no call opens it again), and the file is left exactly as it was (it
    may hold accepted messages)."""
    server = ready_server(servers, sim)
    send(server, "15550002222", "before the damage")
    server.stop()
    store = server.data_dir / "messages-energenie-whatsapp.sqlite3"
    assert store.exists()
    store.write_bytes(b"not a database any more, but accepted messages might be in here" * 64)
    damaged = store.read_bytes()
    again = servers(env=server.extra_env, data_dir=server.data_dir)
    again.wait_status(lambda s: s["status"] == "ready", 60, "ready with the saved login")
    code, body = again.post("/api/whatsapp/messages", {"to": "15550002222", "text": "after the damage"})
    assert code == 503 and body["error"] == "store_unavailable", (code, body)
    assert "damaged" in body["message"] and str(store) in body["message"], body
    assert again.log().count("until it is repaired") == 1, again.log()
    assert store.read_bytes() == damaged


def test_an_outage_with_messages_queued_and_one_typed_offline(servers, sim):
    server = ready_server(servers, sim, env={"WHATSAPP_RECONNECT_MAX_ATTEMPTS": "30"})
    sim.outage(8)
    typed = send(server, "15550002222", "typed while offline")
    queued = [send(server, "15550002222", f"queued in the outage {i}")["id"] for i in range(3)]
    for message_id in [typed["id"], *queued]:
        wait_status(server, message_id, timeout=150)
    for text in ["typed while offline"] + [f"queued in the outage {i}" for i in range(3)]:
        assert len(on_phone(sim, text=text)) == 1, text


# -- refusals, ticks, logout ---------------------------------------------------------------------

def test_a_number_not_on_whatsapp_fails_and_the_queue_moves_on(servers, sim):
    sim.unregistered(["15550009999"])
    server = ready_server(servers, sim)
    bad = send(server, "15550009999", "to nobody")
    good = send(server, "15550002222", "after the bad one")
    failed = wait_status(server, bad["id"], statuses=("failed",))
    assert failed["error"]["code"] == "not_on_whatsapp" and failed["attempts"] == 1
    wait_status(server, good["id"])
    assert on_phone(sim, to="15550009999") == []


def test_ticks_from_the_phone_reach_the_message(servers, sim):
    server = ready_server(servers, sim)
    body = send(server, "15550002222", "tick me")
    sent = wait_status(server, body["id"])
    sim.ack(wa_id=sent["waId"], ack="delivered")
    wait_status(server, body["id"], statuses=("delivered", "read"), timeout=30)
    sim.ack(wa_id=sent["waId"], ack="read")
    read = wait_status(server, body["id"], statuses=("read",), timeout=30)
    assert read["deliveredAt"] and read["readAt"]


def test_disconnect_fails_what_is_still_queued(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_AUTO_INIT": "0"})
    body = send(server, "15550002222", "never to go out")
    code, _ = server.post("/api/whatsapp/clear-session")
    assert code == 200
    failed = message(server, body["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "logged_out"


def test_the_outbox_in_postgresql_survives_a_new_machine(servers, sim, postgres, tmp_path):
    env = {"WHATSAPP_DATABASE_URL": postgres.url, "WHATSAPP_CLIENT_ID": "pg-outbox"}
    first = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_AUTO_INIT": "0", **FAST, **env},
                    data_dir=tmp_path / "first")
    body = send(first, "15550002222", "kept in postgres")
    first.stop()
    # An ephemeral host: a new machine, an empty data folder, the same database.
    second = ready_server(servers, sim, env=env, data_dir=tmp_path / "second")
    assert message(second, body["id"])["text"] == "kept in postgres"
    wait_status(second, body["id"])
    assert len(on_phone(sim, text="kept in postgres")) == 1
