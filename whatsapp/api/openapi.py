"""The OpenAPI 3.1 document, generated from the routes' declarations, and a page to read it.

    GET /api/whatsapp/openapi.json   the document (behind the key, like everything under /api/)
    GET /api/whatsapp/docs           Swagger UI, from files of the flask-swagger-ui package

`build(app)` walks the app's url_map: every rule under /api/ and /metrics must belong to a
view declared with an `operations.Operation` (or, for the routes `whatsapp.notify` adds, to
one of `OTHERS`), else it raises `Undeclared`; tests/test_openapi.py builds it, so a new
route cannot be forgotten. The schemas are pydantic's JSON Schema (2020-12, the dialect of
OpenAPI 3.1) of the very models that validate. What `access.py` answers on every path (401,
403 for unsafe methods, 413 for bodies) is added to each operation here.

Why the document is behind the key: the contract says every request under /api/ carries it,
and the document names every command an attacker could try; a browser opening /docs asks
for the key once (Basic auth) and then sends it for the document and the files too.
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, send_file
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import states
from ..messages import model as messages
from .access import MAX_BODY_BYTES
from .errors import ApiError, is_api_path
from .operations import Operation, Reply, declared, error
from .schemas import ErrorBody, OpenApiDocument
from .session_schemas import StreamEvent

blueprint = Blueprint("openapi", __name__)  # nested under /api/whatsapp by routes.py

TITLE = "energenie WhatsApp session server"
VERSION = "1"
# Two enums are both called Status: the document names them apart.
_NAMES = {states.Status: "SessionStatus", messages.Status: "MessageStatus"}
_REF = "#/components/schemas/"
_SWAGGER = resources.files("flask_swagger_ui") / "dist"
_HERE = Path(__file__).resolve().parent / "static"
ASSETS = {  # name -> (file, media type); nothing else is served
    "swagger-ui.css": (_SWAGGER / "swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": (_SWAGGER / "swagger-ui-bundle.js", "text/javascript"),
    "favicon-32x32.png": (_SWAGGER / "favicon-32x32.png", "image/png"),
    "docs.js": (_HERE / "docs.js", "text/javascript"),
    "docs.css": (_HERE / "docs.css", "text/css"),
}
# 'self' only: no inline script or style, no CDN, nothing from anywhere else.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

OPENAPI = Operation("This document (OpenAPI 3.1)", tags=("docs",),
                    replies={200: Reply("Generated from the routes' declarations.", OpenApiDocument)})
DOCS = Operation("The API's docs page (Swagger UI)", tags=("docs",),
                 description="Served from this server only (no CDN); its CSP allows 'self' only.",
                 replies={200: Reply("The page.", media={"text/html": None})})
ASSET = Operation("A file of the docs page", tags=("docs",),
                  path={"asset": {"type": "string", "enum": sorted(ASSETS)}},
                  replies={200: Reply("The file.", media=dict.fromkeys(("text/css", "text/javascript", "image/png"))),
                           404: error("No such file.", "not_found")})
# Routes whatsapp.notify adds with its own views (bound methods, which cannot carry a mark).
OTHERS = {
    "notify_events": Operation(
        "Live events (Server-Sent Events)", tags=("events",),
        description="First `retry: 3000` and a `status` event with the current snapshot (`initial: true`), "
                    "then every event as `event: <name>`, `id: <seq>`, `data: {event, seq, timestamp, data}` "
                    "(the webhook body), a `: keep-alive` comment after 15 s of silence. Events: `status`, "
                    "`qr`, `ready`, `message_sent`, `message_delivered`, `message_read`, `message_failed`, "
                    "`message_received`...",
        replies={200: Reply("The stream; it does not end by itself.", media={"text/event-stream": StreamEvent}),
                 503: error("Too many streams (`WHATSAPP_EVENTS_MAX_LISTENERS`), or shutting down.",
                            "unavailable", headers={"Retry-After": "Seconds to wait before reconnecting."})}),
    "notify_metrics": Operation("Prometheus metrics", tags=("metrics",),
                                replies={200: Reply("The text exposition format.", media={"text/plain": None})}),
}
_ACCESS = {
    401: error("No valid API key (`X-Api-Key`, or the Basic auth password).", "unauthorized",
               headers={"WWW-Authenticate": '`Basic realm="whatsapp"` on GET, so that a browser asks.'}),
    403: error("An unsafe method from another site's page (Origin or Sec-Fetch-Site).", "forbidden_origin"),
    413: error(f"The body is over {MAX_BODY_BYTES // 1024} KiB.", "payload_too_large"),
}
_TAGS = [("session", "The one WhatsApp Web session: status and commands."),
         ("qr", "Linking a phone."), ("messages", "The durable outbox and the messages received."),
         ("events", "Live notifications."), ("metrics", "For Prometheus."), ("docs", "This documentation.")]


class Undeclared(RuntimeError):
    """A route under /api/ or /metrics has no declaration: it would be missing from the document."""


def document(app: Flask) -> dict[str, Any]:
    """The app's document, built once (the url_map does not change once the app serves)."""
    cached = app.extensions.get("openapi")
    if cached is None:
        cached = app.extensions["openapi"] = build(app)
    return cached


