"""What each route declares, once: its inputs and answers, as `Operation` objects.

    STATUS = Operation("The session now", tags=("session",), replies={200: Reply("...", StatusBody)})

    @blueprint.get("/status")
    @STATUS
    def status():
        return STATUS.reply(200, body)

The decorator only marks the view (`declared(view)` finds it); `openapi.py` walks the app's
url_map and writes the document from these objects. The handler reads its inputs through
the same object (`read_body`, `read_query`, `read_headers`), so that what is validated is
what is documented: a refusal is 400 `invalid_request` naming the field (`invalid`, the
validation-error hook), never pydantic's own shape. `reply` sends JSON and checks it
against the declared model of that status (every answer of the first `CHECK_ALL` of each
operation and status, then one in `CHECK_EVERY`: a check costs about a tenth of an
accept's CPU); a mismatch is logged (the answer still goes out: the document is wrong, not
the client) and fails the tests that read the log.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest

from ..messages.model import InvalidRequest
from .errors import ApiError
from .schemas import ErrorBody

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])
JSON = "application/json"
MISMATCH = "does not match its declaration"  # the log line tests look for
CHECK_ALL, CHECK_EVERY = 1000, 100
_answers: dict[tuple[int, int], itertools.count] = {}  # (id of the Operation, status) -> answers so far


@dataclasses.dataclass(frozen=True)
class Reply:
    """One documented answer. `model`: its JSON body; `media`: other media types, each with
    the model of its content (an event of a stream) or None (binary, or text); `codes`: for an
    error, the `error` codes it carries; `headers`: name to description; `links`: name to
    (endpoint, {parameter: runtime expression})."""

    description: str
    model: type[BaseModel] | None = None
    media: Mapping[str, type[BaseModel] | None] = dataclasses.field(default_factory=dict)
    codes: tuple[str, ...] = ()
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    links: Mapping[str, tuple[str, Mapping[str, str]]] = dataclasses.field(default_factory=dict)


def error(description: str, *codes: str, headers: Mapping[str, str] | None = None) -> Reply:
    """An error answer in the contract's shape, with the `error` codes it may carry."""
    return Reply(description, ErrorBody, codes=codes, headers=headers or {})


@dataclasses.dataclass(frozen=True)
class Operation:
    """The declaration of one route and method; also its input readers and `reply`."""

    summary: str
    replies: Mapping[int, Reply]
    description: str = ""
    tags: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    path: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # parameter -> JSON Schema

    def __call__(self, view: View) -> View:
        view.__dict__["__openapi__"] = self
        return view

    # -- inputs ------------------------------------------------------------------------------
    def read_body(self) -> Any:
        """The JSON body validated by `body`; None when it is optional and empty. 415 when
        it is not JSON, 400 when it is not valid JSON or not valid."""
        assert self.body is not None, "read_body on an operation without a body"
        if not self.body_required and not request.get_data(cache=True):  # chunked bodies too
            return None
        if not request.is_json:
            raise ApiError(415, "Send the body as JSON with Content-Type: application/json"
                           + ("." if self.body_required else ", or send none."))
        try:
            decoded = request.get_json(silent=False)
        except BadRequest:
            raise ApiError(400, "body: not valid JSON", "invalid_request") from None
        return validate(self.body, decoded)

    def read_query(self) -> Any:
        """The query string validated by `query` (the first of repeated parameters)."""
        assert self.query is not None, "read_query on an operation without a query"
        return validate(self.query, request.args.to_dict(flat=True))

    def read_headers(self) -> Any:
        """The declared request headers validated by `headers`; others are not looked at."""
        assert self.headers is not None, "read_headers on an operation without headers"
        names = [field.alias or name for name, field in self.headers.model_fields.items()]
        return validate(self.headers, {name: request.headers[name] for name in names if name in request.headers})

    # -- answers -----------------------------------------------------------------------------
    def reply(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
        """`body` as JSON with `status`, checked against the model declared for that status
        (sampled past the first `CHECK_ALL` answers, see the module's docstring)."""
        declared = self.replies.get(status)
        assert declared is not None and declared.model is not None, f"status {status} is not declared"
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers or {})
        # next() of a count is atomic in CPython: threads never share a number.
        n = next(_answers.setdefault((id(self), status), itertools.count()))
        if n >= CHECK_ALL and n % CHECK_EVERY:
            return response
        try:
            declared.model.model_validate_json(response.get_data(), strict=True)
        except ValidationError as exc:
            # Where and what kind only: values can be message text or numbers.
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors()[:5])
            log.error("the answer %d of %s %s %s %s: %s", status, request.method, request.path, MISMATCH,
                      declared.model.__name__, problems)
        return response


def declared(view: Callable[..., Any]) -> Operation | None:
    """The Operation a view was declared with, or None."""
    found = getattr(view, "__openapi__", None)
    return found if isinstance(found, Operation) else None


def validate(model: type[BaseModel], data: object) -> Any:
    """`model.model_validate(data)`, a refusal raised as the contract's 400 (`invalid`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def invalid(exc: ValidationError) -> ApiError:
    """The validation-error hook: 400 `invalid_request` naming the first wrong field, with the
    sentence of model.py's rule when one refused (it travels in the error's context)."""
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidRequest):
        field, message = cause.field, cause.message
    else:
        field, message = ".".join(map(str, first["loc"])) or "body", first["msg"]
    return ApiError(400, f"{field}: {message}", "invalid_request")
