"""Finding the processes on a profile by their command line, as `sweep_orphans` does before
every launch (a direct read of /proc, split as psutil splits it)."""
from __future__ import annotations

import subprocess
import sys

import psutil
from harness import wait_for

from whatsapp.web import processes
from whatsapp.web.processes import _split_cmdline, processes_on_profile, profile_arg


def test_command_lines_split_as_psutil_splits_them():
    assert _split_cmdline(b"/usr/lib/chromium/chromium\0--user-data-dir=/a b\0--no-sandbox\0") == [
        b"/usr/lib/chromium/chromium", b"--user-data-dir=/a b", b"--no-sandbox"]
    # A zygote child rewrites its title into one space-separated string.
    assert _split_cmdline(b"/usr/lib/chromium/chromium --type=renderer --user-data-dir=/p\0") == [
        b"/usr/lib/chromium/chromium", b"--type=renderer", b"--user-data-dir=/p"]
    assert _split_cmdline(b"") == [b""]


def test_a_process_with_the_profile_argument_is_found_and_one_without_is_not(tmp_path):
    profile = tmp_path / "profile"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", profile_arg(profile)],
                              stdin=subprocess.PIPE)
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", profile_arg(profile) + "-other"],
                             stdin=subprocess.PIPE)
    try:
        wait_for(lambda: holder.pid in [p.pid for p in processes_on_profile(profile)], 10,
                 message="the process holding the profile's argument")
        found = processes_on_profile(profile)
        assert [p.pid for p in found] == [holder.pid]
        assert isinstance(found[0], psutil.Process)
        # The same answer as psutil's own scan.
        assert processes._pids_with_argument(profile_arg(profile)) == [
            p.pid for p in psutil.process_iter(["cmdline"]) if profile_arg(profile) in (p.info["cmdline"] or [])]
    finally:
        for proc in (holder, other):
            proc.communicate(b"", timeout=10)