def operation_of(app: Flask, endpoint: str) -> Operation | None:
    return declared(app.view_functions[endpoint]) or OTHERS.get(endpoint)


def build(app: Flask) -> dict[str, Any]:
    """Generate the document from the url_map and the declarations; raises Undeclared."""
    found: list[tuple[str, str, str, Operation]] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if not is_api_path(rule.rule):
            continue
        operation = operation_of(app, rule.endpoint)
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        if operation is None or len(methods) != 1:
            raise Undeclared(f"{rule.rule} ({rule.endpoint}, {', '.join(methods)}): declare one Operation per "
                             "route and method (whatsapp/api/operations.py)")
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found.append((path, methods[0].lower(), rule.endpoint, operation))
    schemas = _schemas([op for *_, op in found])
    paths: dict[str, dict[str, Any]] = {}
    for path, method, endpoint, operation in found:
        paths.setdefault(path, {})[method] = _operation(path, method, endpoint, operation, schemas)
    for _path, _method, _endpoint, operation in found:  # parameters, not bodies: no components of their own
        for model in (operation.query, operation.headers):
            if model is not None:
                schemas["components"].pop(_component(schemas, model), None)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": _description()},
        "tags": [{"name": name, "description": text} for name, text in _TAGS],
        "security": [{"apiKey": []}, {"basic": []}],
        "paths": paths,
        "components": {"schemas": schemas["components"], "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                       "description": "`WHATSAPP_API_KEY`, or the key the server generated in `<data dir>/api-key`."},
            "basic": {"type": "http", "scheme": "basic",
                      "description": "Any user name, the key as the password (so that a browser can ask)."}}},
    }


def _schemas(operations: list[Operation]) -> dict[str, Any]:
    """JSON Schema of every model, once: {"components": {name: schema}, "refs": {model: {"$ref"}}}."""
    models: set[type[BaseModel]] = {ErrorBody}
    for operation in operations:
        models.update(m for m in (operation.body, operation.query, operation.headers) if m is not None)
        for reply in operation.replies.values():
            models.update(m for m in (reply.model, *reply.media.values()) if m is not None)
    ordered = sorted(models, key=lambda model: model.__name__)
    refs, top = models_json_schema([(model, "validation") for model in ordered], ref_template=_REF + "{model}")
    # pydantic names two classes of one name module__qualname: give them names of their own.
    renames = {re.sub(r"[^a-zA-Z0-9.\-_]", "_", f"{cls.__module__}.{cls.__qualname__}").replace(".", "__"): name
               for cls, name in _NAMES.items()}
    components = {renames.get(name, name): schema for name, schema in top.get("$defs", {}).items()}
    for schema in components.values():  # pydantic titles each property after its name: noise
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
    return {"components": _renamed(components, renames),
            "refs": {model: _renamed(refs[(model, "validation")], renames) for model in ordered}}


def _renamed(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: (_REF + renames.get(item[len(_REF):], item[len(_REF):]) if key == "$ref" else
                      _renamed(item, renames)) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item, renames) for item in value]
    return value


