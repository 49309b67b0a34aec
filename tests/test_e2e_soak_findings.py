"""Regression tests for what the soak (bench/soak, issue 19) found, one fault each, minimal.

An incoming message for the chat that is open in the page, arriving while the server
cannot read the page (the server killed, its browser still running; or chromedriver
frozen), is shown in that chat at once and marked read by the page: it never gets an
unread badge. The next browser then treats the chat's rows as history and the message is
never published, although the contract says what came while the server or the browser was
down is published once. Found by `make soak SOAK_SEED=7 SOAK_CYCLES=2` (cycle 2:
stop-chromedriver for 24 s; "in 7-00011 hello" never published).
"""
from __future__ import annotations

import os
import signal

import pytest
from harness import browser_tree, linked_server, wait_for

FAST = {"WHATSAPP_SEND_INTERVAL_S": "0"}
SENDER = "15550007777"


def published(server, text: str) -> int:
    code, body = server.get("/api/whatsapp/messages?direction=in&limit=500")
    assert code == 200, (code, body)
    return sum(1 for m in body["messages"] if m["text"] == text)


def read_on_phone(sim, text: str) -> bool:
    return any(m["text"] == text and m["read"] for m in sim.inbox())


@pytest.mark.parametrize("fault", ["server killed", "chromedriver frozen"])
def test_a_message_to_the_open_chat_while_the_server_cannot_look_is_published_once(servers, sim, fault):
    server, _ = linked_server(servers, sim, env=FAST)
    sim.send(SENDER, "the first one opens the chat")
    wait_for(lambda: published(server, "the first one opens the chat") == 1, 30, message="the first message")
    tree = browser_tree(server)
    if fault == "server killed":
        os.killpg(server.proc.pid, signal.SIGKILL)  # gunicorn only: the browser, in its own group, runs on
        server.proc.wait(10)
    else:
        os.kill(tree["chromedriver"], signal.SIGSTOP)
    try:
        sim.send(SENDER, "while the server could not look")
        wait_for(lambda: read_on_phone(sim, "while the server could not look"), 20,
                 message="the page still open in that chat marking it read")
        if fault == "server killed":
            server = servers(env=server.extra_env, data_dir=server.data_dir)
        else:  # the product gives up on the frozen driver and starts another browser
            server.wait_status(lambda s: s["status"] != "ready", 60, "the frozen driver noticed")
    finally:
        if fault != "server killed":
            try:
                os.kill(tree["chromedriver"], signal.SIGCONT)
            except ProcessLookupError:
                pass
    server.wait_status(lambda s: s["status"] == "ready", 90, "ready again")
    sim.send(SENDER, "a later one gives the chat a badge")
    wait_for(lambda: published(server, "a later one gives the chat a badge") == 1, 30, message="the later message")
    assert published(server, "while the server could not look") == 1
