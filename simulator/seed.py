"""The demo conversations every simulator starts with (and returns to on a messages reset).

The four chats the page has always listed, now as real conversations with a number, a
contact name and a little history, all of it read: a chat list that looks lived in, with
an outgoing last message, an incoming photo and chats of other days.

`DEMO`: `(digits, contact name, [(seconds before now, outgoing, text or None for a photo)])`.
"""

H = 3600.0

DEMO: list[tuple[str, str, list[tuple[float, bool, str | None]]]] = [
    ("447700900123", "Alice Example", [
        (26 * H, False, "Are we still on for tomorrow?"),
        (25.9 * H, True, "Yes! 10 am at the station."),
        (2 * H, False, "See you tomorrow!"),
    ]),
    ("15550002002", "Bob", [
        (5.2 * H, True, "Did you get the pictures from Saturday?"),
        (5 * H, False, None),
    ]),
    ("919876543210", "Family", [
        (30 * H, True, "I'll bring dessert"),
        (28 * H, False, "Dinner at 8?"),
    ]),
    ("15550002004", "Energenie team", [
        (74 * H, True, "How is the quarterly report going?"),
        (72 * H, False, "The report is ready"),
    ]),
]
