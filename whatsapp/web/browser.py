"""Launching and stopping the one Chromium that drives WhatsApp Web.

Chromium and chromedriver run in a process group of their own (chromedriver leads it and
every browser process joins it), so whatever happens the whole tree is removed with one
`killpg`. Every WebDriver command is bounded: the HTTP client has a timeout and no
retries (urllib3 would retry a GET four times against a frozen chromedriver), and page
loads and scripts have their own timeout.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options as ChromeOptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
from selenium.webdriver.remote.client_config import ClientConfig

# Imported here, not through `selenium.webdriver.Remote`: that name is loaded on first use,
# and its module (with its BiDi and websocket parts) takes ~0.12 s to import. On first use
# it would be imported by the session's thread between chromedriver's spawn and the new
# session, while the worker's main thread imports Flask (both slower for sharing the GIL);
# at import time it is loaded in gunicorn's post_fork, before anything else runs (issue 20).
from selenium.webdriver.remote.webdriver import WebDriver

from ..config import Config
from ..failures import LaunchFailed
from . import version
from .processes import group_members, is_browser_main, kill_group, signal_pid, wait_gone
from .watch import PageWatch

log = logging.getLogger(__name__)

# whatsapp-web.md, "Browser settings": a desktop user agent without HeadlessChrome, the
# automation flag hidden, container flags, and no background traffic to Google's hosts
# (runtime.md: without these Chromium keeps trying to reach them).
BASE_ARGS = (
    "--no-sandbox",
    "--disable-dev-shm-usage",  # the Debian wrapper never adds it itself (runtime.md)
    "--disable-gpu",
    "--disable-blink-features=AutomationControlled",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-crash-restore-bubble",
    # Not --disable-crashpad-for-testing: it stops the two chrome_crashpad_handler processes,
    # but with it Chromium 156 never finished loading the simulator's page here ("Timed out
    # receiving message from renderer"). The handlers exit by themselves within ~2 s of the
    # browser (runtime.md).
    "--window-size=1280,900",
    # One renderer for the one tab: about 7 MiB less (bench/, memory), no slower start. The
    # other flags measured there (--single-process, --no-zygote, js heap caps) saved nothing
    # or cost more.
    "--renderer-process-limit=1",
)
LOG_MAX_BYTES = 2 << 20
UI_LANGUAGE = "en-US"


def find_chrome(config: Config) -> str:
    found = version.which_chrome(config.chrome_bin)
    if found is None:
        raise LaunchFailed("no Chromium found: install chromium or set CHROME_BIN")
    return found


def find_chromedriver(config: Config) -> str:
    if config.chromedriver_path:
        return config.chromedriver_path
    found = shutil.which("chromedriver")
    if found:
        return found
    # Last fallback only: it needs the internet (runtime.md: fails at once offline).
    try:
        from webdriver_manager.chrome import ChromeDriverManager

        return ChromeDriverManager().install()
    except Exception as exc:  # webdriver-manager raises many unrelated types
        raise LaunchFailed(f"no chromedriver found (set CHROMEDRIVER_PATH); webdriver-manager: {exc}") from exc


def chrome_major_version(chrome_bin: str, cache: Path | None = None) -> int | None:
    """Chromium's major version (see `version`: kept beside the binary's identity)."""
    return version.major_version(chrome_bin, cache)


def version_cache(config: Config) -> Path:
    return version.cache_path(config.session_dir)


def user_agent(config: Config, chrome_bin: str) -> str:
    """A desktop Chrome user agent of the installed version (never `HeadlessChrome`)."""
    if config.user_agent:
        return config.user_agent
    major = chrome_major_version(chrome_bin, version_cache(config)) or 140
    return (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{major}.0.0.0 Safari/537.36")


def chrome_options(config: Config, chrome_bin: str, profile_dir: Path) -> ChromeOptions:
    options = ChromeOptions()
    options.binary_location = chrome_bin
    if config.headless:
        options.add_argument("--headless=new")
    for arg in (*BASE_ARGS, *config.chrome_args):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile_dir.resolve()}")
    options.add_argument(f"--user-agent={user_agent(config, chrome_bin)}")
    options.add_experimental_option("excludeSwitches", ["enable-automation"])
    # Several markers are visible text or aria-labels that WhatsApp translates ("Send" is
    # "Enviar" in Portuguese): pin the UI and the Accept-Language to English (whatsapp-web.md).
    options.add_argument(f"--lang={UI_LANGUAGE}")
    options.add_experimental_option("prefs", {"intl.accept_languages": f"{UI_LANGUAGE},en"})
    options.page_load_strategy = "normal"
    # In the new session's capabilities (W3C "timeouts", in ms) rather than two commands
    # after it: two round trips fewer between Chromium's start and the page load.
    timeout_ms = round(config.page_timeout_s * 1000)
    options.timeouts = {"pageLoad": timeout_ms, "script": timeout_ms}
    return options


class Browser:
    """One running chromedriver + Chromium tree. Only the owner thread calls `driver`."""

    def __init__(self, driver: WebDriver, service: Service, profile_dir: Path, log_path: Path):
        self.driver = driver
        self.service = service
        self.profile_dir = profile_dir
        self.log_path = log_path
        self.pgid = service.process.pid  # chromedriver leads its own process group
        self.page_watch: PageWatch | None = None

    @classmethod
    def launch(cls, config: Config, profile_dir: Path, log_path: Path,
               starting: Callable[[], None] = lambda: None) -> Browser:
        """Start chromedriver and Chromium on `profile_dir`; `starting` is called just before
        the new session is asked for (Chromium's own start follows: nothing left for Python)."""
        chrome_bin, driver_path = find_chrome(config), find_chromedriver(config)
        # chromedriver would create its log with the umask's mode: the data folder is owner-only.
        # chromedriver truncates its --log-path: keep the previous launch's log (a failed
        # launch's reason) as <name>.1.
        if log_path.exists():
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        os.chmod(log_path, 0o600)
        # --append-log: chromedriver then writes at the end of the file whatever its size, so
        # `bound_log` can cut it in place while it runs.
        service = Service(driver_path, log_output=str(log_path), popen_kw={"process_group": 0},
                          service_args=[f"--log-level={config.driver_log.upper()}", "--append-log"],
                          env=_browser_env())
        try:
            service.start()
        except WebDriverException as exc:
            raise LaunchFailed(f"chromedriver did not start: {exc.msg}") from exc
        client = ClientConfig(
            remote_server_addr=service.service_url, keep_alive=True,
            timeout=config.driver_timeout_s,  # type: ignore[arg-type]  # a float works (urllib3)
            init_args_for_pool_manager={"init_args_for_pool_manager": {"retries": False}})
        executor = ChromiumRemoteConnection(remote_server_addr=service.service_url, vendor_prefix="goog",
                                            browser_name="chrome", client_config=client)
        options = chrome_options(config, chrome_bin, profile_dir)
        starting()
        try:
            driver = WebDriver(command_executor=executor, options=options)
        except Exception as exc:
            kill_group(service.process.pid)
            detail = getattr(exc, "msg", None) or str(exc)
            raise LaunchFailed(f"Chromium did not start: {detail.splitlines()[0] if detail else exc!r}"
                               f" (chromedriver log: {log_path})") from exc
        return cls(driver, service, profile_dir, log_path)

    def watch_page(self, on_change: Callable[[], None], timeout: float = 5.0) -> bool:
        """Have the tab push its changes to `on_change` (see `watch`: set up on a thread, so
        this returns at once). False when the browser tells no debugger address."""
        try:
            address = self.driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        except (KeyError, TypeError) as exc:
            log.info("page changes are not pushed, the page is polled only: no debugger address (%r)", exc)
            return False
        self.page_watch = PageWatch.start(address, on_change, timeout=timeout)
        return True

    def bound_log(self, max_bytes: int = LOG_MAX_BYTES) -> None:
        """Keep chromedriver's log under `max_bytes`: past it, it becomes `<name>.1` and
        starts afresh (a page read logs ~3 KB at "info": 550 MB a day on an unattended QR)."""
        try:
            if self.log_path.stat().st_size <= max_bytes:
                return
            shutil.copyfile(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
            os.truncate(self.log_path, 0)  # lines written between the copy and this are lost
        except OSError as exc:
            log.warning("could not bound %s: %s", self.log_path, exc)

    def alive(self) -> bool:
        return self.service.process.poll() is None

    def browser_pid(self) -> int | None:
        """The main Chromium process (the one without `--type=`) on our profile."""
        import psutil  # lazily, as in processes.py

        for proc in group_members(self.pgid):
            try:
                cmdline = proc.cmdline()
            except psutil.Error:
                continue
            if is_browser_main(cmdline, self.profile_dir):
                return proc.pid
        return None

    def kill(self) -> None:
        """SIGKILL the whole tree. Safe from any thread; unblocks a stuck driver call."""
        kill_group(self.pgid)
        self._stop_watch()

    def _stop_watch(self) -> None:
        watch, self.page_watch = self.page_watch, None
        if watch is not None:
            watch.close()

    def close(self, deadline: float = 5.0) -> None:
        """Close properly so storage is flushed, bounded by `deadline`; then kill what is left.

        `quit()` runs in a helper thread (it blocks for minutes on a frozen chromedriver);
        if it does not finish, SIGTERM to Chromium still lets it write its storage
        (runtime.md), and SIGKILL to the group ends the rest.
        """
        end = time.monotonic() + deadline
        self._stop_watch()
        socket_dir = _singleton_socket_dir(self.profile_dir)
        quitter = threading.Thread(target=self._quit_quietly, name="browser-quit", daemon=True)
        quitter.start()
        quitter.join(max(0.0, deadline * 0.6))
        if group_members(self.pgid):
            pid = self.browser_pid()
            if pid:
                signal_pid(pid, signal.SIGTERM)
            wait_gone(lambda: [p for p in group_members(self.pgid) if p.pid != self.pgid],
                       max(0.0, end - time.monotonic()))
        kill_group(self.pgid)
        try:
            self.service.process.wait(2)
        except subprocess.TimeoutExpired:
            log.warning("chromedriver %s did not exit after SIGKILL", self.pgid)
        _close_log(self.service)
        if socket_dir is not None:
            # Chromium leaves its (empty) org.chromium.Chromium.* folder in $TMPDIR behind.
            shutil.rmtree(socket_dir, ignore_errors=True)

    def _quit_quietly(self) -> None:
        try:
            self.driver.quit()
        except Exception as exc:  # the browser may already be gone; only the kill matters then
            log.debug("quit failed: %r", exc)


# Chromium puts its SingletonSocket under $TMPDIR, and a Unix socket's path is at most 107
# bytes: under a longer TMPDIR it fails to start with only "zygote ... Broken pipe" in the log.
_TMPDIR_MAX = 60


def _browser_env() -> dict[str, str]:
    env = dict(os.environ)
    if len(env.get("TMPDIR", "")) > _TMPDIR_MAX:
        env["TMPDIR"] = "/tmp"
    return env


def _singleton_socket_dir(profile_dir: Path) -> Path | None:
    """The temporary folder the running browser's SingletonSocket lives in, if it is one."""
    try:
        target = Path(os.readlink(profile_dir / "SingletonSocket"))
    except OSError:
        return None
    folder = target.parent
    return folder if folder.name.startswith("org.chromium.Chromium.") else None


def _close_log(service: Service) -> None:
    try:
        output = service.log_output
        if getattr(service, "_owns_log_output", False) and output is not None and hasattr(output, "close"):
            output.close()
    except OSError:
        pass
