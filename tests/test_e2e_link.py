"""The product end to end: gunicorn as the Procfile runs it, real Chromium, the simulator."""
from __future__ import annotations

from harness import browsers_on, link_phone


def test_link_restart_ready_without_qr(servers, sim, tmp_path):
    server = servers(env={"WHATSAPP_WEB_URL": sim.url})
    ready = link_phone(server, sim)
    assert ready["session"]["phone"] == "15550001111"
    assert ready["session"]["pushname"] == "Energenie Phone"
    assert ready["session"]["hasSession"] is True
    assert ready["reconnectAttempts"] == 0
    server.stop()
    assert server.proc.returncode == 0, server.log()
    assert not browsers_on(server.data_dir)

    again = servers(env={"WHATSAPP_WEB_URL": sim.url})
    seen = []
    again.wait_status(lambda s: seen.append(s["status"]) or s["status"] == "ready", timeout=60)
    assert "qr" not in seen, seen
    assert len(sim.phone_state()["devices"]) == 1
