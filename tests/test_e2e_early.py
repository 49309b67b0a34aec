"""`early.start` (gunicorn's post_fork) returns when the session has settled, not before and
not later: on a first start (no login) once Chromium's start is asked, the app's import then
running beside it (the QR follows the page at once and needs the app to be seen); on a
restart (a login) once the launch has loaded the page, the import then running while the page
syncs its chats instead of taking CPU from Chromium's start (issue 20). A real Chromium
against the simulator, in-process.
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


def test_a_first_start_returns_as_chromium_is_asked_for_and_a_restart_once_the_page_loaded(tmp_path, sim):
    config = _config(tmp_path, sim)
    driver_log = config.session_dir / "chromedriver.log"
    try:
        parts = early.start(config, settle_s=30)
        # No login: `starting` is called after chromedriver answered and just before the new
        # session is asked for; the page load comes after Chromium's start (~0.3 s or more).
        log = driver_log.read_text()
        assert "ChromeDriver was started successfully" in log, log[-2000:]
        assert "COMMAND Navigate" not in log, "not that early: the page is being loaded already"
        assert parts.session.snapshot().status is Status.STARTING
        wait_for(lambda: parts.session.snapshot().status is Status.QR, 60, message="the QR after the early start")
        sim.scan(sim.wait_qr(15))
        wait_for(lambda: parts.session.snapshot().status is Status.READY, 60, message="ready once linked")
    finally:
        _stop(config)
    assert not browsers_on(tmp_path)

    try:
        parts = early.start(config, settle_s=30)
        # A login: the launch is over when it returns, chromedriver answered the page load
        # (its log at "info" has every command and answer), and the session goes on by itself.
        log = driver_log.read_text()
        assert "RESPONSE Navigate" in log, log[-2000:]
        assert parts.session.snapshot().status in (Status.STARTING, Status.READY)
        wait_for(lambda: parts.session.snapshot().status is Status.READY, 60, message="ready after the restart")
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
