"""Chromium's version, asked once and then read beside the binary's identity."""
from __future__ import annotations

import os

from whatsapp.web import version


def fake_chromium(folder, major: int):
    """A wrapper script that execs a 'binary' printing a version, counting each run."""
    real = folder / "lib" / "chromium"
    real.parent.mkdir(exist_ok=True)
    real.write_text(f"#!/bin/sh\necho run >> {folder}/runs\necho 'Chromium {major}.0.1234.5 built on Debian'\n")
    real.chmod(0o755)
    wrapper = folder / "chromium"
    wrapper.write_text(f"#!/bin/sh\nLIBDIR={folder}/lib\nAPPNAME=chromium\nexec $LIBDIR/$APPNAME \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper, real


def runs(folder) -> int:
    try:
        return len((folder / "runs").read_text().splitlines())
    except FileNotFoundError:
        return 0


def test_asked_once_then_read_from_the_cache_until_the_binary_changes(tmp_path):
    wrapper, real = fake_chromium(tmp_path, 150)
    cache = tmp_path / "chromium-version.json"
    assert str(real) in [entry[0] for entry in version.identity(str(wrapper))], "the exec'd binary counts"
    assert version.major_version(str(wrapper), cache) == 150 and runs(tmp_path) == 1
    version._major.cache_clear()  # a new process
    assert version.major_version(str(wrapper), cache) == 150 and runs(tmp_path) == 1, "read, not asked"
    fake_chromium(tmp_path, 151)  # the package is upgraded: the binary behind the wrapper changes
    os.utime(real, ns=(1, 1))
    version._major.cache_clear()
    assert version.major_version(str(wrapper), cache) == 151 and runs(tmp_path) == 2


def test_a_damaged_cache_is_asked_again_and_a_silent_binary_gives_none(tmp_path):
    wrapper, _ = fake_chromium(tmp_path, 149)
    cache = tmp_path / "chromium-version.json"
    cache.write_text("{not json")
    version._major.cache_clear()
    assert version.major_version(str(wrapper), cache) == 149
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexit 0\n")
    silent.chmod(0o755)
    assert version.major_version(str(silent), tmp_path / "other.json") is None


def test_the_early_read_and_the_launch_share_one_run(tmp_path, monkeypatch):
    # post_fork begins the read on a thread; the launch asking meanwhile waits for that same
    # answer instead of running Chromium a second time.
    wrapper, real = fake_chromium(tmp_path, 152)
    real.write_text(real.read_text().replace("echo run", "sleep 0.3; echo run"))
    version._major.cache_clear()
    monkeypatch.setattr(version, "_warming", None)
    version.warm_up_soon(str(wrapper), tmp_path)
    version.warm_up_soon(str(wrapper), tmp_path)  # once per process
    assert version.major_version(str(wrapper), version.cache_path(tmp_path)) == 152
    assert version._warming is not None
    version._warming.join(10)
    assert runs(tmp_path) == 1
