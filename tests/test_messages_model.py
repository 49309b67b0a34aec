"""whatsapp.messages.model: statuses, the contract's JSON objects, and the checks of a POST
body (numbers, text, Idempotency-Key), with hypothesis for the number and text rules."""
from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from whatsapp.messages.model import (
    MAX_TEXT,
    ErrorCode,
    IncomingMessage,
    InvalidRequest,
    Kind,
    MessageError,
    OutgoingMessage,
    Status,
    body_hash,
    check_idempotency_key,
    check_text,
    from_ms,
    iso_ms,
    normalise_number,
    parse_new_message,
    to_ms,
)

T0 = datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)
FORWARD = [Status.QUEUED, Status.SENDING, Status.SENT, Status.DELIVERED, Status.READ]

# -- statuses -------------------------------------------------------------------------------------


def test_status_moves_only_forward_and_fails_only_while_waiting():
    for i, old in enumerate(FORWARD):
        for j, new in enumerate(FORWARD):
            assert old.can_become(new) is (j > i), (old, new)
        assert old.can_become(Status.FAILED) is (old in (Status.QUEUED, Status.SENDING)), old
    assert not any(Status.FAILED.can_become(s) for s in Status)
    assert [s.rank for s in FORWARD] == sorted(s.rank for s in FORWARD)
    assert [s.value for s in Status] == ["queued", "sending", "sent", "delivered", "read", "failed"]
    assert {c.value for c in ErrorCode} == {"not_on_whatsapp", "expired", "cancelled", "logged_out"}


def test_error_codes_are_open_but_shaped():
    assert MessageError(ErrorCode.EXPIRED, "late").to_json() == {"code": "expired", "message": "late"}
    assert MessageError("rate_limited", "slow down").code == "rate_limited"  # a newer code
    for bad in ("", "Expired", "two words", "x" * 65, "1abc"):
        with pytest.raises(ValueError):
            MessageError(bad, "m")


# -- the JSON objects -------------------------------------------------------------------------


def test_outgoing_json_is_exactly_the_contract_object():
    message = OutgoingMessage(id="m1", to="15550001111", text="hi 👋", status=Status.FAILED,
                              created_at=T0, attempts=2, error=MessageError("not_on_whatsapp", "no"),
                              wa_id="3EB0", sent_at=None, failed_at=T0 + timedelta(seconds=1),
                              idempotency_key="k-1", seq=7)
    body = message.to_json()
    assert list(body) == ["id", "direction", "to", "text", "status", "error", "waId", "attempts",
                          "createdAt", "sentAt", "deliveredAt", "readAt", "failedAt", "idempotencyKey"]
    assert body == {"id": "m1", "direction": "out", "to": "15550001111", "text": "hi 👋",
                    "status": "failed", "error": {"code": "not_on_whatsapp", "message": "no"},
                    "waId": "3EB0", "attempts": 2, "createdAt": "2026-11-22T10:00:00.123Z",
                    "sentAt": None, "deliveredAt": None, "readAt": None,
                    "failedAt": "2026-11-22T10:00:01.123Z", "idempotencyKey": "k-1"}
    assert json.loads(json.dumps(body)) == body
    assert message.direction == "out"


def test_incoming_json_is_exactly_the_contract_object():
    message = IncomingMessage(id="i1", chat="+1 555-000-2222", text=None, kind=Kind.UNSUPPORTED,
                              received_at=T0, sender="15550002222", wa_id="ABC",
                              timestamp="[12:19, 10/05/2026]")
    assert message.to_json() == {"id": "i1", "direction": "in", "from": "15550002222",
                                 "chat": "+1 555-000-2222", "text": None, "waId": "ABC",
                                 "timestamp": "[12:19, 10/05/2026]",
                                 "receivedAt": "2026-11-22T10:00:00.123Z", "kind": "unsupported"}
    assert list(message.to_json()) == ["id", "direction", "from", "chat", "text", "waId",
                                       "timestamp", "receivedAt", "kind"]


def test_times_are_utc_with_milliseconds_and_z():
    assert iso_ms(T0) == "2026-11-22T10:00:00.123Z"
    assert iso_ms(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
    assert iso_ms(T0.astimezone(timezone(timedelta(hours=5, minutes=30)))) == "2026-11-22T10:00:00.123Z"
    assert iso_ms(None) is None
    with pytest.raises(ValueError, match="naive"):
        to_ms(datetime(2026, 1, 1))


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                    timezones=st.just(UTC)))
def test_millisecond_round_trip(moment):
    ms = to_ms(moment)
    assert from_ms(ms) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert to_ms(from_ms(ms)) == ms


# -- numbers ----------------------------------------------------------------------------------
international = st.from_regex(r"[1-9][0-9]{7,14}", fullmatch=True)
separators = st.sampled_from([" ", "-", ".", "(", ")", ""])


@st.composite
def written_numbers(draw):
    """(how a person writes a number, its digits): separators anywhere, an optional +."""
    digits = draw(international)
    written = "".join(d + draw(separators) for d in digits)
    return draw(st.sampled_from(["", "+"])) + draw(separators) + written, digits


@given(written_numbers())
@example(("+1 (555) 000-1111", "15550001111"))
@example(("+44 20.7946.0958", "442079460958"))
def test_written_numbers_normalise_to_their_digits(case):
    written, digits = case
    assert normalise_number(written) == digits


@given(international)
def test_c_us_ids_normalise_to_their_digits(digits):
    assert normalise_number(f"{digits}@c.us") == digits


@given(st.from_regex(r"[1-9][0-9]{0,6}|[1-9][0-9]{15,30}", fullmatch=True))
def test_too_few_or_too_many_digits_are_refused(digits):
    for written in (digits, "+" + digits, digits + "@c.us"):
        with pytest.raises(InvalidRequest) as caught:
            normalise_number(written)
        assert caught.value.field == "to"


