"""Settings read once from the environment and validated.

`Config.from_env()` either returns a complete, frozen `Config` or raises `ConfigError`
naming the first bad variable; nothing is started before that succeeds.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_LISTENERS = 6  # gunicorn.conf.py runs 8 threads
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A bad environment variable; `str()` is one line naming it."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclasses.dataclass(frozen=True)
class Config:
    port: int = 3001
    log_level: str = "INFO"
    client_id: str = "energenie-whatsapp"
    session_dir: Path = Path(".wwebjs_auth")
    web_url: str = "https://web.whatsapp.com/"
    auto_init: bool = True
    headless: bool = True
    chrome_bin: str | None = None
    chromedriver_path: str | None = None
    user_agent: str | None = None
    chrome_args: tuple[str, ...] = ()
    monitor_interval_s: float = 30.0
    reconnect_step_s: float = 5.0
    reconnect_max_delay_s: float = 30.0
    reconnect_max_attempts: int = 5
    # In `failed` after a temporary failure: look this often whether WhatsApp answers again.
    failed_retry_s: float = 300.0
    api_key: str | None = None
    # Development: serve loopback clients without a key (contract section 3, Access).
    local_only: bool = False
    # Bounds on the browser: every WebDriver command, a page load or script, and the time
    # from launch to a recognised WhatsApp screen (then from linking to the chat list).
    driver_timeout_s: float = 30.0
    # chromedriver's own log (<dir>/chromedriver.log): "warning" keeps why Chromium would not
    # start and leaves out every command and script result (which can carry page data).
    driver_log: str = "warning"
    page_timeout_s: float = 30.0
    startup_timeout_s: float = 90.0
    sync_timeout_s: float = 300.0
    # Backups of the login (whatsapp-web.js waits 60 s after ready before the first one).
    backup_delay_s: float = 60.0
    backup_interval_s: float = 86400.0
    backup_keep: int = 3
    # PostgreSQL for backups and messages; `database_url_source` names the variable it came from.
    database_url: str | None = None
    database_url_source: str | None = None
    database_timeout_s: float = 5.0
    # Messaging.
    send_interval_s: float = 2.0
    message_ttl_s: float = 86400.0
    outbox_max: int = 10000
    receive: bool = True
    # Notifications.
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 5
    # Each open event stream holds one of gunicorn's 8 handler threads: keep half free.
    events_max_listeners: int = 4

    @property
    def profile_dir(self) -> Path:
        return self.session_dir / f"session-{self.client_id}"

    @property
    def record_path(self) -> Path:
        return self.session_dir / f"session-{self.client_id}.json"

    @property
    def lock_path(self) -> Path:
        return self.session_dir / f"session-{self.client_id}.lock"

    @property
    def backup_dir(self) -> Path:
        return self.session_dir / "backups" / self.client_id

    @property
    def messages_path(self) -> Path:
        return self.session_dir / f"messages-{self.client_id}.sqlite3"

    @property
    def api_key_path(self) -> Path:
        return self.session_dir / "api-key"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        values: dict[str, Any] = {}
        for field, (variable, parse) in _VARIABLES.items():
            raw = env.get(variable)
            if raw is None:
                continue
            if raw.strip() == "":
                # An empty secret must not silently mean "no key"; an empty number is a typo.
                raise ConfigError(variable, "set but empty; unset it to use the default")
            try:
                values[field] = parse(raw.strip())
            except ValueError as exc:
                # Secrets (and URLs, which may hold a password or a token) are never echoed:
                # this line goes to the log.
                shown = "" if field in _SECRET_FIELDS else f" (got {_shorten(raw)})"
                raise ConfigError(variable, f"{exc}{shown}") from None
        values.update(_database_url(env))
        config = cls(**values)
        config.check(explicit=frozenset(values))
        return config

    def check(self, explicit: frozenset = frozenset()) -> None:
        """Cross-field rules; raises `ConfigError` naming the variable.

        `explicit` holds the fields set in the environment: a conflict is blamed on the one
        the operator set, not on a default they never saw.
        """
        if self.reconnect_max_delay_s < self.reconnect_step_s:
            if "reconnect_step_s" in explicit and "reconnect_max_delay_s" not in explicit:
                raise ConfigError("WHATSAPP_RECONNECT_STEP_S",
                                  f"must be at most WHATSAPP_RECONNECT_MAX_DELAY_S "
                                  f"({self.reconnect_max_delay_s:g})")
            raise ConfigError("WHATSAPP_RECONNECT_MAX_DELAY_S",
                              f"must be at least WHATSAPP_RECONNECT_STEP_S ({self.reconnect_step_s:g})")
        if self.webhook_secret is not None and not self.webhook_urls:
            raise ConfigError("WHATSAPP_WEBHOOK_SECRET", "set without WHATSAPP_WEBHOOK_URL")

    @classmethod
    def variables(cls) -> list[str]:
        return [variable for variable, _ in _VARIABLES.values()] + list(DATABASE_VARIABLES[:2])


def _boolean(raw: str) -> bool:
    word = raw.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _number(minimum: float, *, integer: bool = False, positive: bool = False) -> Callable[[str], Any]:
    def parse(raw: str):
        try:
            # ASCII only: int() and float() also take other scripts' digits and "1_000".
            if not raw.isascii() or "_" in raw:
                raise ValueError
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise ValueError("expected a whole number" if integer else "expected a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if value < minimum or (positive and value == 0):
            raise ValueError(f"must be {'greater than' if positive else 'at least'} {minimum:g}")
        return value
    return parse


def _port(raw: str) -> int:
    value = _number(1, integer=True)(raw)
    if value > 65535:
        raise ValueError("must be a port number 1-65535")
    return value


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected one of debug, info, warning, error, critical")
    return level


def _driver_log(raw: str) -> str:
    level = raw.lower()
    if level not in ("off", "severe", "warning", "info", "debug", "all"):
        raise ValueError("expected one of off, severe, warning, info, debug, all")
    return level


def _client_id(raw: str) -> str:
    if not CLIENT_ID_RE.fullmatch(raw):
        raise ValueError("must match ^[A-Za-z0-9_-]+$ (letters, digits, '_' and '-')")
    return raw


def _path(raw: str) -> Path:
    if "\x00" in raw:
        raise ValueError("must be a path")
    path = Path(raw)
    try:
        if path.exists() and not path.is_dir():
            raise ValueError("exists and is not a directory")
    except OSError as exc:  # a name too long, a component that is a file...
        raise ValueError(f"cannot be used as a directory ({exc.strerror})") from None
    return path


def _http_url(raw: str) -> str:
    problem = ValueError("expected an http:// or https:// URL with a host")
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        raise problem
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError for a port that is not 0-65535
    except ValueError:
        raise problem from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise problem
    return raw


def _http_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in raw.split(",") if part.strip())
    for url in urls:
        _http_url(url)
    return urls


def _postgres_url(raw: str) -> str:
    try:
        scheme = urlsplit(raw).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("postgres", "postgresql") or any(ch.isspace() or not ch.isprintable() for ch in raw):
        raise ValueError("expected a postgres:// or postgresql:// URL")
    return raw


def _database_url(env: Mapping[str, str]) -> dict:
    """`database_url` and the variable it came from; raises ConfigError naming it.

    `DATABASE_URL` is only taken when it is a PostgreSQL URL (another add-on may own it)."""
    for variable in DATABASE_VARIABLES:
        raw = env.get(variable)
        if raw is None:
            continue
        if raw.strip() == "":
            if variable == "DATABASE_URL":
                continue
            raise ConfigError(variable, "set but empty (unset it instead)")
        try:
            url = _postgres_url(raw.strip())
        except ValueError as exc:
            if variable == "DATABASE_URL":
                continue  # not ours to judge: some other database
            raise ConfigError(variable, str(exc)) from None  # never echoed: it may hold a password
        return {"database_url": url, "database_url_source": variable}
    return {}


def _api_key(raw: str) -> str:
    """A key, or `sha256:<64 hex digits>` of one (then the environment holds no usable secret)."""
    key = _secret(raw)
    if key.lower().startswith("sha256:") and not re.fullmatch(r"[0-9a-fA-F]{64}", key[7:]):
        raise ValueError("a sha256: key must be followed by 64 hexadecimal digits")
    return key


def _executable(raw: str) -> str:
    found = shutil.which(raw)
    if not found:
        raise ValueError("not an executable file")
    return found


def _text(raw: str) -> str:
    # It becomes a command-line argument and an HTTP header: one printable line.
    if not raw.isprintable():
        raise ValueError("must be printable text on one line")
    return raw


def _shorten(raw: str, limit: int = 60) -> str:
    shown = repr(raw)  # repr keeps the message on one line whatever the value holds
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _listeners(raw: str) -> int:
    value = _number(1, integer=True)(raw)
    if value > MAX_LISTENERS:
        raise ValueError(f"must be at most {MAX_LISTENERS}: each open stream holds one of "
                         "gunicorn's 8 threads, and API calls need the rest")
    return value


def _chrome_args(raw: str) -> tuple[str, ...]:
    args = tuple(shlex.split(raw))
    for arg in args:
        if not arg.startswith("--"):
            raise ValueError(f"every flag must start with '--' ({arg!r} does not)")
        if arg.split("=", 1)[0] in ("--user-data-dir", "--remote-debugging-port"):
            raise ValueError(f"{arg.split('=', 1)[0]} is set by the server itself")
    return args


def _secret(raw: str) -> str:
    if not raw or any(ch.isspace() for ch in raw):
        raise ValueError("must be a non-empty value without spaces (unset it instead)")
    return raw


# field -> (environment variable, parser). Parsers raise ValueError with the problem.
_VARIABLES: dict[str, tuple[str, Callable[[str], object]]] = {
    "port": ("PORT", _port),
    "log_level": ("LOG_LEVEL", _log_level),
    "client_id": ("WHATSAPP_CLIENT_ID", _client_id),
    "session_dir": ("WHATSAPP_SESSION_DIR", _path),
    "web_url": ("WHATSAPP_WEB_URL", _http_url),
    "auto_init": ("WHATSAPP_AUTO_INIT", _boolean),
    "headless": ("WHATSAPP_HEADLESS", _boolean),
    "chrome_bin": ("CHROME_BIN", _executable),
    "chromedriver_path": ("CHROMEDRIVER_PATH", _executable),
    "user_agent": ("WHATSAPP_USER_AGENT", _text),
    "chrome_args": ("WHATSAPP_CHROME_ARGS", _chrome_args),
    "monitor_interval_s": ("WHATSAPP_MONITOR_INTERVAL_S", _number(0, positive=True)),
    "reconnect_step_s": ("WHATSAPP_RECONNECT_STEP_S", _number(0)),
    "reconnect_max_delay_s": ("WHATSAPP_RECONNECT_MAX_DELAY_S", _number(0)),
    "reconnect_max_attempts": ("WHATSAPP_RECONNECT_MAX_ATTEMPTS", _number(1, integer=True)),
    "failed_retry_s": ("WHATSAPP_FAILED_RETRY_S", _number(0)),
    "api_key": ("WHATSAPP_API_KEY", _api_key),
    "local_only": ("WHATSAPP_LOCAL_ONLY", _boolean),
    "driver_timeout_s": ("WHATSAPP_DRIVER_TIMEOUT_S", _number(1)),
    "driver_log": ("WHATSAPP_DRIVER_LOG", _driver_log),
    "page_timeout_s": ("WHATSAPP_PAGE_TIMEOUT_S", _number(1)),
    "startup_timeout_s": ("WHATSAPP_STARTUP_TIMEOUT_S", _number(1)),
    "sync_timeout_s": ("WHATSAPP_SYNC_TIMEOUT_S", _number(1)),
    "backup_delay_s": ("WHATSAPP_BACKUP_DELAY_S", _number(0)),
    "backup_interval_s": ("WHATSAPP_BACKUP_INTERVAL_S", _number(0, positive=True)),
    "backup_keep": ("WHATSAPP_BACKUP_KEEP", _number(1, integer=True)),
    "database_timeout_s": ("WHATSAPP_DATABASE_TIMEOUT_S", _number(0, positive=True)),
    "webhook_urls": ("WHATSAPP_WEBHOOK_URL", _http_urls),
    "webhook_secret": ("WHATSAPP_WEBHOOK_SECRET", _secret),
    "webhook_timeout_s": ("WHATSAPP_WEBHOOK_TIMEOUT_S", _number(0, positive=True)),
    "webhook_retries": ("WHATSAPP_WEBHOOK_RETRIES", _number(0, integer=True)),
    "events_max_listeners": ("WHATSAPP_EVENTS_MAX_LISTENERS", _listeners),
    "send_interval_s": ("WHATSAPP_SEND_INTERVAL_S", _number(0)),
    "message_ttl_s": ("WHATSAPP_MESSAGE_TTL_S", _number(0, positive=True)),
    "outbox_max": ("WHATSAPP_OUTBOX_MAX", _number(1, integer=True)),
    "receive": ("WHATSAPP_RECEIVE", _boolean),
}
# The database URL, in order of preference. Heroku's add-on sets DATABASE_URL and rotates its
# credentials there only: reading it directly never goes stale (a copy would).
DATABASE_VARIABLES = ("WHATSAPP_DATABASE_URL", "WHATSAPP_BACKUP_DATABASE_URL", "DATABASE_URL")
_SECRET_FIELDS = {"api_key", "webhook_secret", "webhook_urls"}
