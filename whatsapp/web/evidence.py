"""What the browser shows, kept for a person when the page is not one we know.

`outline(driver)` is one script returning the page's skeleton: its title, URL, and the ids,
roles, `aria-label`s and `data-icon`s present, with counts, never any text of a message or
a chat (those labels are the markers page code keys on, which is what someone comparing a
new WhatsApp build with `locators.py` needs; labels inside chat rows and the open chat,
which can carry names or previews, are left out). `save(driver, folder)` writes a screenshot
and that outline as `<time>.png` / `<time>.json`, owner-only, keeping the newest `keep`.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from ..persistence.files import private_dir, write_atomic

log = logging.getLogger(__name__)

KEEP = 3
MAX_LABEL = 60     # aria-labels are short; longer ones may be someone's text
MAX_ITEMS = 200

_OUTLINE = """
const count = (values) => {
  const out = {};
  for (const v of values) if (v) out[v] = (out[v] || 0) + 1;
  return out;
};
const all = Array.from(document.querySelectorAll('[id], [role], [aria-label], [data-icon]')).slice(0, 5000);
return {
  title: document.title,
  url: location.href,
  ids: count(all.map((e) => e.id)),
  roles: count(all.map((e) => e.getAttribute('role'))),
  // Not inside a chat row or the open chat: their labels can hold names and message previews.
  ariaLabels: count(all.filter((e) => !e.closest('[role="row"], [role="listitem"], #main'))
    .map((e) => e.getAttribute('aria-label'))),
  dataIcons: count(all.map((e) => e.getAttribute('data-icon'))),
};
"""


def outline(driver) -> dict:
    raw = driver.execute_script(_OUTLINE) or {}
    labels = {label: n for label, n in (raw.get("ariaLabels") or {}).items() if len(label) <= MAX_LABEL}
    trimmed = {key: dict(list((raw.get(key) or {}).items())[:MAX_ITEMS])
               for key in ("ids", "roles", "dataIcons")}
    return {"title": raw.get("title"), "url": raw.get("url"), **trimmed,
            "ariaLabels": dict(list(labels.items())[:MAX_ITEMS])}


def save(driver, folder: Path, keep: int = KEEP) -> Path:
    """Screenshot + outline in `folder`; returns the PNG's path. Raises what the driver raises."""
    png, page = driver.get_screenshot_as_png(), outline(driver)
    private_dir(folder)
    stem = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    write_atomic(folder / f"{stem}.json", (json.dumps(page, indent=1, ensure_ascii=False) + "\n").encode())
    write_atomic(folder / f"{stem}.png", png)
    for old in sorted(folder.glob("*.png"), reverse=True)[keep:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return folder / f"{stem}.png"
