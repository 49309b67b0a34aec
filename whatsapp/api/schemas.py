"""The API's declarations: pydantic models that validate what comes in, check what goes out,
and from which `openapi.py` generates the document. Nothing else describes the wire format.

Requests are validated in Python mode (`model_validate` of the decoded JSON, the query
string, the headers). Each field runs the rule of `whatsapp.messages.model` first, on the
value as sent, so that a refusal is that rule's `InvalidRequest` (the field and the
contract's sentence); the declared constraints (type, length, pattern) are then enforced
too, so that whatever the API accepts is also what the document says it accepts.

Answers are checked in strict JSON mode against the bytes that leave (`operations.reply`):
a string is a string, a time is an ISO 8601 string. Their models allow no unknown field
where the contract fixes the object (`Fixed`: messages, errors) and allow added ones where it
says "fields may be added" (`Open`: `/status` and its blocks, in `session_schemas.py`).
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, RootModel, model_validator
from pydantic.alias_generators import to_camel

from ..messages import model as messages

# -- rules of model.py, as validators --------------------------------------------------------


def _rule(check: Any) -> BeforeValidator:
    """Run a model.py check on the value as sent (any JSON type) and pass it on unchanged."""
    def run(value: object) -> object:
        check(value)
        return value
    return BeforeValidator(run)


_SEP = r"[ .()\-]*"
# Exactly what `normalise_number` accepts (tests/test_openapi.py holds them to each other):
# <digits>@c.us, or digits with separators and one leading +; 8-15 digits, no leading 0.
TO_PATTERN = (rf"^(?:[1-9][0-9]{{7,14}}@c\.us|{_SEP}(?:\+{_SEP})?[1-9](?:{_SEP}[0-9]){{7,14}}{_SEP})$")
KEY_PATTERN = r"^[!-~]+$"

# Constraints first, then the rule: pydantic documents (and enforces) a Field placed before
# the validators; the rule still runs first (a before-validator), the constraints after it.
To = Annotated[str, Field(max_length=64, pattern=TO_PATTERN, examples=["+91 98765 43210", "15550001111@c.us"],
                          description="An international number: digits with an optional leading `+` (spaces, "
                                      "dashes, dots and parentheses ignored), 8 to 15 digits, not starting with 0; "
                                      "or `<digits>@c.us`. Stored as digits."),
               _rule(messages.normalise_number), AfterValidator(messages.normalise_number)]
Text = Annotated[str, Field(min_length=1, max_length=messages.MAX_TEXT, pattern=r"\S", examples=["Hello 👋"],
                            description="1 to 65,536 characters (code points) of any Unicode, sent as is; not "
                                        "only whitespace, no U+0000, no lone surrogates."),
                 _rule(messages.check_text)]


class NewMessageBody(BaseModel):
    """The body of `POST /messages`: exactly `to` and `text`."""

    model_config = ConfigDict(extra="forbid", title="NewMessage")

    to: To
    text: Text

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, body: object) -> object:
        return messages.check_fields(body, tuple(cls.model_fields))


class MessageHeaders(BaseModel):
    """The headers `POST /messages` reads."""

    idempotency_key: Annotated[str, Field(min_length=1, max_length=messages.MAX_KEY, pattern=KEY_PATTERN),
                               _rule(messages.check_idempotency_key)] | None = Field(
        None, alias="Idempotency-Key",
        description="1 to 255 visible ASCII characters. The same key and body again answer the first answer "
                    "(200, same id) and send nothing; the same key with another body: 422. Kept 24 h at least.")


class CommandBody(BaseModel):
    """Commands take no parameters: no body, or an empty JSON object."""

    model_config = ConfigDict(extra="forbid", title="NoParameters")

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, body: object) -> object:
        return messages.check_fields(body, ())


def _whole_number(value: object) -> object:
    # A query string is text: ASCII digits only (no sign, no spaces, no "1e2").
    if isinstance(value, str) and value.isascii() and value.isdigit() and 1 <= int(value) <= 500:
        return int(value)
    raise messages.InvalidRequest("limit", "must be a whole number from 1 to 500")


class ListQuery(BaseModel):
    """The query of `GET /messages`."""

    model_config = ConfigDict(extra="forbid")

    direction: Literal["out", "in"] = Field("out", description="Outgoing (the default) or incoming messages.")
    status: messages.Status | None = Field(None, description="Only outgoing messages in this status.")
    limit: Annotated[int, Field(ge=1, le=500), BeforeValidator(_whole_number)] = Field(
        100, description="Messages per page.")
    after: str | None = Field(None, description="The `next` cursor of the previous page.")

    @model_validator(mode="before")
    @classmethod
    def _known(cls, query: object) -> object:
        return messages.check_fields(query, (), tuple(cls.model_fields))

    @model_validator(mode="after")
    def _status_is_outgoing(self) -> ListQuery:
        if self.status is not None and self.direction == "in":
            raise messages.InvalidRequest("status", "incoming messages have no status")
        return self


class QrQuery(BaseModel):
    """The query of `GET /qr`; other parameters are ignored."""

    format: str | None = Field(None, examples=["json"],
                               description="`json`: the JSON answer whatever `Accept` says; other values "
                                           "are ignored.")


# -- answers ----------------------------------------------------------------------------------

Time = Annotated[datetime, Field(description="ISO 8601, UTC, with a `Z`.")]
Digits = Annotated[str, Field(pattern=r"^[0-9]+$")]
_CODE = r"^[a-z][a-z0-9_]*$"


class Fixed(BaseModel):
    """An object the contract fixes: its fields exactly, in camelCase."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Open(BaseModel):
    """An object that may gain fields ("fields may be added")."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)


class ErrorBody(Fixed):
    """Every error: `{"success": false, "error": "<code>", "message": "<sentence>"}`."""

    model_config = ConfigDict(title="Error")

    success: Literal[False]
    error: Annotated[str, Field(pattern=_CODE, examples=["invalid_request"])]
    message: str


class MessageFailure(Fixed):
    code: Annotated[str, Field(pattern=_CODE, examples=[code.value for code in messages.ErrorCode],
                               description="One of " + ", ".join(f"`{c.value}`" for c in messages.ErrorCode)
                               + "; the set is open.")]
    message: str


class OutgoingMessage(Fixed):
    """A message the API accepted (contract section 5). `status` moves only forward."""

    id: str
    direction: Literal["out"]
    to: Annotated[str, Field(pattern=r"^[1-9][0-9]{7,14}$")]
    text: str
    status: messages.Status
    error: MessageFailure | None
    wa_id: str | None = Field(description="The page's id of the message once seen.")
    attempts: Annotated[int, Field(ge=0)]
    created_at: Time
    sent_at: Time | None
    delivered_at: Time | None
    read_at: Time | None
    failed_at: Time | None
    idempotency_key: str | None


class IncomingMessage(Fixed):
    """A message someone sent to the account, stored and published once."""

    id: str
    direction: Literal["in"]
    sender: Digits | None = Field(alias="from", description="Digits, or null when the page shows none.")
    chat: str = Field(description="The chat's title as shown.")
    text: str | None = Field(description="Null when `kind` is `unsupported` (media, a call...).")
    wa_id: str | None
    timestamp: str | None = Field(description="The time as the page shows it (not ISO 8601), or null.")
    received_at: Time
    kind: messages.Kind


AnyMessage = Annotated[OutgoingMessage | IncomingMessage, Field(discriminator="direction")]


class Message(RootModel[AnyMessage]):
    """A message of either direction, told apart by `direction`."""


class MessagePage(Fixed):
    messages: list[AnyMessage] = Field(description="Oldest first.")
    next: str | None = Field(description="The cursor of the next page (`after`), or null at the end.")


class QrJson(Fixed):
    qr: str = Field(description="The payload the code encodes.")
    image: Annotated[str, Field(pattern=r"^data:image/png;base64,[A-Za-z0-9+/=]+$")]


class OpenApiDocument(Open):
    """This document (OpenAPI 3.1)."""

    openapi: Annotated[str, Field(pattern=r"^3\.1\.")]
