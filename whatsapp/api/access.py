"""Who may call the API: the key, the local development mode, the Origin check, safe answers.

`init_app(app, config)` installs the rules for every path `errors.is_api_path` names
(/api/..., /metrics), in this order (contract section 3, Access):

1. An unsafe method (anything but GET/HEAD/OPTIONS) from a browser page of another origin
   is refused with 403, whoever asks: a web page must never log the account out.
2. A request carrying the key, as `X-Api-Key: <key>` or as the password of HTTP Basic auth
   (any user name), is served from anywhere. The key is `WHATSAPP_API_KEY` (or the key whose
   sha256 it gives as `sha256:<hex>`); unset, the key generated in `<data dir>/api-key`
   (`keys.py`). Compared as sha256 digests in constant time; never taken from the URL, never
   logged.
3. With `WHATSAPP_LOCAL_ONLY=1` only (development), a request without the key is served when
   it is `is_local_request`: a loopback peer, a Host of localhost, 127.0.0.1 or [::1], none of
   `FORWARDING_HEADERS`, and HTTP/1.1 or later (nginx's default `proxy_pass` speaks HTTP/1.0
   and adds no header: this refuses it; a proxy that speaks HTTP/1.1 and adds nothing cannot
   be told from a local client, hence "never behind a proxy"). No key file is generated in
   this mode unless a key is set; with a key set as well, the key still works from anywhere.
4. Everything else gets 401 naming `WHATSAPP_API_KEY` (with a Basic challenge on GET/HEAD so
   that a browser prompts).
5. Bodies over `MAX_BODY_BYTES` get 413.

Every answer on those paths gets `no-store` and the security headers below; an error that
is not already JSON (a redirect, a stray HTML page) is replaced by the contract's shape.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import re
from urllib.parse import urlsplit

from flask import Flask, Response, request

from ..config import Config
from . import keys
from .errors import ApiError, error_body, is_api_path

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Exactly the contract's header; the key is compared as UTF-8 bytes whatever the browser sends.
CHALLENGE = 'Basic realm="whatsapp"'
# Host names a DNS-rebinding page cannot make a browser send: only a page that is itself
# on localhost can. The port may be anything.
_LOCAL_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A request that went through a proxy which says so: its client is somewhere else.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP", "Via")
# HTTP versions no current local client uses, but nginx's default proxy_pass does (1.0).
_OLD_PROTOCOLS = frozenset({"HTTP/1.0", "HTTP/0.9"})

_LOCAL_ONLY_MESSAGE = ("This server runs with WHATSAPP_LOCAL_ONLY=1: without a key it serves only clients "
                       "on this machine that address it as localhost, 127.0.0.1 or [::1] directly, not "
                       "through a proxy; other clients need the key set in WHATSAPP_API_KEY.")
_KEY_MESSAGE = ("A valid API key is required: send it as the X-Api-Key header or as the password of "
                "HTTP Basic auth (WHATSAPP_API_KEY, or when that is unset the key the server generated "
                "in the file api-key of its data folder).")


@dataclasses.dataclass(frozen=True)
class Rules:
    """What `_check_access` enforces: the key's sha256 (None: no key) and the local mode."""
    digest: bytes | None
    local_only: bool


def is_loopback(address: str | None) -> bool:
    """True when `address` (a REMOTE_ADDR) is a loopback IP, IPv4-mapped IPv6 included."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:  # empty, a unix socket path, garbage
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def is_local_host(host: str | None) -> bool:
    """True when a Host header names the loopback by a name only a local page can use."""
    return host is not None and _LOCAL_HOST.fullmatch(host.strip()) is not None


def key_matches(digest: bytes, x_api_key: str | None, authorization: str | None) -> bool:
    """True when the X-Api-Key header or the Basic auth password hashes to `digest` (sha256).

    Header strings come from WSGI as latin-1; encoding them back gives the bytes the client
    sent. Both candidates are always hashed and compared, so that which header was used, and
    the key's length, do not show in the timing. An empty candidate never matches.
    """
    candidates = [_raw(x_api_key) if x_api_key is not None else None, _basic_password(authorization)]
    matched = False
    for given in candidates:
        presented = hashlib.sha256(given or b"").digest()
        matched |= hmac.compare_digest(presented, digest) and bool(given)
    return matched


def is_local_request(peer: str | None, headers, protocol: str | None) -> bool:
    """The WHATSAPP_LOCAL_ONLY test (module docstring, rule 3): a client on this machine that
    talks to the server directly. `headers` is any case-insensitive mapping."""
    return (is_loopback(peer) and is_local_host(headers.get("Host"))
            and not any(name in headers for name in FORWARDING_HEADERS)
            and (protocol or "").strip().upper() not in _OLD_PROTOCOLS)


def _raw(header: str) -> bytes:
    try:
        return header.encode("latin-1")
    except UnicodeEncodeError:  # not from WSGI (a test client): take it as UTF-8
        return header.encode("utf-8", "surrogatepass")


def _basic_password(authorization: str | None) -> bytes | None:
    scheme, _, param = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(_raw(param.strip()), validate=True)
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(b":")
    return password if colon else None


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin-style URL; None when it is not one (`null` too)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def own_origin(host: str | None, scheme: str, forwarded_proto: str | None) -> tuple[str, str, int] | None:
    """The origin a browser uses for this server: the Host header and the scheme.

    Behind a TLS-terminating router (Heroku) the scheme is the router's `X-Forwarded-Proto`.
    Trusting it is safe here: a browser page cannot set it on a request without a CORS
    preflight, which this server never grants, and the Origin check only guards browsers.
    """
    proto = (forwarded_proto or "").split(",")[0].strip().lower()
    scheme = proto if proto in _DEFAULT_PORTS else scheme
    return origin_of(f"{scheme}://{host}") if host else None


def foreign_origin(method: str, headers, scheme: str) -> str | None:
    """Why an unsafe request comes from another site's page, or None when it does not."""
    if method.upper() in SAFE_METHODS:
        return None
    # Fetch metadata: sent by current browsers even where Origin might be omitted.
    if headers.get("Sec-Fetch-Site", "").strip().lower() in ("cross-site", "same-site"):
        return "a cross-site request"
    origin = headers.get("Origin")
    if origin is None:  # curl, scripts: no browser page involved
        return None
    mine = own_origin(headers.get("Host"), scheme, headers.get("X-Forwarded-Proto"))
    theirs = origin_of(origin)
    if theirs is None or mine is None or theirs != mine:
        return "a page of another origin"
    return None


