"""`early.start` (gunicorn's post_fork) returns once the session has asked for Chromium, not
before and not later: the app's import then runs beside Chromium's start instead of beside
the session's own short steps (issue 20). A real Chromium against the simulator, in-process.
"""
from __future__ import annotations

import os

from harness import TEST_ENV, browsers_on, wait_for

from whatsapp import early
from whatsapp.config import Config
from whatsapp.states import Status


def _config(tmp_path, sim, **env) -> Config:
    return Config.from_env({**os.environ, **TEST_ENV, "WHATSAPP_SESSION_DIR": str(tmp_path / "data"),
                            "WHATSAPP_WEB_URL": sim.url, "WHATSAPP_DRIVER_LOG": "info",
                            "WHATSAPP_API_KEY": "test-key", **env})


def _stop(config: Config) -> None:
    parts = early.take(config)
    if parts is not None:
        early.stop(parts)


def test_start_returns_with_chromedriver_up_and_the_session_asked_for(tmp_path, sim):
    config = _config(tmp_path, sim)
    try:
        parts = early.start(config, settle_s=30)
        # `starting` is called after chromedriver answered and just before the new session
        # is asked for: chromedriver's start line is in its log already.
        log = (config.session_dir / "chromedriver.log").read_text()
        assert "ChromeDriver was started successfully" in log, log[-2000:]
        assert parts.session.snapshot().status is Status.STARTING
        wait_for(lambda: parts.session.snapshot().status is Status.QR, 60, message="the QR after the early start")
    finally:
        _stop(config)
    assert not browsers_on(tmp_path)


def test_start_without_auto_init_returns_at_once_and_launches_nothing(tmp_path, sim):
    config = _config(tmp_path, sim, WHATSAPP_AUTO_INIT="0")
    try:
        parts = early.start(config, settle_s=30)
        assert parts.session.wait_settled(0), "the idle owner is settled"
        assert parts.session.snapshot().status is Status.STOPPED
        assert not (config.session_dir / "chromedriver.log").exists()
    finally:
        _stop(config)
