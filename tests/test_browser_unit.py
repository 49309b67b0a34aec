"""The browser's pure parts: chromedriver's log kept bounded while it runs."""
from __future__ import annotations

from pathlib import Path

from whatsapp.web.browser import Browser


def log_owner(path: Path) -> Browser:
    browser = Browser.__new__(Browser)  # only the log: no chromedriver needed
    browser.log_path = path
    return browser


def test_the_driver_log_is_cut_past_its_bound_and_the_old_part_kept(tmp_path):
    path = tmp_path / "chromedriver.log"
    path.write_bytes(b"x" * 1000)
    owner = log_owner(path)
    owner.bound_log(max_bytes=2000)
    assert path.stat().st_size == 1000, "under the bound: untouched"
    with open(path, "ab", buffering=0) as writer:  # as chromedriver --append-log writes
        writer.write(b"y" * 1500)
        owner.bound_log(max_bytes=2000)
        writer.write(b"z" * 10)
    assert (tmp_path / "chromedriver.log.1").read_bytes() == b"x" * 1000 + b"y" * 1500
    assert path.read_bytes() == b"z" * 10, "an appending writer goes on at the new end"


def test_a_missing_log_is_not_an_error(tmp_path):
    log_owner(tmp_path / "gone.log").bound_log(max_bytes=10)
