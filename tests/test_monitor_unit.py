"""Pure logic of the monitor: the backoff schedule and the failure classification."""
from __future__ import annotations

import pytest
import urllib3.exceptions
from hypothesis import given
from hypothesis import strategies as st
from selenium.common.exceptions import (
    InvalidSessionIdException,
    NoSuchWindowException,
    SessionNotCreatedException,
    TimeoutException,
    WebDriverException,
)

from whatsapp.backoff import Backoff
from whatsapp.failures import BrowserGone, NetworkDown, PageUnresponsive, UnsupportedBrowser, classify
from whatsapp.states import Reason


def test_backoff_is_linear_capped_and_bounded():
    backoff = Backoff.linear(step=5, cap=30, max_attempts=8)
    delays = [backoff.next_delay() for _ in range(9)]
    assert delays == [5, 10, 15, 20, 25, 30, 30, 30, None]
    assert backoff.exhausted


def test_backoff_reset_starts_a_fresh_round():
    backoff = Backoff.linear(step=5, cap=30, max_attempts=5)
    assert [backoff.next_delay() for _ in range(3)] == [5, 10, 15]
    backoff.reset()
    assert backoff.next_delay() == 5


def test_backoff_with_zero_step_never_waits():
    backoff = Backoff.linear(step=0, cap=0, max_attempts=3)
    assert [backoff.next_delay() for _ in range(4)] == [0, 0, 0, None]


@given(step=st.floats(0, 100), extra=st.floats(0, 100), attempts=st.integers(1, 50))
def test_backoff_properties(step, extra, attempts):
    backoff = Backoff.linear(step=step, cap=step + extra, max_attempts=attempts)
    delays = []
    while (delay := backoff.next_delay()) is not None:
        delays.append(delay)
    assert len(delays) == attempts
    assert delays == sorted(delays)
    assert all(d <= step + extra for d in delays)


# runtime.md's table: what Selenium raises for each failure, and the kind it must become.
@pytest.mark.parametrize("exc, kind, reason", [
    (InvalidSessionIdException("session deleted as the browser has closed the connection"),
     BrowserGone, Reason.BROWSER_CRASHED),
    (urllib3.exceptions.MaxRetryError(None, "/session", ConnectionRefusedError()), BrowserGone,
     Reason.BROWSER_CRASHED),
    (urllib3.exceptions.NewConnectionError(None, "refused"), BrowserGone, Reason.BROWSER_CRASHED),
    (urllib3.exceptions.ProtocolError("Connection aborted."), BrowserGone, Reason.BROWSER_CRASHED),
    (WebDriverException("tab crashed"), BrowserGone, Reason.BROWSER_CRASHED),
    (TimeoutException("Timed out receiving message from renderer: 5.000"), PageUnresponsive,
     Reason.PAGE_UNRESPONSIVE),
    (urllib3.exceptions.ReadTimeoutError(None, "/session", "read timed out"), PageUnresponsive,
     Reason.PAGE_UNRESPONSIVE),
    (NoSuchWindowException("no such window"), BrowserGone, Reason.BROWSER_CRASHED),
    (WebDriverException("chrome not reachable"), BrowserGone, Reason.BROWSER_CRASHED),
    (WebDriverException("disconnected: not connected to DevTools"), BrowserGone, Reason.BROWSER_CRASHED),
    (WebDriverException("unknown error: net::ERR_CONNECTION_REFUSED"), NetworkDown, Reason.NETWORK),
    (SessionNotCreatedException("session not created: Chrome instance exited"), BrowserGone,
     Reason.BROWSER_CRASHED),
    (ConnectionResetError(), BrowserGone, Reason.BROWSER_CRASHED),
])
def test_classification_by_kind(exc, kind, reason):
    failure = classify(exc)
    assert type(failure) is kind
    assert failure.reason is reason
    assert failure.retry


def test_exponential_backoff_doubles_up_to_the_cap_without_a_limit():
    backoff = Backoff.exponential(base=0.5, cap=30)
    assert [backoff.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert not backoff.exhausted


def test_a_fatal_kind_is_never_retried_and_bugs_are_not_swallowed():
    assert classify(UnsupportedBrowser()).retry is False
    with pytest.raises(KeyError):
        classify(KeyError("a bug of ours"))
