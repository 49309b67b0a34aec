"""The floors of the start-up figures: raw Selenium with the product's Chromium flags."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .common import POLL_S, Context, kill_group


class RawBrowser:
    """Selenium as a script would use it, with the product's Chromium flags; steps timed."""

    def __init__(self, ctx: Context, config, profile_dir: Path):
        from whatsapp.web.browser import chrome_options, find_chrome, find_chromedriver

        self.ctx = ctx
        self.driver_path = find_chromedriver(config)
        self.options = chrome_options(config, find_chrome(config), profile_dir)  # not timed: no launch
        self.log_path = profile_dir.parent / f"{profile_dir.name}-chromedriver.log"
        self.service: Any = None  # a Service, then a WebDriver, once launched
        self.driver: Any = None
        self.steps: dict[str, float] = {}

    def launch(self, url: str, t0: float) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.wall_t0 = time.time() - (time.monotonic() - t0)  # chromedriver's log is in epoch seconds
        self.service = Service(self.driver_path, log_output=str(self.log_path), popen_kw={"process_group": 0})
        self.service.start()
        self.ctx.track_group(self.service.process.pid)
        self.steps["chromedriver"] = time.monotonic() - t0
        self.driver = webdriver.Remote(command_executor=self.service.service_url, options=self.options)
        self.steps["session"] = time.monotonic() - t0
        self.driver.get(url)
        self.steps["get"] = time.monotonic() - t0

    def wait_for(self, script: str, t0: float, label: str, timeout: float = 60.0) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.driver.execute_script(script):
                self.steps[label] = time.monotonic() - t0
                return self.steps[label]
            time.sleep(POLL_S)  # the same polling resolution as the servers'
        raise RuntimeError(f"raw Selenium: {label} not seen within {timeout:.0f} s")

    def marks(self) -> dict:
        """The timed steps plus chromedriver's own marks (see bench/timeline.py), from t0."""
        from .timeline import driver_marks, read_from

        return {**self.steps, **driver_marks(read_from(self.log_path, 0), self.wall_t0)}

    def close(self) -> None:
        if self.driver is not None:
            quitter = threading.Thread(target=self._quit, daemon=True)
            quitter.start()
            quitter.join(5)
        if self.service is not None and self.service.process is not None:
            kill_group(self.service.process.pid)
            try:
                self.service.process.wait(5)
            except Exception:
                pass

    def _quit(self) -> None:
        try:
            self.driver.quit()
        except Exception:  # already gone: the group kill follows
            pass


PANE_SHOWN = "return document.querySelector('#pane-side') !== null"
LOADING_SHOWN = ("return document.querySelector('progress[max=\"100\"]') !== null || "
                 "document.querySelector('#pane-side') !== null")
QR_SHOWN = "const d = document.querySelector('div[data-ref]'); return !!(d && d.getAttribute('data-ref'))"
