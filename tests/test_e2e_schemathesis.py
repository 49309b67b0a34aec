"""schemathesis against the live server, from the document the server itself serves.

The server runs as the Procfile does (real gunicorn, real Chromium) against the simulator
with a linked session and one incoming message stored, so that the answers the document
promises happen for real: `/status` with all its blocks, messages accepted and sent, both
message shapes, a screenshot, the QR page. Every operation is run with the checks
`not_a_server_error`, `status_code_conformance`, `content_type_conformance` and
`response_schema_conformance`, in positive and negative modes (schemathesis' examples,
coverage and fuzzing phases), the key sent as `X-Api-Key`. Each group runs on a linked
server of its own:

- `test_every_operation_conforms`: all but the ones below;
- `test_the_destructive_commands_conform`: `disconnect` and `clear-session`, which end the
  login (so they cannot change what the others see halfway);
- `test_messages_follow_their_links`: stateful, through the document's links (a message
  accepted, then read and cancelled by its id).

schemathesis found that a stream whose client hung up kept its place for up to 15 s, so
quick reconnects were refused with 503; `Streams._add` now drops listeners whose socket
reads EOF (`test_a_stream_whose_client_hung_up_frees_its_place`). `/events` is read to its
first event (`max-stream-events`, since a stream never ends by itself).

Runtime is bounded by examples per operation (`EXAMPLES`) and steps per scenario.
"""
from __future__ import annotations

import http.client

import pytest
import schemathesis
from harness import linked_server, start_server, wait_for
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from whatsapp.api.operations import MISMATCH

E2E = True
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
DESTRUCTIVE = r"^/api/whatsapp/(disconnect|clear-session)$"
EXAMPLES = 12  # per operation and phase: every documented answer is reached, in seconds
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])


def _schema_of(server) -> schemathesis.schemas.BaseSchema:
    """The document this server serves, aimed at it, with its key."""
    code, document = server.get("/api/whatsapp/openapi.json")
    assert code == 200, document
    config = schemathesis.Config.from_dict({
        "base-url": server.url,
        "headers": {"X-Api-Key": server.api_key()},
        "max-stream-events": 1,
        "request-timeout": 30,
        "generation": {"max-examples": EXAMPLES},
    })
    return schemathesis.openapi.from_dict(document, config=config)


def _clean(server) -> None:
    log = server.log()
    assert MISMATCH not in log, "an answer did not match its declaration:\n" + log
    assert "Traceback" not in log, log


@pytest.fixture
def live(servers, sim):
    """A linked server with one incoming message stored; its log is checked afterwards."""
    server, _wid = linked_server(servers, sim, env={"WHATSAPP_SEND_INTERVAL_S": "0"})
    sim.send("15550009999", "hello from the phone", name="Fuzz Friend")
    wait_for(lambda: server.get("/api/whatsapp/messages?direction=in")[1]["messages"], 60,
             message="the incoming message stored")
    yield server
    _clean(server)


@pytest.fixture
def api_schema(live):
    return _schema_of(live)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.exclude(path_regex=DESTRUCTIVE).parametrize()
@_SETTINGS
def test_every_operation_conforms(case):
    case.call_and_validate(checks=CHECKS)


@schema.include(path_regex=DESTRUCTIVE).parametrize()
@_SETTINGS
def test_the_destructive_commands_conform(case):
    case.call_and_validate(checks=CHECKS)


def test_messages_follow_their_links(tmp_path):
    """Stateful, through the document's links: a message accepted (202), then read and cancelled
    by its id (200), cancelled again (409). On a server with no session, so that nothing moves
    on its own between hypothesis' runs of a scenario (a message sent meanwhile could no longer
    be cancelled); for the same reason no `Idempotency-Key` is sent (a key seen by an earlier
    run answers 200 instead of 202: test_messages_api covers keys)."""
    server = start_server(tmp_path / "data", api_key=None)
    try:
        messages = _schema_of(server).include(path_regex=r"^/api/whatsapp/messages")

        class Scenario(messages.as_state_machine()):  # type: ignore[misc]
            def before_call(self, case):
                super().before_call(case)
                (case.headers or {}).pop("Idempotency-Key", None)

            def validate_response(self, response, case, additional_checks=None, **kwargs):
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

        Scenario.run(settings=settings(_SETTINGS, max_examples=EXAMPLES, stateful_step_count=6, database=None))
        answered = server.get("/api/whatsapp/messages?limit=500")[1]["messages"]
        assert any(m["error"] and m["error"]["code"] == "cancelled" for m in answered), \
            "no scenario cancelled a message through its link"
    finally:
        server.stop()
    _clean(server)


def test_a_stream_whose_client_hung_up_frees_its_place(tmp_path):
    """One client at a time, each gone before the next comes: never refused. The server has no
    session, so nothing is written to the streams meanwhile (a write would reveal the hang-up)."""
    server = start_server(tmp_path / "data", api_key=None)
    try:
        for attempt in range(6):  # more than WHATSAPP_EVENTS_MAX_LISTENERS' default, 4
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                conn.request("GET", "/api/whatsapp/events", headers={"X-Api-Key": server.api_key()})
                answer = conn.getresponse()
                assert answer.status == 200, (attempt, answer.status, answer.read())
                while answer.fp.readline() not in (b"\n", b""):  # to the end of the first event
                    pass
            finally:
                conn.close()
    finally:
        server.stop()
    _clean(server)
