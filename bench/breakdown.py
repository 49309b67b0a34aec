"""Where the seconds of a start go: the product's own launch path, step by step, in-process.

The server cannot be timed from inside without changing it, so its steps are replayed here
with the product's functions (the same ones `Session._launch` calls, in the same order) on
a copy of the linked profile, and the pieces only a new process pays (interpreter, imports,
gunicorn) are timed as subprocesses.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .common import POLL_S, ROOT, TEST_ENV, Context, copy_profile, median, product_config, profile_of


def _subprocess_seconds(code: str, env: dict) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def import_costs(ctx: Context) -> dict:
    """Seconds a new process pays before any browser work: interpreter, gunicorn, the app."""
    env = {**os.environ, **TEST_ENV, "WHATSAPP_WEB_URL": ctx.sim.url, "WHATSAPP_AUTO_INIT": "0",
           "WHATSAPP_SESSION_DIR": str(ctx.path("imports"))}
    runs = 1 if ctx.quick else 3
    plain = median([_subprocess_seconds("pass", env) for _ in range(runs)])
    conf = median([_subprocess_seconds("import runpy, gunicorn.app.wsgiapp; runpy.run_path('gunicorn.conf.py')", env)
                   for _ in range(runs)])
    app = median([_subprocess_seconds("import server", env) for _ in range(runs)])
    return {"python_start": plain, "master_config (gunicorn + gunicorn.conf.py)": conf - plain,
            "worker_app (import server: flask, selenium, whatsapp)": app - plain}


def launch_steps(ctx: Context, linked: Path) -> dict:
    """The steps of `Session._launch` + `_watch` with the product's functions, timed."""
    from whatsapp.web import page
    from whatsapp.web.browser import Browser, chrome_major_version, find_chrome, version_cache
    from whatsapp.web.page import Screen
    from whatsapp.web.processes import clear_stale_singleton, sweep_orphans

    profile = copy_profile(profile_of(linked), ctx.path("profile-steps"))
    config = product_config(profile.parent / f"{profile.name}-data", {"WHATSAPP_WEB_URL": ctx.sim.url})
    steps: dict[str, float] = {}
    chrome = find_chrome(config)
    # Each cache path is a new key of the product's in-memory cache: the first call asks
    # Chromium (`chromium --version` through Debian's wrapper), the second reads a copy of
    # the file it wrote, as a restart does.
    asked, kept = profile.parent / f"{profile.name}-version.json", version_cache(config)
    t = time.monotonic()
    chrome_major_version(chrome, asked)
    steps["Chromium's version, asked (chromium --version)"] = time.monotonic() - t
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(asked, kept)
    t = time.monotonic()
    chrome_major_version(chrome, kept)
    steps["Chromium's version, kept (read beside the binary's identity)"] = time.monotonic() - t
    t = time.monotonic()
    sweep_orphans(profile)
    clear_stale_singleton(profile, os.uname().nodename)
    steps["sweep_orphans + stale lock check"] = time.monotonic() - t
    browser = None
    try:
        t = time.monotonic()
        browser = Browser.launch(config, profile, profile.parent / "profile-steps-chromedriver.log")
        ctx.track_group(browser.pgid)
        steps["Browser.launch (chromedriver + session)"] = time.monotonic() - t
        t = time.monotonic()
        browser.driver.get(config.web_url)
        steps["driver.get(page)"] = time.monotonic() - t
        t = time.monotonic()
        first = None
        end = t + 30
        while time.monotonic() < end:
            screen = page.read_state(browser.driver).screen
            if first is None and screen is not Screen.UNKNOWN:
                first = time.monotonic() - t
                steps[f"first screen after get ({screen.value})"] = first
            if screen is Screen.CHATS:
                steps["loading -> chat list (sync)"] = time.monotonic() - t - (first or 0.0)
                break
            time.sleep(POLL_S)  # polling the page, bounded by `end`
        t = time.monotonic()
        page.read_state(browser.driver)
        steps["one page.read_state call"] = time.monotonic() - t
    finally:
        if browser is not None:
            t = time.monotonic()
            browser.close()
            steps["Browser.close (clean)"] = time.monotonic() - t
    return steps


def profile_start(ctx: Context, linked: Path) -> dict:
    runs = 1 if ctx.quick else 3
    samples = [launch_steps(ctx, linked) for _ in range(runs)]
    keys = list(dict.fromkeys(k for s in samples for k in s))
    steps = {k: median([s.get(k) for s in samples]) for k in keys}
    return {"launch_steps": steps, "imports": import_costs(ctx)}