def _peer_address() -> str | None:
    # The socket's peer, never X-Forwarded-For: a remote client could forge that header.
    # If a ProxyFix is ever added it rewrites REMOTE_ADDR but keeps the original here.
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR")


def _refuse(status: int, message: str, reason: str, error: str | None = None):
    # Method, path and peer only: never a header value, so never the key.
    log.info("refused %s %s from %s: %s", request.method, request.path, _peer_address(), reason)
    headers = {}
    if status == 401 and request.method in ("GET", "HEAD"):
        headers["WWW-Authenticate"] = CHALLENGE
    raise ApiError(status, message, error, headers)


def _check_access(rules: Rules) -> None:
    if not is_api_path(request.path):
        return
    why = foreign_origin(request.method, request.headers, request.scheme)
    if why:
        _refuse(403, "Refused: state-changing requests from another site's page are not accepted.",
                f"unsafe method from {why}", "forbidden_origin")
    keyed = rules.digest is not None and key_matches(
        rules.digest, request.headers.get("X-Api-Key"), request.headers.get("Authorization"))
    if not keyed:
        if not rules.local_only:
            _refuse(401, _KEY_MESSAGE, "missing or wrong API key")
        if not is_local_request(_peer_address(), request.headers, request.environ.get("SERVER_PROTOCOL")):
            _refuse(401, _LOCAL_ONLY_MESSAGE if rules.digest is None else _KEY_MESSAGE,
                    "no valid API key and not a direct local client")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(413, f"The body is too large (at most {MAX_BODY_BYTES} bytes).")


_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Another site may not embed these answers (e.g. the QR image in an <img>).
    "Cross-Origin-Resource-Policy": "same-origin",
}
# For everything but the QR page, which sets its own nonce-based policy.
_DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def _secure(response: Response) -> Response:
    if not is_api_path(request.path):
        return response
    if response.status_code >= 300 and response.mimetype != "application/json":
        # A redirect or HTML error page that bypassed the error handlers: same status and
        # headers (Location, Allow...), the contract's JSON body instead.
        message = (f"See {response.headers['Location']}" if "Location" in response.headers
                   else f"Request failed ({response.status}).")
        response.set_data(json.dumps(error_body(response.status_code, message)))
        response.mimetype = "application/json"
    elif (request.method == "OPTIONS" and response.status_code == 200 and not response.is_streamed
          and not response.get_data()):
        # Flask's automatic answer: empty but labelled text/html. Say "nothing" properly.
        response.status_code = 204
        del response.headers["Content-Type"]
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", _DEFAULT_CSP)
    # Live state behind credentials: no cache (shared or browser) may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def rules_for(config: Config) -> Rules:
    """The rules for `config`: its key, else the generated one (created at the first start),
    else none in WHATSAPP_LOCAL_ONLY mode. Raises `keys.KeyFileError` (a ConfigError) when
    the key file is unusable. Logs where the key is and the local mode, never a key."""
    if config.api_key:
        digest: bytes | None = keys.key_digest(config.api_key)
    elif config.local_only:
        digest = None
    else:
        key, created = keys.load_or_create(config.api_key_path)
        digest = keys.key_digest(key)
        log.log(logging.WARNING if created else logging.INFO,
                "WHATSAPP_API_KEY is not set: %s the API key in %s (owner-only); clients send it as "
                "X-Api-Key or as the Basic auth password", "generated" if created else "using",
                config.api_key_path)
    if config.local_only:
        log.warning("WHATSAPP_LOCAL_ONLY=1: clients on this machine that talk to the server directly "
                    "are served without a key (development only; never behind a reverse proxy)")
    return Rules(digest=digest, local_only=config.local_only)


def init_app(app: Flask, config: Config) -> None:
    """Install the access rules (`rules_for(config)`) and response headers on `app`."""
    rules = rules_for(config)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # `//api/x` would otherwise be answered by a redirect (HTML) before any rule ran.
    app.url_map.merge_slashes = False
    app.before_request(lambda: _check_access(rules))
    app.after_request(_secure)
