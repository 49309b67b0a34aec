"""The doctor's browser checks: Chromium and ChromeDriver are there and match, and Chromium
starts here with the server's own options and renders a page.

`renders` starts the browser exactly as the server does (`Browser.launch`: the same options,
process group and timeouts) on a temporary profile, loads a `data:` page, reads it back and
takes a screenshot, then closes it. Everything it started is then waited for (bounded) and
killed if still there: the processes on the temporary profile, and those carrying this run's
mark in their environment (the crash handlers Chromium starts in sessions of their own); the
temporary folder (profile, chromedriver's log, Chromium's TMPDIR) is removed.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import urllib3
from selenium.common.exceptions import WebDriverException

from ..failures import LaunchFailed
from ..web.browser import UI_LANGUAGE, Browser, find_chrome
from .report import Context, Result, fail, ok, warn

VERSION_TIMEOUT_S = 10.0
REAP_S = 5.0
MARK = "WHATSAPP_DOCTOR_RUN"  # set in Chromium's environment, to find every process of it
DRIVER_ERRORS = (WebDriverException, urllib3.exceptions.HTTPError, OSError)
_VERSION = re.compile(r"(\d+)\.\d+\.\d+(?:\.\d+)?")
# A page that only renders when the browser works: a red square drawn, a script run.
_PAGE = "data:text/html;charset=utf-8," + quote(
    "<!doctype html><title>doctor</title><style>html,body{margin:0;background:#fff}"
    "#box{width:64px;height:64px;background:#f00}</style><div id=box></div>"
    "<script>document.title = 'rendered ' + 6 * 7</script>")
_READ = "return {title: document.title, ua: navigator.userAgent, lang: navigator.language}"
# Chromium's SingletonSocket lives in $TMPDIR/org.chromium.Chromium.XXXXXX/ (the profile links
# to it); a Unix socket path holds 107 bytes: 108 made Chromium 156 exit at start here.
SOCKET_PATH_MAX = 107
_SOCKET_IN_TMPDIR = "/org.chromium.Chromium.XXXXXX/SingletonSocket"


def binaries(ctx: Context) -> Result:
    config = ctx.config
    try:
        chrome = find_chrome(config)
    except LaunchFailed as exc:
        return fail(str(exc), "apt-get install chromium (Debian/Ubuntu), or set CHROME_BIN to the browser")
    driver = config.chromedriver_path or shutil.which("chromedriver")
    if not driver:
        return fail("no chromedriver on PATH (the server would then try webdriver-manager, which needs the "
                    "internet)", "apt-get install chromium-driver, or set CHROMEDRIVER_PATH")
    ctx.binaries = (chrome, driver)
    chrome_version, driver_version = _version(chrome), _version(driver)
    if chrome_version is None:
        return fail(f"{chrome} --version names no version", "point CHROME_BIN at Chromium or Google Chrome")
    if driver_version is None:
        return fail(f"{driver} --version names no version", "point CHROMEDRIVER_PATH at ChromeDriver")
    found = f"Chromium {chrome_version} ({chrome}), ChromeDriver {driver_version} ({driver})"
    if chrome_version.split(".")[0] != driver_version.split(".")[0]:
        return fail(f"{found}: not the same major version, ChromeDriver refuses to drive it",
                    "install the ChromeDriver of the same version (Debian: chromium-driver beside chromium), "
                    "or set CHROMEDRIVER_PATH to it")
    return ok(found)


def renders(ctx: Context) -> Result:
    if ctx.binaries is None:
        return fail("not tried: no Chromium or ChromeDriver (see chromium)", "fix the chromium check first")
    socket = len(os.fsencode(tempfile.gettempdir())) + len(_SOCKET_IN_TMPDIR)
    if socket > SOCKET_PATH_MAX:
        # Chromium then exits at start with only "zygote_linux.cc: write: Broken pipe" in its log.
        return fail(f"not tried: TMPDIR {tempfile.gettempdir()} is too long: Chromium's SingletonSocket in it "
                    f"would be {socket} bytes, over the {SOCKET_PATH_MAX} a Unix socket path holds, and "
                    "Chromium exits at start", "give the server (and the doctor) a short TMPDIR, e.g. TMPDIR=/tmp")
    chrome, driver = ctx.binaries
    mode = "headless" if ctx.config.headless else "with a window"
    token = secrets.token_hex(8)
    folder = Path(tempfile.mkdtemp(prefix="whatsapp-doctor-"))
    # The data folder in the temporary one: the doctor leaves the real one as it was (the
    # launch keeps Chromium's version in `<data dir>/chromium-version.json`).
    config = dataclasses.replace(ctx.config, chrome_bin=chrome, chromedriver_path=driver, session_dir=folder)
    profile, log_path = folder / "profile", folder / "chromedriver.log"
    browser, socket_dir = None, None
    os.environ[MARK] = token  # inherited by chromedriver and Chromium
    started = time.monotonic()
    try:
        try:
            browser = Browser.launch(config, profile, log_path)
        except LaunchFailed as exc:
            hint = "" if config.headless or os.environ.get("DISPLAY") else " (WHATSAPP_HEADLESS=0 needs a display)"
            # The log named in the message is in the temporary folder: its last line is quoted.
            reason = _first_line(re.sub(r"\s*\(chromedriver log: [^)]*\)", "", str(exc)))
            return fail(f"{reason} ({mode}){hint}; "
                        f"chromedriver's log ends: {_log_tail(log_path)}",
                        f"try: {chrome} --headless=new --no-sandbox --dump-dom about:blank")
        launched = time.monotonic() - started
        socket_dir = _socket_dir(profile)
        try:
            browser.driver.get(_PAGE)
            seen = browser.driver.execute_script(_READ) or {}
            png = browser.driver.get_screenshot_as_png()
        except DRIVER_ERRORS as exc:
            return fail(f"Chromium ({mode}) started but did not render a page: {_first_line(str(exc))}",
                        "look for missing libraries or a full /dev/shm; try the same with --dump-dom")
    finally:
        if browser is not None:
            browser.close(deadline=REAP_S)
        os.environ.pop(MARK, None)
        left = _reap(token, profile)
        shutil.rmtree(folder, ignore_errors=True)
        if socket_dir is not None:
            try:
                socket_dir.rmdir()  # only ever an empty folder: Chromium removed its socket
            except OSError:
                pass
    return _judge(mode, launched, seen, png, left)


def _judge(mode: str, launched: float, seen: dict, png: bytes, left: int) -> Result:
    from PIL import Image, UnidentifiedImageError  # only here: it is not needed to start the server

    if seen.get("title") != "rendered 42":
        return fail(f"Chromium ({mode}) loaded the page but ran none of its script (title {seen.get('title')!r})",
                    "check WHATSAPP_CHROME_ARGS for flags that turn JavaScript off")
    try:
        image = Image.open(io.BytesIO(png)).convert("RGB")
        red = image.getpixel((32, 32))
    except (UnidentifiedImageError, OSError, IndexError) as exc:
        return fail(f"Chromium's ({mode}) screenshot is no picture ({exc})", "look for missing graphics libraries")
    if not (isinstance(red, tuple) and red[0] > 200 and red[1] < 60 and red[2] < 60):
        return fail(f"Chromium ({mode}) ran the page but drew nothing (pixel {red})",
                    "look for missing graphics libraries; check WHATSAPP_CHROME_ARGS")
    found = (f"Chromium ({mode}) started in {launched:.1f} s with the server's options, ran and drew a page "
             f"({image.width}x{image.height}, language {seen.get('lang')}), and closed")
    if left:
        found += f" ({left} of its processes had to be killed)"
    ua = str(seen.get("ua", ""))
    if "HeadlessChrome" in ua:
        return fail(f"{found}; but its user agent says HeadlessChrome, which WhatsApp Web refuses",
                    "unset WHATSAPP_USER_AGENT, or give a desktop Chrome one")
    if seen.get("lang") != UI_LANGUAGE:
        return warn(f"{found}; but its language is {seen.get('lang')}, not {UI_LANGUAGE}",
                    "several markers are English text: remove --lang from WHATSAPP_CHROME_ARGS")
    return ok(found)


def _reap(token: str, profile: Path) -> int:
    """Wait (bounded) for every process of this run's browser to end, kill those that do
    not; returns how many had to be killed."""
    left = _ours(token, profile)
    _, alive = psutil.wait_procs(left, timeout=REAP_S)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=2)
    return len(alive)


def _ours(token: str, profile: Path) -> list[psutil.Process]:
    marker, me, found = f"--user-data-dir={profile.resolve()}", os.getpid(), []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if marker in (proc.info["cmdline"] or []) or proc.environ().get(MARK) == token:
                found.append(proc)
        except psutil.Error:
            continue  # gone, or another user's: not ours
    return found


def _socket_dir(profile: Path) -> Path | None:
    """The folder in $TMPDIR holding this browser's SingletonSocket (the profile links to it)."""
    try:
        target = Path(os.readlink(profile / "SingletonSocket"))
    except OSError:
        return None
    return target.parent if target.parent.name.startswith("org.chromium.") else None


def _version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=VERSION_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    return match.group(0) if match else None


def _log_tail(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty)"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
