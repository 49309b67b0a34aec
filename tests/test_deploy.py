"""Deploying to Heroku: `app.json`, the README's "Deploy to Heroku" section and the Procfile.

- app.json describes what the server needs there (the browser's and Python's buildpacks,
  PostgreSQL, a generated key, one dyno with room for the browser), and its config vars are
  ones the server reads and accepts.
- The README's section follows app.json exactly: everything app.json sets is explained, and
  the section names nothing app.json lacks.
- The database URL's source is logged, its password never.
- The Procfile runs under a real Procfile runner (honcho, a Python Foreman), with the
  environment Heroku gives (PORT, DATABASE_URL of a real PostgreSQL, the key), answers, and
  SIGTERM to the runner (what Heroku sends every process of a dyno) stops everything: no
  gunicorn, no Chromium left, well inside Heroku's 30 s.
- bin/post_compile (the buildpack's build hook) leaves bytecode that a start loads instead of
  compiling, and a source changed after it is compiled again, never run stale.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request

import pg
import psutil
import pytest
from harness import ROOT, TEST_ENV, VENV_BIN, browsers_on, descendants, free_port, is_gone, main_browsers, wait_for

from whatsapp.config import DATABASE_VARIABLES, Config

APP = json.loads((ROOT / "app.json").read_text())
# Memory of each dyno size in MB (Heroku's dyno types table): the browser needs 1 GB.
DYNO_MB = {"eco": 512, "basic": 512, "standard-1x": 512, "standard-2x": 1024, "performance-m": 2560,
           "performance-l": 14336, "performance-l-ram": 30720, "performance-xl": 63488, "performance-2xl": 126976}
# Config vars an add-on sets by itself: the section may name them though app.json's env does not.
ADDON_VARIABLES = {"heroku-postgresql": {"DATABASE_URL"}}
BUILDPACKS = {"heroku/python", "heroku-community/chrome-for-testing"}
HEROKU_STOP_S = 30  # SIGKILL follows SIGTERM after this long (runtime.md)


def deploy_section() -> str:
    """The README's "Deploy to Heroku" section, up to the next heading of its level or higher."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"^(#{2,3}) Deploy to Heroku[ \t]*$", text, re.M)
    assert found, "README.md has no '## Deploy to Heroku' section"
    rest = text[found.end():]
    end = re.search(rf"^#{{1,{len(found.group(1))}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def quoted(section: str) -> set[str]:
    """Every `code span` of the section."""
    return set(re.findall(r"`([^`\n]+)`", section))


def addon_names() -> set[str]:
    return {addon["plan"].split(":", 1)[0] if isinstance(addon, dict) else addon.split(":", 1)[0]
            for addon in APP.get("addons", [])}


def heroku_env(key: str) -> dict[str, str]:
    """The config vars a fresh app gets from app.json (a generated secret is 64 hex digits, as
    Heroku's generator makes) and from its add-ons."""
    env = {}
    for name, spec in APP["env"].items():
        spec = spec if isinstance(spec, dict) else {"value": spec}
        env[name] = key if spec.get("generator") == "secret" else spec["value"]
    env["DATABASE_URL"] = "postgres://u1ab2:pw-heroku-made@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d9xyz"
    return env


# -- app.json ------------------------------------------------------------------------------

def test_app_json_asks_for_what_the_server_needs_on_heroku():
    buildpacks = [pack["url"] for pack in APP["buildpacks"]]
    assert set(buildpacks) == BUILDPACKS and len(buildpacks) == 2, buildpacks
    assert buildpacks[-1] == "heroku/python", "the language buildpack goes last"
    assert "heroku-postgresql" in addon_names()
    assert set(APP["formation"]) == {"web"}, "one process type: web"
    web = APP["formation"]["web"]
    # One dyno: a second would run a second browser on the same account.
    assert web["quantity"] == 1
    assert DYNO_MB[web["size"].lower()] >= 1024, f"{web['size']}: the browser and real WhatsApp Web need 1 GB"
    key = APP["env"]["WHATSAPP_API_KEY"]
    assert key.get("generator") == "secret" and key.get("required", True), key
    for name, spec in APP["env"].items():
        assert name in Config.variables(), f"{name} is not a variable the server reads"
        assert isinstance(spec, dict) and spec.get("description"), f"{name}: say what it does"
    # The config vars as Heroku sets them are accepted, and the database is the add-on's own.
    env = heroku_env(key=secrets.token_hex(32))
    config = Config.from_env(env)
    assert config.api_key == env["WHATSAPP_API_KEY"]
    assert (config.database_url, config.database_url_source) == (env["DATABASE_URL"], "DATABASE_URL")


def test_success_url_is_the_qr_page(tmp_path):
    from whatsapp import create_app

    app = create_app(Config.from_env({"WHATSAPP_SESSION_DIR": str(tmp_path), "WHATSAPP_LOCAL_ONLY": "1"}))
    try:
        assert app.url_map.bind("localhost").match(APP["success_url"], method="GET")[0] == "whatsapp.qr"
    finally:
        app.extensions["whatsapp"]["store"].close()


def test_python_version_is_the_one_that_runs_here():
    wanted = (ROOT / ".python-version").read_text().strip()
    assert wanted == f"{sys.version_info.major}.{sys.version_info.minor}", wanted
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + wanted.replace(".", "")


# -- the README's section ----------------------------------------------------------------------

def test_the_deploy_section_follows_app_json():
    section = deploy_section()
    spans = quoted(section)
    # The one-click button.
    assert "[![Deploy to Heroku](https://www.herokucdn.com/deploy/button.svg)](https://www.heroku.com/deploy)" in section
    # Every buildpack, add-on, the dyno and every config var app.json sets, named ...
    for name in (*BUILDPACKS, *addon_names(), APP["formation"]["web"]["size"], *APP["env"], APP["success_url"]):
        assert name in spans, f"the Deploy section does not name `{name}`"
    web = APP["formation"]["web"]
    assert f"{'one' if web['quantity'] == 1 else web['quantity']} `web` dyno of size `{web['size']}`" in section
    assert f"({DYNO_MB[web['size']] // 1024} GB)" in section
    for name, spec in APP["env"].items():
        row = next((line for line in section.splitlines() if line.strip().startswith(f"| `{name}` |")), None)
        assert row, f"no row explains `{name}`"
        if spec.get("generator") == "secret":
            assert "generated" in row, row
        else:
            assert f"`{spec['value']}`" in row, row
    # ... and nothing that app.json lacks: no other variable, buildpack, add-on or dyno size.
    variables = {s for s in spans if re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", s)}
    allowed = set(APP["env"]) | {v for addon in addon_names() for v in ADDON_VARIABLES.get(addon, ())}
    assert variables <= allowed, f"named in the section, not in app.json: {variables - allowed}"
    assert {s for s in spans if re.fullmatch(r"heroku[\w-]*/[\w.-]+", s)} == BUILDPACKS
    assert {s for s in spans if re.fullmatch(r"heroku-[a-z-]+", s)} <= addon_names()
    sizes = {s.lower() for s in re.findall(r"\b(?:eco|standard-[12]x|performance-[\w-]+|private-[\w-]+|shield-[\w-]+)\b",
                                           section, re.I)}
    assert sizes == {web["size"].lower()}, sizes
    assert f"Python {(ROOT / '.python-version').read_text().strip()}" in section


def test_the_memory_advice_is_the_benchmarks_figure():
    readme = (ROOT / "README.md").read_text()
    row = re.search(r"^\| memory \(PSS\)[^|]*\| ([\d.]+ MiB) \|", readme, re.M)
    assert row, "the benchmark table has no memory (PSS) row"
    assert f"{row.group(1)} with the simulator's tiny page" in deploy_section()


# -- the database URL's source, logged without the password --------------------------------------

@pytest.mark.parametrize("variable", DATABASE_VARIABLES)
def test_the_database_url_source_is_logged_without_its_password(variable, tmp_path, caplog):
    from whatsapp import create_app

    env = {"WHATSAPP_SESSION_DIR": str(tmp_path), "WHATSAPP_LOCAL_ONLY": "1",
           variable: "postgres://app:pw-not-for-logs@db.internal:5432/wa"}
    if variable != "DATABASE_URL":  # ours wins over the add-on's, which is set too
        env["DATABASE_URL"] = "postgres://addon:pw-addon@other:5432/x"
    with caplog.at_level(logging.INFO, logger="whatsapp"):
        app = create_app(Config.from_env(env))  # opens no connection yet
    try:
        assert f"messages and backups in PostgreSQL postgres://app:***@db.internal:5432/wa (from {variable})" \
            in caplog.text, caplog.text
        assert "pw-not-for-logs" not in caplog.text and "pw-addon" not in caplog.text
    finally:
        store = app.extensions["whatsapp"]["store"]
        if store is not None:
            store.close()


def test_a_database_url_of_another_kind_is_not_ours(tmp_path, caplog):
    from whatsapp import create_app

    with caplog.at_level(logging.INFO, logger="whatsapp"):
        app = create_app(Config.from_env({"WHATSAPP_SESSION_DIR": str(tmp_path), "WHATSAPP_LOCAL_ONLY": "1",
                                          "DATABASE_URL": "mysql://u:pw-mysql@h/x"}))
    try:
        assert "PostgreSQL" not in caplog.text and "pw-mysql" not in caplog.text
    finally:
        app.extensions["whatsapp"]["store"].close()


# -- the Procfile under honcho -----------------------------------------------------------------

def call(port: int, method: str, path: str, key: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     headers={"X-Api-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_procfile_under_honcho_answers_and_stops_on_sigterm(sim, postgres, tmp_path):
    port, data = free_port(), tmp_path / "data"
    key = secrets.token_hex(32)  # as app.json's "generator": "secret" makes it
    # A client id of its own: the test database is shared, and rows of another test's client
    # id (a backup) would be restored here.
    client_id = f"deploy-{secrets.token_hex(4)}"
    env = {**os.environ, **TEST_ENV, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PORT": str(port), "WHATSAPP_SESSION_DIR": str(data), "WHATSAPP_WEB_URL": sim.url,
           "WHATSAPP_AUTO_INIT": "0", "WHATSAPP_API_KEY": key, "WHATSAPP_CLIENT_ID": client_id,
           "DATABASE_URL": postgres.url}
    for name in ("WHATSAPP_DATABASE_URL", "WHATSAPP_BACKUP_DATABASE_URL", "WHATSAPP_LOCAL_ONLY"):
        env.pop(name, None)
    no_env_file = tmp_path / "empty.env"  # not a developer's .env in the repository
    no_env_file.write_text("")
    log_path = tmp_path / "honcho.log"
    command = [str(VENV_BIN / "honcho"), "start", "--no-colour", "--procfile", str(ROOT / "Procfile"),
               "--app-root", str(ROOT), "--env", str(no_env_file)]
    seen: list[psutil.Process] = []
    with open(log_path, "wb") as log:
        honcho = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        # Heroku wants $PORT bound within 60 s.
        wait_for(lambda: honcho.poll() is not None or call(port, "GET", "/api/whatsapp/status", key)[0] == 200,
                 60, message=f"the server on port {port}")
        assert honcho.poll() is None, f"honcho exited with {honcho.returncode}:\n{log_path.read_text()}"
        code, status = call(port, "GET", "/api/whatsapp/status", key)
        assert code == 200 and status["status"] == "stopped", (code, status)
        assert "database" in status, "DATABASE_URL was not used"
        assert call(port, "GET", "/api/whatsapp/status", None)[0] == 401  # the key is required

        # A browser, so that the stop has one to close.
        assert call(port, "POST", "/api/whatsapp/initialize", key)[0] == 200
        wait_for(lambda: call(port, "GET", "/api/whatsapp/status", key)[1]["status"] == "qr", 60, message="a QR")
        assert len(main_browsers(data)) == 1
        seen = descendants(honcho.pid)  # sh, gunicorn's master and worker, chromedriver, Chromium
        names = " ".join(" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]) if p in seen)
        assert "gunicorn" in names and "chromedriver" in names, names

        started = time.monotonic()
        honcho.send_signal(signal.SIGTERM)
        honcho.wait(HEROKU_STOP_S)
        took = time.monotonic() - started
        # Chromium's crash handlers end by themselves within ~2 s of the browser (runtime.md).
        wait_for(lambda: all(is_gone(p) for p in seen) and not browsers_on(data), 10,
                 message="every process of the dyno gone")
        assert took < HEROKU_STOP_S, took
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(10)
        for proc in seen + browsers_on(data):
            if not is_gone(proc):
                proc.kill()
    out = log_path.read_text(errors="replace")
    assert honcho.returncode == 143, out  # honcho's exit status for "stopped by SIGTERM"
    # gunicorn stopped by itself (honcho's own rc line is the shell's: `sh -c` gets the
    # SIGTERM too, as every process of a dyno does), and the session before it.
    assert "Shutting down: Master" in out and "status qr -> stopped" in out, out
    masked = postgres.url.replace(pg.PASSWORD, "***")
    assert f"messages and backups in PostgreSQL {masked} (from DATABASE_URL)" in out, out
    assert pg.PASSWORD not in out and key not in out
    record = json.loads((data / f"session-{client_id}.json").read_text())
    assert record["lastCleanShutdownAt"], "the browser was not closed properly"
    print(f"honcho: SIGTERM to every process gone in {took:.2f} s")


def test_honcho_is_pinned_for_the_tests():
    pins = (ROOT / "requirements-dev.txt").read_text().split()
    assert any(re.fullmatch(r"honcho==[\d.]+", pin) for pin in pins), pins


# -- bin/post_compile (Heroku's build hook; make run, demo and bench) -------------------------

def _imports(tree, env, modules: str) -> tuple[set[str], set[str]]:
    """(whatsapp modules loaded from bytecode, those compiled from source) when `modules` is
    imported in `tree` by an interpreter that may not write its cache (as on a read-only slug)."""
    out = subprocess.run([sys.executable, "-v", "-c", f"import {modules}"], cwd=tree, capture_output=True,
                         text=True, timeout=60, env={**env, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    cached = set(re.findall(r"^# code object from '.*/(whatsapp/\S+)\.cpython-\d+\.pyc'$", out.stderr, re.M))
    compiled = set(re.findall(r"^# code object from .*/(whatsapp/\S+)\.py$", out.stderr, re.M))
    return {c.replace("/__pycache__", "") for c in cached}, compiled


def test_post_compile_leaves_bytecode_that_a_start_uses_and_never_when_stale(tmp_path):
    tree = tmp_path / "app"
    shutil.copytree(ROOT / "whatsapp", tree / "whatsapp", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("server.py", "gunicorn.conf.py", "bin"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, tree / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    modules = "whatsapp.early, whatsapp.api.routes"

    assert _imports(tree, env, modules)[0] == set(), "no bytecode before the hook"
    done = subprocess.run([str(tree / "bin" / "post_compile")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**env, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    sources = {str(p.relative_to(tree).with_suffix("")) for p in (tree / "whatsapp").rglob("*.py")}
    cached, compiled = _imports(tree, env, modules)
    assert compiled == set(), compiled
    assert {"whatsapp/early", "whatsapp/session/steps", "whatsapp/api/routes"} <= cached <= sources

    # A source changed after the build: its bytecode no longer matches and is not used.
    with (tree / "whatsapp" / "early.py").open("a") as f:
        f.write("\n# changed after the build\n")
    cached, compiled = _imports(tree, env, modules)
    assert compiled == {"whatsapp/early"} and "whatsapp/early" not in cached
