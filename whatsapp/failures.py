"""Failure kinds and their classification.

Every failure is classified once, here, into a `Failure` subclass carrying the contract's
`reason` and whether a relaunch on the same profile can help (`retry`). The session's state
machine picks its branch from the type, never from message strings. An exception that is
none of the browser's failures is a bug of ours: `classify` re-raises it.
"""
from __future__ import annotations

import urllib3.exceptions
from selenium.common.exceptions import (
    InvalidSessionIdException,
    NoSuchWindowException,
    TimeoutException,
    WebDriverException,
)

from .states import Reason


class Failure(Exception):
    """A classified failure. `retry`: relaunching with the saved login can help."""

    reason: Reason = Reason.BROWSER_CRASHED
    retry: bool = True

    def __init__(self, message: str = ""):
        super().__init__(message or (self.__class__.__doc__ or self.__class__.__name__).strip().splitlines()[0])


class BrowserGone(Failure):
    """The browser, its tab or chromedriver is gone."""
    reason = Reason.BROWSER_CRASHED


class PageUnresponsive(Failure):
    """The page or chromedriver did not answer in time."""
    reason = Reason.PAGE_UNRESPONSIVE


class NetworkDown(Failure):
    """WhatsApp Web could not be reached."""
    reason = Reason.NETWORK


class LaunchFailed(Failure):
    """Chromium or chromedriver could not be started."""
    reason = Reason.LAUNCH_FAILED


class ProfileLocked(Failure):
    """Another process owns this profile."""
    reason = Reason.PROFILE_LOCKED


class UnrecognizedPage(Failure):
    """The page shows none of the screens WhatsApp Web is known to show (a new build?)."""
    reason = Reason.UNRECOGNIZED_PAGE


class UnsupportedBrowser(Failure):
    """WhatsApp Web refused this browser (its user agent); set WHATSAPP_USER_AGENT."""
    reason = Reason.UNSUPPORTED_BROWSER
    retry = False  # a configuration error: the same browser is refused every time


# WebDriverException messages that mean the browser side is gone (runtime.md's table:
# these arrive as plain WebDriverException and can only be told apart by message).
_GONE_MESSAGES = ("tab crashed", "chrome not reachable", "not connected to devtools",
                  "session deleted", "target window already closed", "browser has closed",
                  "no such window", "target frame detached", "cannot determine loading status")
_NETWORK_MESSAGES = ("net::err_",)


def classify(exc: BaseException) -> Failure:
    """Map an exception from a driver call to its failure kind (runtime.md, Selenium table)."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return PageUnresponsive(f"chromedriver did not answer: {exc}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError)):
        return BrowserGone(f"chromedriver is gone: {exc.__class__.__name__}")
    if isinstance(exc, TimeoutException):
        return PageUnresponsive(f"the page did not answer: {_first_line(exc)}")
    if isinstance(exc, (InvalidSessionIdException, NoSuchWindowException)):
        return BrowserGone(f"the browser is gone: {_first_line(exc)}")
    if isinstance(exc, WebDriverException):
        message = _first_line(exc).lower()
        if any(text in message for text in _NETWORK_MESSAGES):
            return NetworkDown(f"page load failed: {_first_line(exc)}")
        if any(text in message for text in _GONE_MESSAGES):
            return BrowserGone(f"the browser is gone: {_first_line(exc)}")
        if "timed out" in message or "timeout" in message:
            return PageUnresponsive(_first_line(exc))
        return BrowserGone(f"browser error: {_first_line(exc)}")
    if isinstance(exc, OSError):
        return BrowserGone(f"browser error: {exc}")
    raise exc  # a bug of ours, not a browser failure: let it surface


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or str(exc) or exc.__class__.__name__
    return text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__
