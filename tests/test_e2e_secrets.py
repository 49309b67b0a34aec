"""No secret of the login in any log, in /status or in /metrics (issue 21).

The page read reports only whether `WANoiseInfo` is there, and chromedriver logs at
"warning" by default (no command, no script result). The test links a phone, lets the
server read the page for a minute (a probe every 0.2 s: hundreds of reads), restarts it,
and then looks for the simulator's key material in every log file of the data folder, the
server's own output, /status and /metrics.
"""
from __future__ import annotations

import time

from harness import link_phone

READ_FOR_S = 60.0


def test_no_key_material_in_logs_status_or_metrics(servers, sim, tmp_path):
    env = {"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_MONITOR_INTERVAL_S": "0.2"}
    server = servers(env=env)
    link_phone(server, sim)
    secrets = sim.state.key_material()
    assert len(secrets) >= 5 and all(len(s) >= 20 for s in secrets)
    deadline = time.monotonic() + READ_FOR_S
    # A minute of reads in the server, watched through /status; it must stay ready throughout.
    watched = server.wait_status(lambda s: s["status"] != "ready" or time.monotonic() > deadline,
                                 timeout=READ_FOR_S + 30, message="a minute of reads")
    assert watched["status"] == "ready", watched
    server.stop()
    again = servers(env=env, data_dir=server.data_dir)
    again.wait_status(lambda s: s["status"] == "ready", timeout=60, message="ready after a restart")
    bodies = [again.get("/api/whatsapp/status")[1], again.get("/metrics")[1]]
    # The login's own storage (LevelDB names its journal *.log) holds the keys by design:
    # the profile and the backups of it are not logs.
    stores = [server.data_dir / "session-energenie-whatsapp", server.data_dir / "backups",
              server.data_dir / "broken"]
    logs = [path for path in server.data_dir.rglob("*") if path.is_file() and ".log" in path.name
            and not any(path.is_relative_to(store) for store in stores)]
    assert any(path.name == "chromedriver.log" for path in logs), logs
    texts = {str(path): path.read_bytes().decode("utf-8", "replace") for path in logs}
    texts["server output"] = server.log() + again.log()
    texts["/status"], texts["/metrics"] = str(bodies[0]), bodies[1].decode()
    for name, text in texts.items():
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, f"key material found in {name}"
