"""The page's clock: the times WhatsApp Web shows in `data-pre-plain-text`, read back.

A row says when it was written as the page shows it, to the minute, in the browser's
time zone, in one of two forms (whatsapp-web.md, message rows): `12:19, 10/05/2026` (a
24-hour clock) or `8:05 pm, 14/12/2025` (a 12-hour one), day before month. The server runs
beside its browser, so the local time zone is the browser's.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

_SHOWN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*([ap]\.?\s*m\.?)?\s*,\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*$", re.IGNORECASE)
SLACK = timedelta(minutes=1)  # the page shows minutes; the clocks of page and server may differ a little


def parse_shown(shown: str | None) -> datetime | None:
    """`"12:19, 10/05/2026"` or `"8:05 pm, 14/12/2025"` as a naive local datetime; None when
    it is not one of those forms."""
    match = _SHOWN.match(shown or "")
    if not match:
        return None
    hour, minute, meridiem, day, month, year = match.groups()
    hour_n = int(hour)
    if meridiem:
        if not 1 <= hour_n <= 12:
            return None
        hour_n = hour_n % 12 + (12 if meridiem.lower().startswith("p") else 0)
    try:
        return datetime(int(year), int(month), int(day), hour_n, int(minute))
    except ValueError:
        return None


def written_since(shown: str | None, moment: datetime) -> bool:
    """Whether a row the page stamped `shown` can have been written at or after `moment`
    (an aware datetime). A stamp that cannot be read does not rule a row out."""
    written = parse_shown(shown)
    if written is None:
        return True
    local = moment.astimezone().replace(tzinfo=None)
    return written >= local.replace(second=0, microsecond=0) - SLACK
