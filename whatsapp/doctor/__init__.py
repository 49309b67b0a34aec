"""`python -m whatsapp doctor` (`make doctor`): is this machine ready to run the server?

Contract:
- The checks run in the order of `CHECKS`, and each prints one line as soon as it is done:
  its verdict (`ok`, `warn`, `FAIL`), its name, what it found and, unless ok, what to do.
  The last line sums up and names the checks that failed.
- `run()` returns 0 when no check failed (warnings allowed), 1 otherwise.
- A bad variable is the `configuration` check's failure, as the one line the server would
  print; the other checks still run, with that variable's default, except those that depend
  on it (`NEEDS`), which fail naming it.
- Every check is bounded (10 s for a request, the database and driver timeouts of the
  configuration), and the doctor starts nothing that outlives it: the Chromium it starts is
  closed and every process of it waited for, then killed. It changes nothing the server keeps:
  the data folder is probed with a temporary file, the owner lock is released at once, no API
  key is generated.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from ..config import DATABASE_VARIABLES, Config, ConfigError
from . import checks, chromium
from .report import Context, Result, Verdict, fail

Check = Callable[[Context], Result]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("configuration", checks.configuration),
    ("chromium", chromium.binaries),
    ("browser", chromium.renders),
    ("data folder", checks.data_folder),
    ("disk", checks.disk),
    ("whatsapp web", checks.web),
    ("database", checks.database),
    ("api key", checks.api_key),
)
# The variables each check depends on: while one of them is refused the check cannot say
# anything about what the server would do.
NEEDS: dict[str, tuple[str, ...]] = {
    "chromium": ("CHROME_BIN", "CHROMEDRIVER_PATH"),
    "browser": ("CHROME_BIN", "CHROMEDRIVER_PATH", "WHATSAPP_HEADLESS", "WHATSAPP_USER_AGENT",
                "WHATSAPP_CHROME_ARGS", "WHATSAPP_DRIVER_TIMEOUT_S", "WHATSAPP_PAGE_TIMEOUT_S",
                "WHATSAPP_DRIVER_LOG"),
    "data folder": ("WHATSAPP_SESSION_DIR",),
    "disk": ("WHATSAPP_SESSION_DIR",),
    "whatsapp web": ("WHATSAPP_WEB_URL",),
    "database": (*DATABASE_VARIABLES, "WHATSAPP_DATABASE_TIMEOUT_S", "WHATSAPP_CLIENT_ID"),
    "api key": ("WHATSAPP_API_KEY", "WHATSAPP_LOCAL_ONLY", "WHATSAPP_SESSION_DIR"),
}
WIDTH = max(len(name) for name, _ in CHECKS)


def load_config(env: Mapping[str, str]) -> tuple[Config, dict[str, str]]:
    """The configuration with every refused variable left out, and those variables' errors."""
    remaining, bad = dict(env), dict[str, str]()
    while True:
        try:
            return Config.from_env(remaining), bad
        except ConfigError as exc:
            bad[exc.variable] = str(exc)
            if remaining.pop(exc.variable, None) is None:
                # Blamed on a variable that is not set (a default): nothing left to leave out.
                return Config(), bad


def run(env: Mapping[str, str], out: TextIO = sys.stdout) -> int:
    """Run every check, printing each line to `out`; 0 when none failed, else 1."""
    # The lines say everything; the product's own log lines (a lock taken, a database that
    # does not answer) would only repeat them in another form.
    logging.disable(logging.CRITICAL)
    try:
        config, bad = load_config(env)
        ctx = Context(env=env, config=config, bad=bad)
        print(f"whatsapp doctor: client id {config.client_id}, data folder {config.session_dir.absolute()}",
              file=out, flush=True)
        failed, warned = [], 0
        for name, check in CHECKS:
            result = _one(ctx, name, check)
            print(result.line(name, WIDTH), file=out, flush=True)
            if result.verdict is Verdict.FAIL:
                failed.append(name)
            warned += result.verdict is Verdict.WARN
        warnings = f" ({warned} warning{'s' * (warned != 1)})" if warned else ""
        if failed:
            print(f"doctor: {len(failed)} of {len(CHECKS)} checks failed{warnings}: {', '.join(failed)}",
                  file=out, flush=True)
            return 1
        print(f"doctor: all {len(CHECKS)} checks passed{warnings}", file=out, flush=True)
        return 0
    finally:
        logging.disable(logging.NOTSET)


def _one(ctx: Context, name: str, check: Check) -> Result:
    refused = [variable for variable in NEEDS.get(name, ()) if variable in ctx.bad]
    if refused:
        return fail(f"not checked: {ctx.bad[refused[0]]}", f"fix {refused[0]} or unset it")
    try:
        return check(ctx)
    except Exception as exc:  # a bug in a check: say so on its line, and the others still run
        return fail(f"the check itself failed: {type(exc).__name__}: {exc}", "please report this")
