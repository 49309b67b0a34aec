"""The open chat's compose box: typing exact text into it and sending it.

ChromeDriver's `send_keys` refuses characters outside the BMP (emoji; whatsapp-web.md,
"Messaging"), so text goes in with `document.execCommand('insertText')`, one line at a
time, with a real Shift+Enter between lines (Enter alone sends). Every selector comes
from `locators` (through `rows.ARGS`).
"""
from __future__ import annotations

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from .rows import ARGS, PRELUDE

# Focus the box and replace all it holds with arguments[1] (empty: clear it). True when a
# box was there.
_REPLACE = PRELUDE + r"""
const box = first(L.compose);
if (!box) return false;
box.focus();
document.execCommand("selectAll", false, null);
if (arguments[1]) document.execCommand("insertText", false, arguments[1]);
else document.execCommand("delete", false, null);
return true;
"""

# Append arguments[1] at the caret of the focused box.
_INSERT = PRELUDE + r"""
const box = first(L.compose);
if (!box) return false;
if (document.activeElement !== box && !box.contains(document.activeElement)) box.focus();
document.execCommand("insertText", false, arguments[1]);
return true;
"""

_BOX_TEXT = PRELUDE + r"""
const box = first(L.compose);
return box ? boxText(box) : null;
"""

# The first send-button selector present (newest first), as its button; else the compose
# box, focused, for Enter; else null.
_SEND_TARGET = PRELUDE + r"""
for (const sel of L.sendButton) {
  const el = document.querySelector(sel);
  if (el) return ["button", el.closest(L.button.join(", ")) || el];
}
const box = first(L.compose);
if (!box) return null;
box.focus();
return ["enter", box];
"""


def normalise(text: str) -> str:
    """Newlines as "\\n" (a box or URL may hand back "\\r\\n")."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def box_text(driver) -> str | None:
    """What the compose box of the open chat holds, or None without one."""
    return driver.execute_script(_BOX_TEXT, ARGS)


def type_text(driver, text: str) -> bool:
    """Focus the compose box, clear it, insert `text` exactly (Shift+Enter between lines).

    True when the box then holds exactly `text`; False without a box or when it holds
    something else (the caller must not send then). One script per line, one key chord
    between lines, one script to read the box back.
    """
    lines = normalise(text).split("\n")
    if not driver.execute_script(_REPLACE, ARGS, lines[0]):
        return False
    for line in lines[1:]:
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        if line and not driver.execute_script(_INSERT, ARGS, line):
            return False
    held = box_text(driver)
    return held is not None and normalise(held) == normalise(text)


def press_send(driver) -> bool:
    """Click the first send button present (newest selector first), else press Enter in the
    compose box. False when there is neither (no chat open)."""
    target = driver.execute_script(_SEND_TARGET, ARGS)
    if not target:
        return False
    how, element = target
    if how == "button":
        try:
            element.click()
            return True
        except StaleElementReferenceException:
            target = driver.execute_script(_SEND_TARGET, ARGS)  # redrawn: try once more
            if not target:
                return False
            how, element = target
        except WebDriverException:
            # Covered or not interactable for a native click: the page's own handler still
            # runs on a DOM click.
            driver.execute_script("arguments[0].click();", element)
            return True
        if how == "button":
            driver.execute_script("arguments[0].click();", element)
            return True
    ActionChains(driver).send_keys(Keys.ENTER).perform()  # the box has the focus
    return True
