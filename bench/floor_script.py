"""The raw-Selenium floor, run as a process of its own: interpreter, `import selenium`,
Chromium with the product's flags, the page, and nothing of the product.

    python bench/floor_script.py '<settings as JSON>'      (bench/floors.py builds them)

Only the standard library and Selenium are imported, as in a script someone would write.
Settings: `driver`, `binary`, `arguments` and `experimental` (the product's ChromeOptions,
computed by the parent, so the floor does not pay for the product's imports), `driver_log`
and `log_level` (chromedriver's), `url`, `wait` (a CSS selector) and `attribute` (which must
then hold a value), `selectors` (for the commands below) and `serve`.

Every line on stdout is one JSON object `{"event", "t", ...}`, `t` being `time.time()` when it
happened: `started` (the first line of this file ran), `imported`, `session`, `loaded`
(`get()` returned), `seen` (the `wait` selector matched; `page_t` is the page's own clock).
Then, with `serve`, one JSON command per line on stdin, each answered by one event:

- `{"op": "send_url", "url", "text"}`: load `/send?phone=&text=`, wait for the compose box to
  hold `text`, click the send button, wait for the new outgoing row's tick -> `sent`;
- `{"op": "send_open", "text"}`: type into the open chat's box with
  `document.execCommand('insertText')`, click send, wait for the tick -> `sent`;
- `{"op": "arm", "title"}` -> `armed`; `{"op": "badge", "title"}` -> `badge` with `page_t`,
  when the chat-list row titled `title` first showed an unread badge after `arm`;
- `{"op": "quit"}` (or end of input): `quit()` and exit.

Waits run in the page (`execute_async_script` with a MutationObserver), so the floor sees a
change when the page makes it, not at a polling tick: the tightest floor there is.
"""
import json
import sys
import time

STARTED = time.time()


def emit(event: str, t: float | None = None, **fields) -> None:
    print(json.dumps({"event": event, "t": time.time() if t is None else t, **fields}), flush=True)


# arguments: a JS predicate's body (returns a truthy value when done), its argument, then the
# callback. The predicate runs at once, on every DOM change, and every 10 ms (a property such
# as a box's text changes without a mutation the observer sees in some builds).
WAIT = r"""
const test = new Function("a", arguments[0]), arg = arguments[1], done = arguments[arguments.length - 1];
let finished = false;
const check = () => {
  if (finished) return;
  let value = null;
  try { value = test(arg); } catch (e) { value = null; }
  if (value) { finished = true; observer.disconnect(); clearInterval(timer); done([value, Date.now()]); }
};
const observer = new MutationObserver(check);
observer.observe(document.documentElement, {childList: true, subtree: true, attributes: true, characterData: true});
const timer = setInterval(check, 10);
check();
"""
MATCHES = "const el = document.querySelector(a.sel); return el && (!a.attr || el.getAttribute(a.attr)) ? 1 : 0;"
BOX_HOLDS = "const b = document.querySelector(a.box); return b && b.textContent === a.text ? 1 : 0;"
IDS = "return Array.from(document.querySelectorAll(arguments[0])).map((e) => e.getAttribute('data-id'));"
NEW_TICK = r"""
for (const row of document.querySelectorAll(a.rows)) {
  if (a.known.includes(row.getAttribute("data-id"))) continue;
  if (row.querySelector(a.out) && row.querySelector(a.tick)) return row.getAttribute("data-id");
}
return 0;
"""
TYPE = r"""
const box = document.querySelector(arguments[0]);
if (!box) return false;
box.focus();
document.execCommand("insertText", false, arguments[1]);
return box.textContent === arguments[1];
"""
# Records, in the page, when the row titled arguments[1] first shows a badge.
ARM = r"""
const s = arguments[0], title = arguments[1];
window.__badgeAt = window.__badgeAt || {};
delete window.__badgeAt[title];
const look = () => {
  if (window.__badgeAt[title]) return;
  for (const badge of document.querySelectorAll(s.badge)) {
    const row = badge.closest(s.chatRows);
    const t = row && row.querySelector(s.title);
    if (t && t.getAttribute("title") === title) { window.__badgeAt[title] = Date.now(); return; }
  }
};
new MutationObserver(look).observe(document.documentElement, {childList: true, subtree: true, attributes: true});
look();
return true;
"""
BADGE_AT = "return (window.__badgeAt || {})[a] || 0;"


def wait(driver, predicate: str, arg) -> tuple:
    """(value, page time in s) once `predicate` holds; a page that reloads meanwhile is waited on again."""
    from selenium.common.exceptions import JavascriptException

    end = time.monotonic() + 60
    while True:
        try:
            value, page_ms = driver.execute_async_script(WAIT, predicate, arg)
            return value, page_ms / 1000.0
        except JavascriptException:  # "document unloaded while waiting": the page navigated
            if time.monotonic() > end:
                raise


def click_send(driver, selector: str) -> None:
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.CSS_SELECTOR, selector)
    driver.execute_script("return arguments[0].closest('button, [role=\"button\"]') || arguments[0];", button).click()


def send(driver, s: dict, command: dict) -> dict:
    marks = {}
    if command["op"] == "send_url":
        driver.get(command["url"])
        marks["loaded"] = time.time()
        wait(driver, BOX_HOLDS, {"box": s["compose"], "text": command["text"]})
    elif not driver.execute_script(TYPE, s["compose"], command["text"]):
        raise RuntimeError("the compose box did not take the text")
    marks["box"] = time.time()
    known = driver.execute_script(IDS, s["rows"])
    click_send(driver, s["send"])
    marks["clicked"] = time.time()
    row, page_t = wait(driver, NEW_TICK, {"rows": s["rows"], "out": s["out"], "tick": s["tick"], "known": known})
    return {"row": row, "page_t": page_t, **marks}


def serve(driver, s: dict) -> None:
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            return
        if command["op"] in ("send_url", "send_open"):
            emit("sent", **send(driver, s, command))
        elif command["op"] == "arm":
            driver.execute_script(ARM, s, command["title"])
            emit("armed")
        elif command["op"] == "badge":
            badge_ms, _ = wait(driver, BADGE_AT, command["title"])
            emit("badge", page_t=badge_ms / 1000.0)


def main() -> None:
    settings = json.loads(sys.argv[1])
    emit("started", t=STARTED)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    emit("imported")
    options = webdriver.ChromeOptions()
    options.binary_location = settings["binary"]
    for argument in settings["arguments"]:
        options.add_argument(argument)
    for name, value in settings["experimental"].items():
        options.add_experimental_option(name, value)
    service = Service(settings["driver"], log_output=settings["driver_log"],
                      service_args=[f"--log-level={settings['log_level']}"])
    driver = webdriver.Chrome(service=service, options=options)
    try:
        emit("session", driver_pid=service.process.pid)
        driver.set_script_timeout(60)
        driver.get(settings["url"])
        emit("loaded")
        _, page_t = wait(driver, MATCHES, {"sel": settings["wait"], "attr": settings.get("attribute")})
        emit("seen", page_t=page_t)
        if settings.get("serve"):
            serve(driver, settings["selectors"])
        else:
            sys.stdin.readline()  # the parent reads the process table first, then says "quit"
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
