"""The doctor's checks of the configuration, the data folder, the network and the database.

Each takes the `Context` and returns a `Result` (report.py); none changes what the server
keeps. The browser's checks are in chromium.py.
"""
from __future__ import annotations

import http.client
import os
import secrets
import shutil
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..api.keys import KeyFileError, load_or_create
from ..config import Config
from ..persistence.database.connection import Database, DatabaseUnavailable
from ..persistence.database.ownership import Ownership
from .report import Context, Result, fail, ok, warn

WEB_TIMEOUT_S = 10.0
MIB = 1 << 20
# The profile of real WhatsApp Web grows to a few hundred MiB, the backups and messages add
# to it, and a full disk corrupts a login being written.
DISK_FAIL_BYTES = 200 * MIB
DISK_WARN_BYTES = 1024 * MIB


def configuration(ctx: Context) -> Result:
    if ctx.bad:
        return fail(" | ".join(ctx.bad.values()),
                    f"fix or unset {', '.join(ctx.bad)}: the server refuses to start until then "
                    "(the other checks ran with the default instead)")
    named = [variable for variable in Config.variables() if variable in ctx.env]
    return ok(f"valid (set: {', '.join(named)})" if named else "valid (nothing set: every default)")


def data_folder(ctx: Context) -> Result:
    folder = ctx.config.session_dir.absolute()
    if not folder.exists():
        parent = _existing_ancestor(folder)
        if os.access(parent, os.W_OK | os.X_OK):
            return ok(f"{folder} does not exist yet: the server creates it owner-only (0700) at its first start")
        return fail(f"{folder} does not exist and {parent} is not writable by uid {os.geteuid()}",
                    f"create it for the server's user: mkdir -m 700 {folder} && chown <user> {folder}")
    info = folder.stat()
    if info.st_uid != os.geteuid():
        return fail(f"{folder} belongs to uid {info.st_uid}, not to uid {os.geteuid()} who runs this",
                    f"run the server as its owner, or chown -R {os.geteuid()} {folder}")
    probe = folder / f".doctor-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"doctor\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        return fail(f"{folder} is not writable ({exc.strerror or exc})",
                    f"chmod 700 {folder}, or mount it read-write")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return warn(f"{folder} is writable but its mode is {mode:04o}: other users may read the login",
                    f"chmod 700 {folder} (the server tightens it at start too)")
    return ok(f"{folder} is writable and owner-only ({mode:04o})")


def disk(ctx: Context) -> Result:
    where = _existing_ancestor(ctx.config.session_dir.absolute())
    usage = shutil.disk_usage(where)
    found = f"{_size(usage.free)} free of {_size(usage.total)} where the data folder is ({where})"
    todo = "free some space: a full disk can corrupt the login while Chromium writes it"
    if usage.free < DISK_FAIL_BYTES:
        return fail(found, todo)
    if usage.free < DISK_WARN_BYTES:
        return warn(found, todo)
    return ok(found)


def web(ctx: Context) -> Result:
    """A bounded HEAD of WHATSAPP_WEB_URL (a GET when HEAD is refused), as the server's own
    reachability check asks it: any answer below 500 means it is there."""
    url = ctx.config.web_url
    started = time.monotonic()
    try:
        code = _status(url, "HEAD")
        if code in (405, 501):
            code = _status(url, "GET")
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, resets: OSError
        reason = getattr(exc, "reason", None) or exc
        return fail(f"{url} did not answer ({reason}; waited at most {WEB_TIMEOUT_S:g} s)",
                    "check the network, DNS, a proxy (HTTPS_PROXY) or a firewall; "
                    "WHATSAPP_WEB_URL is https://web.whatsapp.com/ outside tests")
    took = f"{time.monotonic() - started:.2f} s"
    if code >= 500:
        return fail(f"{url} answered {code} in {took}", "WhatsApp, or a proxy in between, is in trouble: try later")
    if code >= 400:
        return warn(f"{url} answered {code} in {took}: it is there, but refused this request",
                    "check that no proxy or firewall in between blocks this machine")
    return ok(f"{url} answered {code} in {took}")


def database(ctx: Context) -> Result:
    """When a database is configured: it answers, and the owner lock of this client id is
    free (taken with the server's own `Ownership`, so the same key, and released at once)."""
    config = ctx.config
    if not config.database_url:
        if ctx.env.get("DYNO"):
            return warn("none set, on a Heroku dyno: its files are wiped at every restart, and the login with them",
                        "heroku addons:create heroku-postgresql (DATABASE_URL is then used)")
        return ok("none set: backups and messages are kept in the data folder only")
    db = Database(config.database_url, config.database_timeout_s)
    name = f"{config.database_url_source} ({db.safe_url})"
    owner = Ownership(db, config.client_id)
    try:
        version = db.call("connect", lambda: _server_version(db))
        free = owner.acquire()
    except DatabaseUnavailable as exc:
        return fail(f"the database in {name} does not answer: {exc}",
                    f"start PostgreSQL or correct {config.database_url_source} (the server runs without it, "
                    "but keeps backups only on this disk until it answers)")
    finally:
        owner.release()
    if free:
        return ok(f"{name}: PostgreSQL {version} answers; the owner lock of client id "
                  f"{config.client_id!r} is free (taken and released)")
    holder = owner.status()
    return warn(f"{name}: PostgreSQL {version} answers, but the owner lock of client id {config.client_id!r} "
                f"is held by backend pid {holder['holderPid']} ({holder['holderApplication']} from "
                f"{holder['holderAddress'] or 'a local socket'} since {holder['holderSince']})",
                "another server drives this account (one running now, or an old dyno during a deploy): "
                "this one would wait as profile_locked until it lets go")


def api_key(ctx: Context) -> Result:
    config = ctx.config
    if config.api_key:
        form = "as a sha256 digest" if config.api_key.lower().startswith("sha256:") else "in the environment"
        return ok(f"WHATSAPP_API_KEY is set ({form}): clients send the key as X-Api-Key")
    if config.local_only:
        return warn("WHATSAPP_LOCAL_ONLY=1: without a key only clients on this machine are served, "
                    "never through a proxy", "for a server reached from outside unset it and set WHATSAPP_API_KEY")
    if ctx.env.get("DYNO"):
        return fail("WHATSAPP_API_KEY is unset on a Heroku dyno: a generated key is lost at every restart",
                    "heroku config:set WHATSAPP_API_KEY=$(openssl rand -hex 24)")
    path = config.api_key_path.absolute()
    if path.exists() or path.is_symlink():
        try:
            load_or_create(path)  # reads it (the file exists: nothing is generated)
        except KeyFileError as exc:
            return fail(str(exc), "the server refuses to start until then")
        return ok(f"WHATSAPP_API_KEY is unset; the server uses the key it generated in {path}: "
                  "clients send it as X-Api-Key")
    return warn(f"WHATSAPP_API_KEY is unset and no key was generated yet: the server makes one in {path} "
                "at its first start", "give clients that file's key (X-Api-Key), or set WHATSAPP_API_KEY")


def _status(url: str, method: str) -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WEB_TIMEOUT_S) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def _server_version(db: Database) -> str:
    with db.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / MIB:.0f} MiB"