def _operation(path: str, method: str, endpoint: str, operation: Operation, schemas: dict[str, Any]) -> dict:
    result: dict[str, Any] = {"operationId": endpoint.replace(".", "_"), "summary": operation.summary}
    if operation.description:
        result["description"] = operation.description
    if operation.tags:
        result["tags"] = list(operation.tags)
    parameters = [_parameter(name, "path", True, dict(operation.path.get(name, {"type": "string"})))
                  for name in re.findall(r"{([^}]+)}", path)]
    for where, model in (("query", operation.query), ("header", operation.headers)):
        if model is not None:
            parameters += _parameters(where, model, schemas)
    if parameters:
        result["parameters"] = parameters
    if operation.body is not None:
        result["requestBody"] = {"required": operation.body_required, "content": {
            "application/json": {"schema": schemas["refs"][operation.body]}}}
    replies = dict(operation.replies)
    replies.setdefault(401, _ACCESS[401])
    if method not in ("get", "head", "options"):
        replies.setdefault(403, _ACCESS[403])
    if operation.body is not None:
        replies.setdefault(413, _ACCESS[413])
    result["responses"] = {str(status): _reply(replies[status], method, schemas) for status in sorted(replies)}
    return result


def _component(schemas: dict[str, Any], model: type[BaseModel]) -> str:
    return schemas["refs"][model]["$ref"].rsplit("/", 1)[1]


def _parameters(where: str, model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = schemas["components"][_component(schemas, model)]
    return [_parameter(field, where, field in schema.get("required", []), _not_null(dict(prop)))
            for field, prop in schema.get("properties", {}).items()]


def _parameter(name: str, where: str, required: bool, schema: dict[str, Any]) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": where, "required": required}
    if "description" in schema:  # said of the parameter, where a reader looks
        parameter["description"] = schema.pop("description")
    return {**parameter, "schema": schema}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A parameter is absent or a string, never null: `X | None = None` documents as X."""
    branches = prop.get("anyOf", [])
    if {"type": "null"} in branches and prop.get("default", ...) is None:
        kept = [branch for branch in branches if branch != {"type": "null"}]
        prop = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")},
                **(kept[0] if len(kept) == 1 else {"anyOf": kept})}
    return prop


def _reply(reply: Reply, method: str, schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    content: dict[str, Any] = {}
    if reply.model is not None:
        schema = dict(schemas["refs"][reply.model])
        if reply.codes:  # this answer's `error` codes
            schema = {"allOf": [schema], "properties": {"error": {"enum": list(reply.codes)}}}
        content["application/json"] = {"schema": schema}
    for media, model in reply.media.items():
        if model is not None:
            content[media] = {"schema": schemas["refs"][model]}
        else:  # text is a string; binary (image/png) has no schema to give
            content[media] = {"schema": {"type": "string"}} if media.startswith("text/") else {}
    if content:
        out["content"] = content
    headers = {name: text for name, text in reply.headers.items() if name != "WWW-Authenticate" or method == "get"}
    if headers:
        out["headers"] = {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()}
    if reply.links:
        out["links"] = {name: {"operationId": target.replace(".", "_"), "parameters": dict(parameters)}
                        for name, (target, parameters) in reply.links.items()}
    return out


def _description() -> str:
    return ("Keeps one WhatsApp account logged in through WhatsApp Web and sends and receives messages.\n\n"
            "Every request under `/api/` (and `/metrics`) carries the API key, as `X-Api-Key` or as the password "
            "of HTTP Basic auth. A POST whose `Origin` is another site's is refused with 403. Every error is "
            "`{\"success\": false, \"error\": \"<code>\", \"message\": \"<sentence>\"}`, also for unknown routes "
            "(404) and wrong methods (405).")


# -- the routes ---------------------------------------------------------------------------------

@blueprint.get("/openapi.json")
@OPENAPI
def openapi_json() -> Response:
    return OPENAPI.reply(200, document(current_app))


@blueprint.get("/docs")
@DOCS
def docs() -> Response:
    response = send_file(_HERE / "docs.html", mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@blueprint.get("/docs/<asset>")
@ASSET
def docs_asset(asset: str) -> Response:
    if asset not in ASSETS:
        raise ApiError(404, f"No file {asset} here.", "not_found")
    path, media = ASSETS[asset]
    with resources.as_file(path) as real:  # a package's file (flask-swagger-ui's) or ours
        return send_file(real, mimetype=media)
