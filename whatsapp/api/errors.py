"""JSON errors for everything under /api/ (and /metrics): the contract's shape, never HTML.

Every error answer is `{"success": false, "error": "<code>", "message": "<sentence>"}`
(`schemas.ErrorBody`, which also documents it) with `Cache-Control: no-store`; no stack
trace or exception text ever reaches a client (it goes to the log). `gunicorn_write_error`
covers what gunicorn rejects before Flask sees it.
"""
from __future__ import annotations

import json
import logging
import re

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from .schemas import ErrorBody

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "payload_too_large",
    414: "uri_too_long", 415: "unsupported_media_type", 417: "expectation_failed",
    429: "too_many_requests", 431: "headers_too_large", 500: "internal_error",
    501: "not_implemented", 503: "unavailable", 504: "timeout",
}
_SLASHES = re.compile(r"/{2,}")


def is_api_path(path: str) -> bool:
    """True for paths that answer JSON and need access rights: /api, /api/..., /metrics.

    Repeated slashes are collapsed first so that `//api/x` cannot slip past the rules.
    """
    path = _SLASHES.sub("/", path or "/")
    return path in ("/api", "/metrics") or path.startswith(("/api/", "/metrics/"))


class ApiError(Exception):
    """Raised by handlers; rendered as `{"success": false, "error", "message"}`."""

    def __init__(self, status: int, message: str, error: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.error = error or _CODES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})


def error_body(status: int, message: str, error: str | None = None) -> dict:
    """The contract's error object, built by its declaration (`schemas.ErrorBody`)."""
    return ErrorBody(success=False, error=error or _CODES.get(status, "error"), message=message).model_dump()


def error_response(status: int, message: str, error: str | None = None, headers=None):
    response = jsonify(error_body(status, message, error))
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_message(exc: HTTPException) -> str:
    # Our own sentences for the common cases; werkzeug's descriptions are generic but
    # harmless (never an exception's text), so they stay for the rest.
    limit = request.max_content_length
    messages = {
        404: f"No such endpoint: {request.method} {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
        413: f"The body is too large (at most {limit} bytes)." if limit else None,
    }
    return (messages.get(exc.code) if exc.code else None) or exc.description or exc.name


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.error, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if not is_api_path(request.path):
            return exc
        headers = {}
        if exc.code == 405:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed))
        return error_response(exc.code or 500, _http_message(exc), headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # The trace goes to the log only; the client learns nothing about the code.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal error; see the server log.")


_GUNICORN_SENTENCES = {
    408: "the request did not arrive in time.",
    413: "the body is too large.",
    431: "the request's headers are too large.",
}


def gunicorn_write_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for `gunicorn.util.write_error`: gunicorn's answer to a request it cannot parse
    (bad request line, header, chunking...) in the contract's JSON shape instead of HTML.

    Install in gunicorn.conf.py: `gunicorn.util.write_error = errors.gunicorn_write_error`.
    `mesg` is gunicorn's description of the malformed input; it is not echoed back (it can
    quote the client's bytes), only logged by gunicorn itself.
    """
    from gunicorn import util

    sentence = _GUNICORN_SENTENCES.get(status_int, "the request could not be parsed.")
    body = json.dumps(error_body(status_int, f"{reason}: {sentence}")).encode()
    head = (f"HTTP/1.1 {int(status_int)} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nCache-Control: no-store\r\n"
            f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)
