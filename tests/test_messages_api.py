"""`/api/whatsapp/messages` through Flask's test client, on a real SQLite store (no browser).

Validation names the field and stores nothing; idempotency answers the first answer again;
the outbox cap answers 429; cancelling works only while queued. The session is never
started: accepting must not need a browser.
"""
from __future__ import annotations

import json

import pytest

from whatsapp import create_app
from whatsapp.config import Config

KEY = "test-key"


@pytest.fixture
def app(tmp_path):
    config = Config(session_dir=tmp_path, api_key=KEY, auto_init=False, outbox_max=3)
    built = create_app(config)
    yield built
    store = built.extensions["whatsapp"]["store"]
    if store is not None:
        store.close()


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body, key: str | None = None, raw: bytes | None = None):
    headers = {"X-Api-Key": KEY, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    data = raw if raw is not None else json.dumps(body)
    return client.post("/api/whatsapp/messages", data=data, headers=headers)


def get(client, path):
    return client.get(path, headers={"X-Api-Key": KEY})


def listed(client) -> list[dict]:
    return get(client, "/api/whatsapp/messages").get_json()["messages"]


def test_accepted_without_a_browser_with_location_and_the_message_object(client):
    answer = post(client, {"to": "+1 (555) 000-2222", "text": "héllo 👋\nनमस्ते"})
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["to"] == "15550002222" and body["text"] == "héllo 👋\nनमस्ते"
    assert body["status"] == "queued" and body["direction"] == "out" and body["attempts"] == 0
    assert answer.headers["Location"] == f"/api/whatsapp/messages/{body['id']}"
    assert get(client, answer.headers["Location"]).get_json() == body
    status = get(client, "/api/whatsapp/status").get_json()
    assert status["outbox"]["queued"] == 1 and status["outbox"]["oldestQueuedAgeS"] >= 0


@pytest.mark.parametrize("body, field", [
    ({"text": "hi"}, "to"),
    ({"to": "15550002222"}, "text"),
    ({"to": 15550002222, "text": "hi"}, "to"),
    ({"to": "123", "text": "hi"}, "to"),
    ({"to": "1" * 16, "text": "hi"}, "to"),
    ({"to": "15550002222", "text": ""}, "text"),
    ({"to": "15550002222", "text": "x" * 65537}, "text"),
    ({"to": "15550002222", "text": ["hi"]}, "text"),
    ({"to": "15550002222", "text": "hi", "priority": 1}, "priority"),
    (["to", "text"], "body"),
])
def test_bad_input_is_400_naming_the_field_and_stores_nothing(client, body, field):
    answer = post(client, body)
    if field == "text" and len(str(body.get("text", ""))) > 60000:
        assert answer.status_code in (400, 413)  # the body cap may come first
    else:
        assert answer.status_code == 400, answer.get_json()
        error = answer.get_json()
        assert error["error"] == "invalid_request" and field in error["message"]
    assert listed(client) == []


def test_bad_json_and_a_bad_key_are_400(client):
    assert post(client, None, raw=b"{not json").get_json()["error"] == "invalid_request"
    answer = post(client, {"to": "15550002222", "text": "hi"}, key="has space")
    assert answer.status_code == 400 and "Idempotency-Key" in answer.get_json()["message"]
    assert listed(client) == []


def test_the_same_key_and_body_answer_the_first_answer_again(client):
    first = post(client, {"to": "15550002222", "text": "once"}, key="order-42")
    again = post(client, {"to": "15550002222", "text": "once"}, key="order-42")
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    other = post(client, {"to": "15550002222", "text": "twice?"}, key="order-42")
    assert other.status_code == 422 and other.get_json()["error"] == "idempotency_mismatch"
    assert len(listed(client)) == 1


def test_a_full_outbox_is_429_and_a_cancelled_message_makes_room(client):
    ids = [post(client, {"to": "15550002222", "text": f"m{i}"}).get_json()["id"] for i in range(3)]
    full = post(client, {"to": "15550002222", "text": "one too many"})
    assert full.status_code == 429 and full.get_json()["error"] == "outbox_full"
    cancelled = client.delete(f"/api/whatsapp/messages/{ids[0]}", headers={"X-Api-Key": KEY})
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "failed" and cancelled.get_json()["error"]["code"] == "cancelled"
    assert post(client, {"to": "15550002222", "text": "room now"}).status_code == 202
    again = client.delete(f"/api/whatsapp/messages/{ids[0]}", headers={"X-Api-Key": KEY})
    assert again.status_code == 409
    assert client.delete("/api/whatsapp/messages/nope", headers={"X-Api-Key": KEY}).status_code == 404


def test_listing_pages_oldest_first_and_checks_its_parameters(client):
    for i in range(3):
        post(client, {"to": "15550002222", "text": f"m{i}"})
    page = get(client, "/api/whatsapp/messages?limit=2").get_json()
    assert [m["text"] for m in page["messages"]] == ["m0", "m1"] and page["next"]
    rest = get(client, f"/api/whatsapp/messages?limit=2&after={page['next']}").get_json()
    assert [m["text"] for m in rest["messages"]] == ["m2"] and rest["next"] is None
    assert get(client, "/api/whatsapp/messages?direction=in").get_json() == {"messages": [], "next": None}
    for query, field in (("limit=0", "limit"), ("limit=x", "limit"), ("direction=up", "direction"),
                         ("status=gone", "status"), ("after=zzz", "after"), ("sort=asc", "sort"),
                         ("direction=in&status=queued", "status")):
        answer = get(client, f"/api/whatsapp/messages?{query}")
        assert answer.status_code == 400 and field in answer.get_json()["message"], query
    assert get(client, "/api/whatsapp/messages/unknown").status_code == 404


def test_without_the_key_nothing_is_accepted(client):
    answer = client.post("/api/whatsapp/messages", json={"to": "15550002222", "text": "hi"})
    assert answer.status_code == 401
    assert listed(client) == []


def test_shutting_down_refuses_with_503(app, client):
    app.extensions["whatsapp"]["session"].begin_stop()
    answer = post(client, {"to": "15550002222", "text": "late"})
    assert answer.status_code == 503 and answer.get_json()["error"] == "shutting_down"
