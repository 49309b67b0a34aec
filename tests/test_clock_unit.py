"""Reading the page's clock back (`data-pre-plain-text` stamps), pure."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whatsapp.session.clock import parse_shown, written_since


@pytest.mark.parametrize("shown, expected", [
    ("12:19, 10/05/2026", datetime(2026, 5, 10, 12, 19)),
    ("8:05 pm, 14/12/2025", datetime(2025, 12, 14, 20, 5)),
    ("12:30 am, 01/12/2026", datetime(2026, 12, 1, 0, 30)),
    ("12:30 PM, 01/12/2026", datetime(2026, 12, 1, 12, 30)),
    ("7:00 a.m., 02/01/2026", datetime(2026, 1, 2, 7, 0)),
])
def test_both_clock_forms(shown, expected):
    assert parse_shown(shown) == expected


@pytest.mark.parametrize("shown", [None, "", "yesterday", "25:00, 01/01/2026", "13:00 pm, 01/01/2026",
                                   "10:00, 31/02/2026"])
def test_what_is_not_a_stamp(shown):
    assert parse_shown(shown) is None


def test_written_since_allows_a_minute_of_slack_and_unknown_stamps():
    accepted = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC).astimezone()
    local = accepted.replace(tzinfo=None)
    stamp = f"{local:%H:%M}, {local:%d/%m/%Y}"
    assert written_since(stamp, accepted)
    earlier = local.replace(minute=(local.minute - 2) % 60) if local.minute >= 2 else None
    if earlier is not None:
        assert not written_since(f"{earlier:%H:%M}, {earlier:%d/%m/%Y}", accepted)
    assert written_since("garbled", accepted)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)))
def test_a_24_hour_stamp_round_trips_to_the_minute(moment):
    assert parse_shown(f"{moment:%H:%M}, {moment:%d/%m/%Y}") == moment.replace(second=0, microsecond=0)
