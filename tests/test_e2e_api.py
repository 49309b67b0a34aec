"""The HTTP API end to end: QR forms, initialize, disconnect, clear-session (issue: the server)."""
from __future__ import annotations

import base64
import json
import os
import signal

import psutil
from harness import browsers_on, decode_qr_png, link_phone, main_browsers, profile_of, wait_for

PROFILE = profile_of(".").name


def test_qr_forms_follow_the_page(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url})
    server.wait_status(lambda s: s["status"] == "qr" and s["qrAvailable"], timeout=60)

    code, body = server.get("/api/whatsapp/qr?format=json")
    assert code == 200
    assert body["qr"] == sim.phone_state()["qr"]
    assert body["qr"].startswith("2@")
    assert decode_qr_png(base64.b64decode(body["image"].split(",", 1)[1])) == body["qr"]

    code, headers, png = server.request("GET", "/api/whatsapp/qr.png")
    assert code == 200 and headers["Content-Type"] == "image/png"
    assert headers["Cache-Control"] == "no-store"
    assert decode_qr_png(png) == body["qr"]

    code, _, _ = server.request("GET", "/api/whatsapp/qr", headers={"Accept": "application/json"})
    assert code == 200

    code, headers, html = server.request("GET", "/api/whatsapp/qr", headers={"Accept": "text/html"})
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert b"Link WhatsApp" in html


def test_no_qr_is_409_json(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_AUTO_INIT": "0"})
    assert server.status()["status"] == "stopped"
    for path in ("/api/whatsapp/qr?format=json", "/api/whatsapp/qr.png"):
        code, body = server.get(path)
        assert code == 409, (path, body)
        assert body["success"] is False and body["error"] == "no_qr"


def test_expired_codes_are_reloaded_while_someone_looks(servers):
    from simulator.testing import start

    with start(qr_first_ttl=1, qr_ttl=0.5, qr_max=2, sync_seconds=0.2) as sim:
        server = servers(env={"WHATSAPP_WEB_URL": sim.url})
        first = server.wait_status(lambda s: s["status"] == "qr" and s["qrAvailable"], timeout=60)
        seen = set()

        def new_round():
            code, body = server.get("/api/whatsapp/qr?format=json")  # someone looking
            if code == 200:
                seen.add(body["qr"])
            return sim.phone_state()["qr_issued"] > 2 and len(seen) >= 2
        wait_for(new_round, timeout=60, message="a second round of codes after the reload button")
        assert first["status"] == "qr"


def test_initialize_is_idempotent(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_AUTO_INIT": "0"})
    first = server.post("/api/whatsapp/initialize")
    second = server.post("/api/whatsapp/initialize")
    assert first[0] == 200 and second[0] == 200, (first, second)
    server.wait_status(lambda s: s["status"] == "qr", timeout=60)
    third = server.post("/api/whatsapp/initialize")
    assert "Already" in third[1]["message"]
    assert len(main_browsers(server.data_dir)) == 1


def test_disconnect_logs_out_on_the_phone_and_deletes_the_login(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url})
    link_phone(server, sim)
    assert len(sim.phone_state()["devices"]) == 1
    code, body = server.post("/api/whatsapp/disconnect", timeout=30)
    assert code == 200, body
    assert body["status"] == "stopped"
    assert sim.phone_state()["devices"] == []
    assert not (server.data_dir / PROFILE).exists()
    status = server.status()
    assert status["status"] == "stopped" and status["session"]["hasSession"] is False
    assert not browsers_on(server.data_dir)


def test_clear_session_with_the_browser_killed(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_MONITOR_INTERVAL_S": "30"})
    link_phone(server, sim)
    for proc in browsers_on(server.data_dir):
        proc.kill()
    code, body = server.post("/api/whatsapp/clear-session", timeout=30)
    assert code == 200 and body["success"] is True, body
    assert body["status"] == "stopped"
    assert not (server.data_dir / PROFILE).exists()
    assert server.status()["session"]["hasSession"] is False
    assert not browsers_on(server.data_dir)


def test_clear_session_with_the_browser_frozen(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_DRIVER_TIMEOUT_S": "60",
                          "WHATSAPP_PAGE_TIMEOUT_S": "60", "WHATSAPP_MONITOR_INTERVAL_S": "0.2"})
    link_phone(server, sim)
    tree = browsers_on(server.data_dir)
    driver = [p for p in psutil.Process(tree[0].pid).parents() if p.name() == "chromedriver"]
    for proc in tree + driver:
        os.kill(proc.pid, signal.SIGSTOP)
    code, body = server.post("/api/whatsapp/clear-session", timeout=30)
    assert code == 200, body
    assert server.status()["status"] == "stopped"
    wait_for(lambda: not browsers_on(server.data_dir), timeout=10, message="the frozen tree to be gone")


def test_commands_refuse_bodies_they_do_not_take(servers, sim):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_AUTO_INIT": "0"})
    code, body = server.post("/api/whatsapp/initialize", payload={"force": True})
    assert code == 400 and "force" in body["message"]
    code, _, raw = server.request("POST", "/api/whatsapp/initialize", body=b"x=1",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415 and json.loads(raw)["success"] is False
    assert server.status()["status"] == "stopped"
