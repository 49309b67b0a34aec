"""The OpenAPI document: valid 3.1, complete (every route of the app under /api/ and /metrics),
generated from the declarations that validate, and readable on a docs page that needs
nothing but this server.

The declarations are held to the rules of `whatsapp.messages.model`: the number pattern the
document shows accepts exactly what `normalise_number` accepts, and the body declaration
refuses exactly what `parse_new_message` refuses, naming the same field with the same words.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from harness import start_server, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import ValidationError

from whatsapp import create_app, states
from whatsapp.api import openapi, operations, schemas
from whatsapp.api.errors import is_api_path
from whatsapp.config import Config
from whatsapp.messages import model as messages

KEY = "doc-key"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    built = create_app(Config(session_dir=tmp_path_factory.mktemp("openapi"), api_key=KEY, auto_init=False))
    yield built
    if built.extensions["whatsapp"]["store"] is not None:
        built.extensions["whatsapp"]["store"].close()


@pytest.fixture(scope="module")
def doc(app):
    return openapi.build(app)


def test_the_document_is_valid_openapi_3_1(doc):
    OpenAPIV31SpecValidator(doc).validate()
    assert doc["openapi"].startswith("3.1.")
    assert not [name for name in doc["components"]["schemas"] if "__" in name], "pydantic's clash names left"


def test_every_route_under_api_is_in_the_document(app, doc):
    routes = set()
    for rule in app.url_map.iter_rules():
        if is_api_path(rule.rule):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    assert ("/api/whatsapp/messages", "post") in routes and ("/metrics", "get") in routes


def test_a_route_without_a_declaration_cannot_be_forgotten(tmp_path):
    fresh = create_app(Config(session_dir=tmp_path, api_key=KEY, auto_init=False))
    fresh.add_url_rule("/api/whatsapp/forgotten", "forgotten", lambda: "", methods=["GET"])
    with pytest.raises(openapi.Undeclared, match="/api/whatsapp/forgotten"):
        openapi.build(fresh)
    fresh.extensions["whatsapp"]["store"].close()


def test_served_behind_the_key_and_the_same_as_built(app, doc):
    client = app.test_client()
    assert client.get("/api/whatsapp/openapi.json").status_code == 401
    served = client.get("/api/whatsapp/openapi.json", headers={"X-Api-Key": KEY})
    assert served.status_code == 200 and served.mimetype == "application/json"
    assert served.get_json() == json.loads(json.dumps(doc))


def test_security_schemes_enums_and_media_types(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert schemes["basic"]["type"] == "http" and schemes["basic"]["scheme"] == "basic"
    assert doc["security"] == [{"apiKey": []}, {"basic": []}]
    components = doc["components"]["schemas"]
    assert components["SessionStatus"]["enum"] == [s.value for s in states.Status]
    assert components["Reason"]["enum"] == [r.value for r in states.Reason]
    assert components["MessageStatus"]["enum"] == [s.value for s in messages.Status]
    assert components["Kind"]["enum"] == [k.value for k in messages.Kind]
    paths = doc["paths"]

    def media(path, method, status):
        return set(paths[path][method]["responses"][str(status)].get("content", {}))
    assert media("/api/whatsapp/qr", "get", 200) == {"application/json", "text/html"}
    assert media("/api/whatsapp/qr.png", "get", 200) == {"image/png"}
    assert media("/api/whatsapp/screenshot", "get", 200) == {"image/png"}
    assert media("/api/whatsapp/events", "get", 200) == {"text/event-stream"}
    assert media("/metrics", "get", 200) == {"text/plain"}
    accept = paths["/api/whatsapp/messages"]["post"]
    assert set(accept["responses"]) == {"200", "202", "400", "401", "403", "413", "415", "422", "429", "503", "507"}
    assert accept["responses"]["202"]["headers"]["Location"] and accept["responses"]["202"]["links"]
    assert accept["parameters"][0]["name"] == "Idempotency-Key" and accept["parameters"][0]["in"] == "header"
    for path, ops in paths.items():
        for method, op in ops.items():
            assert "401" in op["responses"], (path, method)
            assert ("403" in op["responses"]) == (method != "get"), (path, method)
            assert "500" not in op["responses"], (path, method)


# -- the declarations against model.py's rules -------------------------------------------------

number_ish = st.text(alphabet="0123456789 +-.()@cusx", max_size=30)


@settings(max_examples=400)
@given(st.one_of(number_ish, st.from_regex(schemas.TO_PATTERN, fullmatch=True)))
def test_the_documented_number_pattern_is_exactly_normalise_number(written):
    try:
        messages.normalise_number(written)
        accepted = True
    except messages.InvalidRequest:
        accepted = False
    documented = len(written) <= 64 and re.fullmatch(schemas.TO_PATTERN, written) is not None
    assert accepted == documented, written


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=6)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"to": st.one_of(number_ish, json_values), "text": st.one_of(st.text(max_size=30), json_values)},
                          optional={"extra": json_values, "b": st.integers()}),
)


@settings(max_examples=400)
@given(bodies)
def test_the_body_declaration_answers_as_parse_new_message(body):
    try:
        parsed = messages.parse_new_message(body)
        expected = ("accepted", parsed.to, parsed.text)
    except messages.InvalidRequest as exc:
        expected = ("refused", f"{exc.field}: {exc.message}")
    try:
        checked = schemas.NewMessageBody.model_validate(body)
        got = ("accepted", checked.to, checked.text)
    except ValidationError as exc:
        refusal = operations.invalid(exc)
        assert refusal.status == 400 and refusal.error == "invalid_request"
        got = ("refused", refusal.message)
    assert got == expected


# -- the docs page ---------------------------------------------------------------------------------


def test_the_docs_page_needs_nothing_but_this_server(app):
    client = app.test_client()
    headers = {"X-Api-Key": KEY}
    page = client.get("/api/whatsapp/docs", headers=headers)
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert set(policy.values()) <= {"'self'", "'none'"}, policy
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    html = page.get_data(as_text=True)
    assert "://" not in html and "<script>" not in html and "style=" not in html
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        asset = client.get(f"/api/whatsapp/{url}", headers=headers)
        assert asset.status_code == 200 and asset.get_data(), url
    assert client.get("/api/whatsapp/docs/../routes.py", headers=headers).status_code == 404
    assert client.get("/api/whatsapp/docs/nothing.js", headers=headers).get_json()["error"] == "not_found"


@contextlib.contextmanager
def _chromium(tmp_path: Path):
    """A headless Chromium with its console log kept (the setup of tests/test_e2e_console.py)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from whatsapp.web.browser import BASE_ARGS

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (*BASE_ARGS, "--headless=new", f"--user-data-dir={tmp_path / 'viewer'}",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver", popen_kw={"process_group": 0})
    try:
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            with contextlib.suppress(Exception):  # the group kill below is the guarantee
                driver.quit()
    finally:
        process = getattr(service, "process", None)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.mark.e2e
def test_the_docs_page_shows_every_operation_in_chromium_with_its_csp(tmp_path, doc):
    """Real gunicorn, real Chromium: the key given as a browser would (Basic auth), Swagger UI
    renders every operation of the document and the console shows no refused load."""
    server = start_server(tmp_path / "data", KEY)
    try:
        with _chromium(tmp_path) as driver:
            driver.get(f"http://anyone:{KEY}@127.0.0.1:{server.port}/api/whatsapp/docs")
            count = sum(len(ops) for ops in doc["paths"].values())
            wait_for(lambda: len(driver.find_elements("css selector", ".opblock")) == count, 30,
                     message=f"{count} operations on the docs page")
            driver.find_elements("css selector", ".opblock-summary")[0].click()
            wait_for(lambda: driver.find_elements("css selector", ".responses-table"), 10, message="an operation opened")
            problems = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert not problems, problems
    finally:
        server.stop()


def test_answers_are_checked_against_their_declaration_all_at_first_then_sampled(monkeypatch, caplog):
    """Each operation and status: every answer of the first CHECK_ALL is checked, then one in
    CHECK_EVERY (a check costs about a tenth of an accept's CPU); a mismatch is logged, the
    answer still goes out as it was."""
    import flask

    monkeypatch.setattr(operations, "CHECK_ALL", 3)
    monkeypatch.setattr(operations, "CHECK_EVERY", 4)
    declared = operations.Operation("a test", replies={200: operations.Reply("an error body", schemas.ErrorBody)})
    app = flask.Flask(__name__)
    sent = []
    with app.test_request_context("/api/whatsapp/test"), caplog.at_level("ERROR", logger=operations.__name__):
        for _ in range(12):
            sent.append(declared.reply(200, {"unexpected": True}).get_json())
    logged = [r for r in caplog.records if operations.MISMATCH in r.getMessage()]
    assert len(logged) == 3 + 2  # answers 0, 1, 2, then 4 and 8
    assert sent == [{"unexpected": True}] * 12
