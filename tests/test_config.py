"""Configuration (contract section 2): every variable parsed or refused with one line naming it.

Unit tests per variable, a hypothesis property over arbitrary strings, and the deploy path:
a bad value stops `gunicorn -c gunicorn.conf.py server:app` (the Procfile) with one line.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import ROOT, free_port, procfile_command
from whatsapp.config import Config, ConfigError

SH = "/bin/sh"
# variable -> (values that parse, values that must be refused). Every variable the code
# knows must appear here (test_every_variable_is_covered), so a new one cannot go untested.
CASES: dict[str, tuple[list[str], list[str]]] = {
    "PORT": (["1", "3001", "65535", " 8080 "], ["abc", "0", "-1", "65536", "3001.5", "30 01", "３００１", "1_000"]),
    "LOG_LEVEL": (["info", "DEBUG", "warning"], ["loud", "0", "inf"]),
    "WHATSAPP_CLIENT_ID": (["a", "energenie-whatsapp", "A_b-9"],
                           ["a/b", "..", "../x", "a..b", "a b", "a.b", "é", "a\\b"]),
    "WHATSAPP_SESSION_DIR": (["data", "/tmp", "./x/y"], ["/etc/passwd", "a\x00b"]),
    "WHATSAPP_WEB_URL": (["https://web.whatsapp.com/", "http://127.0.0.1:3002/", "HTTP://x"],
                         ["web.whatsapp.com", "ftp://x/", "http://", "http://:80/", "http://h:99999/",
                          "http://a b/", "javascript:alert(1)", "http://[::1/"]),
    "WHATSAPP_AUTO_INIT": (["1", "0", "true", "FALSE", "yes", "No", "on", "off"], ["2", "maybe", "y", "-1"]),
    "WHATSAPP_HEADLESS": (["1", "off"], ["enabled", "10"]),
    "CHROME_BIN": (["sh", SH], ["/nonexistent/chromium", "no-such-binary-xyz", "/tmp"]),
    "CHROMEDRIVER_PATH": ([SH], ["/nonexistent/chromedriver"]),
    "WHATSAPP_USER_AGENT": (["Mozilla/5.0 (X11; Linux x86_64)"], ["a\tb", "a\x1bb"]),
    "WHATSAPP_CHROME_ARGS": (["--disable-gpu --lang=en"],
                             ["disable-gpu", "--user-data-dir=/tmp/x", "--remote-debugging-port=9", "'--a"]),
    "WHATSAPP_MONITOR_INTERVAL_S": (["30", "0.5"], ["0", "-1", "abc", "nan", "inf", "1e999", "٣"]),
    "WHATSAPP_RECONNECT_STEP_S": (["0", "5", "2.5"], ["-1", "x", "-inf", "40"]),
    "WHATSAPP_RECONNECT_MAX_DELAY_S": (["30", "100"], ["-1", "1", "ten"]),
    "WHATSAPP_RECONNECT_MAX_ATTEMPTS": (["1", "5"], ["0", "-2", "1.5", "five"]),
    "WHATSAPP_API_KEY": (["k", "a-long_key.42"], ["", " ", "two words", "tab\there"]),
    "WHATSAPP_DRIVER_TIMEOUT_S": (["1", "30"], ["0.5", "-3", "x"]),
    "WHATSAPP_PAGE_TIMEOUT_S": (["5"], ["0", "none"]),
    "WHATSAPP_STARTUP_TIMEOUT_S": (["90"], ["0", "-90"]),
    "WHATSAPP_SYNC_TIMEOUT_S": (["300"], ["0.1", "∞"]),
    "WHATSAPP_BACKUP_DELAY_S": (["0", "60"], ["-1", "soon"]),
    "WHATSAPP_BACKUP_INTERVAL_S": (["86400"], ["0", "-5"]),
    "WHATSAPP_BACKUP_KEEP": (["1", "3"], ["0", "2.5"]),
    "WHATSAPP_DATABASE_URL": (["postgres://u:p@db:5432/x", "postgresql:///x"],
                              ["mysql://u:pw@h/x", "db:5432", "postgres://u:p w@h/x", ""]),
    "WHATSAPP_BACKUP_DATABASE_URL": (["postgres://u:p@db:5432/x", "postgresql:///x"],
                                     ["mysql://u:pw@h/x", "db:5432", "postgres://u:p w@h/x"]),
    "WHATSAPP_DATABASE_TIMEOUT_S": (["5"], ["0", "-1"]),
    "WHATSAPP_WEBHOOK_URL": (["https://hooks.example/a", "http://a/, https://b/"],
                             ["hooks.example", "http://a/, ftp://b/", "http://a b/"]),
    "WHATSAPP_WEBHOOK_SECRET": ([], ["", "with space", "alone-without-url"]),
    "WHATSAPP_WEBHOOK_TIMEOUT_S": (["5"], ["0"]),
    "WHATSAPP_WEBHOOK_RETRIES": (["0", "5"], ["-1", "1.0"]),
    "WHATSAPP_EVENTS_MAX_LISTENERS": (["1", "6"], ["0", "many", "7"]),
    "WHATSAPP_FAILED_RETRY_S": (["0", "300"], ["-1", "often"]),
    "WHATSAPP_LOCAL_ONLY": (["1", "no"], ["maybe", ""]),
    "WHATSAPP_SEND_INTERVAL_S": (["0", "2.5"], ["-1", "fast"]),
    "WHATSAPP_MESSAGE_TTL_S": (["60", "86400"], ["0", "-5"]),
    "WHATSAPP_OUTBOX_MAX": (["1", "10000"], ["0", "1.5", "lots"]),
    "WHATSAPP_RECEIVE": (["0", "on"], ["2"]),
    "WHATSAPP_DRIVER_LOG": (["off", "WARNING", "info"], ["loud", "verbose"]),
}
# Values that hold a secret (or a URL that may): never echoed in the error line.
SECRET_VARIABLES = {"WHATSAPP_API_KEY", "WHATSAPP_WEBHOOK_SECRET", "WHATSAPP_BACKUP_DATABASE_URL",
                    "WHATSAPP_DATABASE_URL", "WHATSAPP_WEBHOOK_URL"}


def test_every_variable_is_covered():
    assert set(Config.variables()) == set(CASES), "add the new variable to CASES"
    for variable, (_, bad) in CASES.items():
        assert bad, f"{variable} needs at least one refused value"


def test_defaults_match_the_contract():
    config = Config.from_env({})
    assert (config.port, config.client_id, config.session_dir, config.web_url) == (
        3001, "energenie-whatsapp", Path(".wwebjs_auth"), "https://web.whatsapp.com/")
    assert config.auto_init and config.headless and config.api_key is None
    assert (config.monitor_interval_s, config.reconnect_step_s, config.reconnect_max_delay_s,
            config.reconnect_max_attempts) == (30, 5, 30, 5)
    assert config.profile_dir == Path(".wwebjs_auth/session-energenie-whatsapp")


@pytest.mark.parametrize("variable, value", [(v, good) for v, (goods, _) in CASES.items() for good in goods])
def test_good_value_parses(variable, value):
    Config.from_env({variable: value})


@pytest.mark.parametrize("variable, value", [(v, bad) for v, (_, bads) in CASES.items() for bad in bads])
def test_bad_value_is_one_line_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: "), message
    assert caught.value.variable == variable
    assert "\n" not in message and "\r" not in message
    if variable in SECRET_VARIABLES and len(value.strip()) > 3:
        assert value.strip() not in message, "a secret was echoed"


def test_set_but_empty_is_an_error_saying_to_unset_it():
    for variable in ("PORT", "WHATSAPP_AUTO_INIT", "WHATSAPP_API_KEY"):
        with pytest.raises(ConfigError, match=f"^{variable}: set but empty; unset it"):
            Config.from_env({variable: "  "})


def test_database_url_preference_and_heroku_fallback():
    url, other = "postgres://u:pw@db:5432/x", "postgres://u:pw@old:5432/y"
    assert Config.from_env({"DATABASE_URL": url}).database_url_source == "DATABASE_URL"
    config = Config.from_env({"DATABASE_URL": other, "WHATSAPP_BACKUP_DATABASE_URL": url})
    assert (config.database_url, config.database_url_source) == (url, "WHATSAPP_BACKUP_DATABASE_URL")
    config = Config.from_env({"WHATSAPP_DATABASE_URL": url, "WHATSAPP_BACKUP_DATABASE_URL": other})
    assert (config.database_url, config.database_url_source) == (url, "WHATSAPP_DATABASE_URL")
    # DATABASE_URL of another kind (another add-on) is not ours to judge: ignored.
    assert Config.from_env({"DATABASE_URL": "mysql://u:pw@h/x"}).database_url is None


def test_api_key_may_be_given_as_its_sha256():
    digest = "sha256:" + "ab" * 32
    assert Config.from_env({"WHATSAPP_API_KEY": digest}).api_key == digest
    with pytest.raises(ConfigError, match="^WHATSAPP_API_KEY: a sha256: key"):
        Config.from_env({"WHATSAPP_API_KEY": "sha256:1234"})


def test_cross_field_rules_blame_what_was_set():
    with pytest.raises(ConfigError, match="^WHATSAPP_RECONNECT_STEP_S: "):
        Config.from_env({"WHATSAPP_RECONNECT_STEP_S": "31"})
    with pytest.raises(ConfigError, match="^WHATSAPP_RECONNECT_MAX_DELAY_S: "):
        Config.from_env({"WHATSAPP_RECONNECT_STEP_S": "10", "WHATSAPP_RECONNECT_MAX_DELAY_S": "9"})
    config = Config.from_env({"WHATSAPP_WEBHOOK_URL": "http://a/", "WHATSAPP_WEBHOOK_SECRET": "s"})
    assert config.webhook_urls == ("http://a/",) and config.webhook_secret == "s"


def test_parsed_types():
    config = Config.from_env({"PORT": "8080", "WHATSAPP_AUTO_INIT": "no", "WHATSAPP_MONITOR_INTERVAL_S": "0.5",
                              "WHATSAPP_RECONNECT_MAX_ATTEMPTS": "7", "CHROME_BIN": "sh"})
    assert config.port == 8080 and config.auto_init is False
    assert config.monitor_interval_s == 0.5 and config.reconnect_max_attempts == 7
    assert os.path.isabs(config.chrome_bin)


# -- property: any string for any variable --------------------------------------------------

ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789.-+eE_ninfa ", max_size=12),  # number-like
    st.sampled_from(["", " ", "0", "-0", "1e309", "nan", "0x10", "http://", "http://[::1]:0/",
                     "postgres://", "--x='", "..", "/", "true", "TRUE ", "\u00a0", "\ud800"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variable=st.sampled_from(sorted(CASES)), raw=ANY_TEXT)
def test_any_string_parses_or_names_its_variable(variable, raw):
    try:
        Config.from_env({variable: raw})
    except ConfigError as exc:
        assert str(exc).startswith(f"{variable}: "), str(exc)
        assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(env=st.dictionaries(st.sampled_from(sorted(CASES)), ANY_TEXT, max_size=6))
def test_any_environment_parses_or_names_one_of_its_variables(env):
    try:
        Config.from_env(env)
    except ConfigError as exc:
        assert exc.variable in env and str(exc).startswith(f"{exc.variable}: "), (str(exc), env)


# -- the deploy path: the Procfile's gunicorn with a bad value -------------------------------

def _first_env_safe(values: list[str]) -> str:
    return next(v for v in values if "\x00" not in v)


@pytest.mark.e2e
def test_bad_value_stops_the_procfile_server(tmp_path):
    """Each variable's first bad value, all servers started at once (the whole test ~1 s)."""
    runs = {}
    for variable, (_, bad) in CASES.items():
        port = free_port()
        env = {**os.environ, "PORT": str(port), "WHATSAPP_SESSION_DIR": str(tmp_path / variable),
               "WHATSAPP_AUTO_INIT": "0", variable: _first_env_safe(bad)}
        env.pop("WHATSAPP_API_KEY", None) if variable != "WHATSAPP_API_KEY" else None
        runs[variable] = subprocess.Popen(procfile_command(port), cwd=ROOT, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failures = []
    try:
        for variable, proc in runs.items():
            out, err = proc.communicate(timeout=30)
            lines = [line for line in (out + err).splitlines() if "configuration error:" in line]
            if proc.returncode == 0 or len(lines) != 1 or variable not in lines[0] \
                    or "Traceback" in err or "Booting worker" in err:
                failures.append(f"{variable}: rc={proc.returncode}\n{err[-1500:]}")
            elif variable in SECRET_VARIABLES:
                assert _first_env_safe(CASES[variable][1]).strip() not in lines[0] or \
                    len(_first_env_safe(CASES[variable][1]).strip()) <= 3
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert not failures, "\n\n".join(failures)
