"""What a doctor check returns, and what every check is given.

A check is a function `check(ctx) -> Result`. It never raises for what it is checking (a
missing binary, a database that does not answer are results), is bounded in time, and leaves
nothing running. `Result.todo` says what to do; it is empty when the verdict is ok.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from ..config import Config


class Verdict(str, enum.Enum):
    OK = "ok"
    WARN = "warn"    # works, but worth knowing (exit status stays 0)
    FAIL = "FAIL"    # the server will not work as it should here (exit status 1)


@dataclasses.dataclass(frozen=True)
class Result:
    verdict: Verdict
    finding: str
    todo: str = ""

    def line(self, name: str, width: int) -> str:
        """`<verdict> <name> <finding>; <todo>`: one line whatever the finding holds."""
        text = self.finding + (f"; {self.todo}" if self.todo else "")
        return f"{self.verdict.value:<5} {name:<{width}} {' '.join(text.split())}"


def ok(finding: str) -> Result:
    return Result(Verdict.OK, finding)


def warn(finding: str, todo: str) -> Result:
    return Result(Verdict.WARN, finding, todo)


def fail(finding: str, todo: str) -> Result:
    return Result(Verdict.FAIL, finding, todo)


@dataclasses.dataclass
class Context:
    """The environment as given, the configuration the checks use, and what earlier checks
    found that later ones need.

    `config` is what `Config.from_env` accepts once every variable in `bad` is left out
    (those then have their defaults); `bad` maps each refused variable to the one-line error
    the server would print for it.
    """
    env: Mapping[str, str]
    config: Config
    bad: dict[str, str]
    # (Chromium, ChromeDriver) when both were found: the browser check starts them.
    binaries: tuple[str, str] | None = None
