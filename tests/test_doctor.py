"""`python -m whatsapp doctor` as an operator runs it: a real process, real Chromium, the
simulator as WhatsApp Web, a real PostgreSQL; after every run nothing it started is left.

Each run gets a mark in its environment and a temporary folder of its own (TMPDIR): any
process carrying the mark, or naming that folder on its command line, is one the doctor
started (Chromium's crash handlers leave its session but keep its environment).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest
from harness import ROOT, TEST_ENV

from whatsapp.doctor import CHECKS
from whatsapp.persistence.database.connection import lock_key

E2E = True
RUN_TIMEOUT_S = 120
NAMES = [name for name, _ in CHECKS]
LINE = re.compile(rf"^(ok|warn|FAIL)\s+({'|'.join(map(re.escape, NAMES))})\s+(.+)$")


@dataclass
class Run:
    code: int
    out: str
    err: str
    lines: dict[str, tuple[str, str]]  # check name -> (verdict, text)

    def verdict(self, name: str) -> str:
        return self.lines[name][0]

    def text(self, name: str) -> str:
        return self.lines[name][1]


@pytest.fixture
def scratch():
    """A short TMPDIR for the doctor (pytest's own folders are too deep for Chromium's socket)."""
    folder = Path(tempfile.mkdtemp(prefix="doctor-test-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def doctor(scratch: Path, **env: str) -> Run:
    """One `python -m whatsapp doctor` with the given variables and no others of the server's;
    `scratch` is its TMPDIR unless `env` gives one."""
    mark = secrets.token_hex(8)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("WHATSAPP_", "CHROME", "DATABASE_URL", "DYNO"))}
    full = {**base, "WHATSAPP_CHROME_ARGS": TEST_ENV["WHATSAPP_CHROME_ARGS"], "TMPDIR": str(scratch),
            "DOCTOR_TEST_MARK": mark, **env}
    proc = subprocess.run([sys.executable, "-m", "whatsapp", "doctor"], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    # Right away, no waiting: the doctor itself waits for what it started before it exits.
    tmpdir = Path(full["TMPDIR"])
    left = leftovers(mark, tmpdir)
    assert not left, f"the doctor left processes running: {left}\n{proc.stdout}"
    assert not list(tmpdir.iterdir()), f"the doctor left files in its TMPDIR: {list(tmpdir.iterdir())}"
    lines = {}
    for line in proc.stdout.splitlines():
        match = LINE.match(line)
        if match:
            lines[match[2]] = (match[1], match[3])
    assert list(lines) == NAMES, f"one line per check, in order:\n{proc.stdout}\n{proc.stderr}"
    return Run(proc.returncode, proc.stdout, proc.stderr, lines)


def leftovers(mark: str, scratch: Path) -> list[tuple[int, str]]:
    found = []
    for proc in psutil.process_iter(["cmdline", "name", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if str(scratch) in " ".join(proc.info["cmdline"] or []) or proc.environ().get("DOCTOR_TEST_MARK") == mark:
                found.append((proc.pid, proc.info["name"]))
        except psutil.Error:
            continue
    return found


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def test_passes_here(sim, data_dir, scratch):
    run = doctor(scratch, WHATSAPP_WEB_URL=sim.url, WHATSAPP_SESSION_DIR=str(data_dir))
    assert run.code == 0, run.out + run.err
    assert {name: verdict for name, (verdict, _) in run.lines.items() if verdict != "ok"} == {"api key": "warn"}, run.out
    assert "Chromium 1" in run.text("chromium") and "ChromeDriver 1" in run.text("chromium")
    assert "Chromium (headless) started" in run.text("browser") and "language en-US" in run.text("browser")
    assert "owner-only (0700)" in run.text("data folder")
    assert f"{sim.url} answered 200" in run.text("whatsapp web")
    assert "none set" in run.text("database")
    assert "no key was generated yet" in run.text("api key") and "WHATSAPP_API_KEY" in run.text("api key")
    assert run.out.rstrip().endswith("doctor: all 8 checks passed (1 warning)")
    assert list(data_dir.iterdir()) == [], "the doctor changed the data folder (a probe left, a key generated?)"


def test_a_generated_key_or_local_only(sim, data_dir, scratch):
    (data_dir / "api-key").write_text("k" * 43 + "\n")
    os.chmod(data_dir / "api-key", 0o600)
    run = doctor(scratch, WHATSAPP_WEB_URL=sim.url, WHATSAPP_SESSION_DIR=str(data_dir))
    assert run.verdict("api key") == "ok" and "api-key" in run.text("api key"), run.out
    run = doctor(scratch, WHATSAPP_WEB_URL=sim.url, WHATSAPP_SESSION_DIR=str(data_dir), WHATSAPP_LOCAL_ONLY="1")
    assert run.code == 0 and run.verdict("api key") == "warn" and "WHATSAPP_LOCAL_ONLY=1" in run.text("api key")


def test_fails_naming_chrome_bin_and_still_checks_the_rest(sim, data_dir, scratch, tmp_path):
    nowhere = tmp_path / "no-such" / "chromium"
    run = doctor(scratch, WHATSAPP_WEB_URL=sim.url, WHATSAPP_SESSION_DIR=str(data_dir), CHROME_BIN=str(nowhere))
    assert run.code == 1, run.out
    assert run.verdict("configuration") == "FAIL" and "CHROME_BIN: not an executable file" in run.text("configuration")
    assert run.verdict("chromium") == "FAIL" and "CHROME_BIN" in run.text("chromium")
    assert run.verdict("browser") == "FAIL"
    # Config refuses CHROME_BIN, yet everything that does not depend on it was checked.
    for name in ("data folder", "disk", "whatsapp web", "database"):
        assert run.verdict(name) == "ok", run.out
    assert run.out.rstrip().splitlines()[-1] == "doctor: 3 of 8 checks failed (1 warning): configuration, chromium, browser"


def test_a_tmpdir_too_long_for_chromium_is_named(sim, data_dir, scratch):
    # 108 bytes for the socket path: Chromium 156 exits at start (107 works).
    deep = scratch / ("d" * (107 - len(str(scratch)) - len("/org.chromium.Chromium.XXXXXX/SingletonSocket")))
    deep.mkdir()
    run = doctor(scratch, WHATSAPP_WEB_URL=sim.url, WHATSAPP_SESSION_DIR=str(data_dir), TMPDIR=str(deep))
    assert run.code == 1 and run.verdict("browser") == "FAIL", run.out
    assert f"TMPDIR {deep} is too long" in run.text("browser") and "TMPDIR=/tmp" in run.text("browser")


def test_another_bad_variable_is_one_line_and_blocks_only_its_checks(sim, data_dir, scratch):
    run = doctor(scratch, WHATSAPP_WEB_URL="ftp://example.invalid/", WHATSAPP_SESSION_DIR=str(data_dir),
                 WHATSAPP_MONITOR_INTERVAL_S="0")
    assert run.code == 1
    assert run.text("configuration").startswith(
        "WHATSAPP_WEB_URL: expected an http:// or https:// URL with a host (got 'ftp://example.invalid/') | "
        "WHATSAPP_MONITOR_INTERVAL_S: must be greater than 0"), run.out
    assert run.verdict("whatsapp web") == "FAIL" and "WHATSAPP_WEB_URL" in run.text("whatsapp web")
    assert run.verdict("chromium") == run.verdict("browser") == run.verdict("data folder") == "ok", run.out


def test_database_answers_and_its_owner_lock(postgres, sim, data_dir, scratch):
    env = {"WHATSAPP_WEB_URL": sim.url, "WHATSAPP_SESSION_DIR": str(data_dir), "WHATSAPP_DATABASE_URL": postgres.url}
    run = doctor(scratch, **env)
    assert run.code == 0, run.out
    assert run.verdict("database") == "ok" and "answers" in run.text("database") and "is free" in run.text("database")
    # Another server owns this client id: the same key as the product's (ownership.py).
    with psycopg.connect(postgres.url, autocommit=True) as rival:
        rival.execute("SELECT pg_advisory_lock(%s)", (lock_key("whatsapp-session:energenie-whatsapp"),))
        pid = rival.info.backend_pid
        run = doctor(scratch, **env)
        assert run.code == 0 and run.verdict("database") == "warn", run.out
        assert f"held by backend pid {pid}" in run.text("database")
        # The doctor let go of nothing it did not take: the rival still holds the lock.
        held = rival.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                             (pid,)).fetchone()
        assert held == (1,)
    assert "s3cret-pw" not in run.out + run.err


def test_fails_naming_the_database_when_it_is_down(postgres, sim, data_dir, scratch):
    postgres.stop_server()
    try:
        run = doctor(scratch, WHATSAPP_WEB_URL=sim.url, WHATSAPP_SESSION_DIR=str(data_dir),
                     WHATSAPP_DATABASE_URL=postgres.url)
    finally:
        postgres.start_server()
    assert run.code == 1, run.out
    assert run.verdict("database") == "FAIL", run.out
    text = run.text("database")
    assert "WHATSAPP_DATABASE_URL" in text and "does not answer" in text and f":{postgres.port}/" in text
    assert "s3cret-pw" not in run.out + run.err  # the URL is shown masked
    assert run.out.rstrip().splitlines()[-1] == "doctor: 1 of 8 checks failed (1 warning): database"


def test_usage():
    proc = subprocess.run([sys.executable, "-m", "whatsapp"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: python -m whatsapp doctor" in proc.stderr