@pytest.mark.parametrize("written", [
    "", "+", "++15550001111", "1555+0001111", "15550001111+", "0015550001111", "07700900123",
    "+1 555 000 111a", "1555\t0001111", "١٥٥٥٠٠٠١١١١", "15550001111@s.whatsapp.net",
    "+15550001111@c.us", "15550001111@C.US", "12345678901234567890@g.us", " 1555000111 @c.us",
    "1" * 65, "1555_000_1111", "1555/000/1111",
])
def test_malformed_numbers_are_refused(written):
    with pytest.raises(InvalidRequest) as caught:
        normalise_number(written)
    assert caught.value.field == "to"


@given(st.text(max_size=40))
def test_anything_accepted_as_a_number_is_8_to_15_ascii_digits(text):
    try:
        digits = normalise_number(text)
    except InvalidRequest:
        return
    assert 8 <= len(digits) <= 15 and digits.isascii() and digits.isdigit() and digits[0] != "0"
    assert digits in text.replace(" ", "").replace("-", "").replace(".", "").replace("(", "").replace(")", "")


@pytest.mark.parametrize("value, named", [(15550001111, "a number"), (None, "null"), (True, "a boolean"),
                                          (["1555"], "an array"), ({"n": 1}, "an object")])
def test_wrong_types_are_named(value, named):
    with pytest.raises(InvalidRequest, match=named) as caught:
        normalise_number(value)
    assert caught.value.field == "to"
    with pytest.raises(InvalidRequest, match=named) as caught:
        check_text(value)
    assert caught.value.field == "text"


# -- text -------------------------------------------------------------------------------------
sendable = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                   min_size=1, max_size=300).filter(lambda t: not t.isspace())


@given(sendable)
@example("👋🏽 family: 👨‍👩‍👧‍👦")
@example("line one\nline two\r\n\ttabbed")
@example("עברית, العربية, 中文, हिन्दी")
def test_sendable_text_passes_unchanged(text):
    assert check_text(text) is text


def test_text_length_counts_code_points():
    assert check_text("x" * MAX_TEXT)
    assert check_text("👋" * MAX_TEXT)  # 65,536 code points, 131,072 UTF-16 units
    for too_long in ("x" * (MAX_TEXT + 1), "👋" * (MAX_TEXT + 1)):
        with pytest.raises(InvalidRequest, match="at most 65536"):
            check_text(too_long)


@pytest.mark.parametrize("text, why", [("", "empty"), (" \n\t ", "whitespace"), ("a\x00b", "NUL"),
                                       ("a\ud800b", "surrogate"), ("\udfff", "surrogate")])
def test_unsendable_text_is_refused(text, why):
    with pytest.raises(InvalidRequest, match=why) as caught:
        check_text(text)
    assert caught.value.field == "text"


def test_a_lone_surrogate_arriving_through_json_is_refused():
    body = json.loads('{"to": "15550001111", "text": "\\ud83d"}')
    with pytest.raises(InvalidRequest, match="surrogate"):
        parse_new_message(body)


# -- the POST body ----------------------------------------------------------------------------


@given(written_numbers(), sendable)
def test_a_json_body_round_trips(case, text):
    written, digits = case
    new = parse_new_message(json.loads(json.dumps({"to": written, "text": text})))
    assert (new.to, new.text) == (digits, text)
    assert new.body_hash == body_hash(digits, text)


@pytest.mark.parametrize("body, field", [
    ([], "body"), ("text", "body"), (None, "body"), (3, "body"),
    ({}, "to"), ({"text": "hi"}, "to"), ({"to": "15550001111"}, "text"),
    ({"to": "15550001111", "text": "hi", "priority": 1}, "priority"),
    ({"to": "15550001111", "text": "hi", "b": 1, "a": 2}, "a, b"),
])
def test_bad_bodies_name_the_field(body, field):
    with pytest.raises(InvalidRequest) as caught:
        parse_new_message(body)
    assert caught.value.field == field
    assert field in str(caught.value)


# -- idempotency ------------------------------------------------------------------------------
visible = st.text(st.sampled_from([chr(c) for c in range(0x21, 0x7F)]), min_size=1, max_size=255)


@given(visible)
def test_visible_ascii_keys_are_accepted(key):
    assert check_idempotency_key(key) == key


@given(st.text(min_size=1, max_size=300).filter(
    lambda k: len(k) > 255 or any(not 0x21 <= ord(c) <= 0x7E for c in k)))
@example("a b")
@example("x" * 256)
@example("clé")
def test_other_keys_are_refused(key):
    with pytest.raises(InvalidRequest) as caught:
        check_idempotency_key(key)
    assert caught.value.field == "Idempotency-Key"


def test_absent_key_is_none_and_empty_key_is_refused():
    assert check_idempotency_key(None) is None
    with pytest.raises(InvalidRequest):
        check_idempotency_key("")


def test_body_hash_compares_normalised_requests():
    same = {body_hash(normalise_number(n), "hi") for n in ("+1 555 000 1111", "15550001111",
                                                          "15550001111@c.us", "1-555-000-1111")}
    assert len(same) == 1
    assert body_hash("15550001111", "hi") != body_hash("15550001111", "hi ")
    assert body_hash("15550001111", "hi") != body_hash("15550001112", "hi")
    assert len(body_hash("1", "x")) == 64 and set(body_hash("1", "x")) <= set(string.hexdigits.lower())


@given(st.tuples(international, sendable), st.tuples(international, sendable))
def test_body_hash_differs_for_different_requests(a, b):
    assert (body_hash(*a) == body_hash(*b)) is (a == b)
