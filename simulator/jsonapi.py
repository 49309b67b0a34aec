"""JSON request parsing and JSON errors, shared by the phone side and the page's endpoints.

Every error under `/_phone/` and `/_wa/` is `{"error": "<code>", "message": "<sentence>"}`
with a 4xx/5xx status, never an HTML page and never a 500 for bad input.
"""

import math

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

from .options import SimError

JSON_PREFIXES = ("/_phone/", "/_wa/")


def error(status: int, code: str, message: str):
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


def body() -> dict:
    """The request's JSON object; an empty body is `{}`. Anything else is a 400."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise SimError(400, "bad_json", "The body must be a JSON object.")
    return data


def number(data: dict, name: str, *, integer: bool, maximum: float):
    """`data[name]` as a finite number in [0, maximum] (a whole one if `integer`)."""
    if name not in data:
        raise SimError(400, "missing_field", f"'{name}' is required.")
    value = data[name]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise SimError(400, "bad_field", f"'{name}' must be {kind}.")
    if not math.isfinite(value) or value < 0 or value > maximum:
        raise SimError(400, "bad_field", f"'{name}' must be between 0 and {maximum:g}.")
    return value


def string(data: dict, name: str, *, optional: bool = False, maximum: int = 4096) -> str | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > maximum:
        raise SimError(400, "bad_field", f"'{name}' must be a non-empty string.")
    return value


def query_int(name: str, default=None):
    """The query argument `name` as a whole number >= 0 (`default` when absent)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 12:
        raise SimError(400, "bad_field", f"'{name}' must be a whole number.")
    return int(raw)


def register(app):
    """Install the JSON error handlers on `app`."""

    @app.errorhandler(SimError)
    def _sim_error(exc: SimError):
        return error(exc.status, exc.error, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if not request.path.startswith(JSON_PREFIXES):
            return exc
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.code or 400, "bad_request")
        response = error(exc.code or 400, code, exc.description or exc.name)
        allowed = getattr(exc, "valid_methods", None)  # only MethodNotAllowed has them
        if exc.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response
