"""The page tells of its changes (whatsapp.web.watch): the product's Browser in real headless
Chromium against the simulator, both web versions. A message from the phone reaches the
callback without any WebDriver read, whether the watch began before the page loaded (as the
product does) or after, also after the page was loaded again, and nothing of the watch is
left once the browser is closed."""
from __future__ import annotations

import os
import threading

import pytest
from harness import TEST_ENV, browsers_on, wait_for

from simulator.testing import start
from whatsapp.config import Config
from whatsapp.web import page
from whatsapp.web.browser import Browser
from whatsapp.web.watch import BINDING


def _observing(browser: Browser) -> bool:
    return bool(browser.driver.execute_script(f"const f = window.{BINDING}; return !!(f && f.watching);"))


def _calls_after(calls: list, action) -> int:
    before = len(calls)
    action()
    wait_for(lambda: len(calls) > before, 15, message="the page telling of the change")
    return len(calls) - before


@pytest.mark.parametrize(("version", "watch_first"), [("2025", True), ("2026", True), ("2026", False)])
def test_a_message_from_the_phone_is_told_by_the_page_before_and_after_a_reload(tmp_path, version, watch_first):
    with start(web_version=int(version), sync_seconds=0.2, pushname="Watch Phone", phone="15550001111") as sim:
        config = Config.from_env({**os.environ, **TEST_ENV, "WHATSAPP_SESSION_DIR": str(tmp_path / "data"),
                                  "WHATSAPP_WEB_URL": sim.url})
        browser = Browser.launch(config, tmp_path / "data" / "profile", tmp_path / "chromedriver.log")
        calls: list[int] = []
        try:
            # The page's timeouts come with the new session's capabilities (no command after it).
            timeouts = browser.driver.timeouts
            assert timeouts.page_load == timeouts.script == config.page_timeout_s == 5
            if watch_first:
                assert browser.watch_page(lambda: calls.append(1))
            browser.driver.get(sim.url)
            sim.scan(sim.wait_qr(15))
            wait_for(lambda: page.read_state(browser.driver).screen is page.Screen.CHATS, 30, message="the chats")
            if not watch_first:  # installed in the document of the moment
                assert browser.watch_page(lambda: calls.append(1))
            wait_for(lambda: _observing(browser), 15, message="the observer in the page")
            assert _calls_after(calls, lambda: sim.send("15550002222", "first", name="Watch One")) >= 1
            browser.driver.refresh()  # a new document: the observer comes with it
            wait_for(lambda: page.read_state(browser.driver).screen is page.Screen.CHATS, 30, message="the chats")
            assert _observing(browser), "the new document has the observer from its start"
            assert _calls_after(calls, lambda: sim.send("15550003333", "second", name="Watch Two")) >= 1
        finally:
            browser.close()
        assert not [t for t in threading.enumerate() if t.name == "page-watch"], "the watch's thread ended"
        assert browser.page_watch is None
    assert not browsers_on(tmp_path)
