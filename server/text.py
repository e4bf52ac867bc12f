"""Rules for text people type, for every place that stores some (messages, canned
responses, names, visitor details), so that each rule is written once."""

from __future__ import annotations

import re

from server.errors import Invalid

# Names and details show up in inboxes, logs and emails: no line breaks or terminal escapes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def check_body(text: str, max_chars: int) -> None:
    """A message body: any characters but NUL, which no backend can store (PostgreSQL text
    refuses U+0000), and at most ``max_chars`` of them."""
    if "\x00" in text:
        raise Invalid("invalid_characters", "message contains a NUL character")
    if len(text) > max_chars:
        raise Invalid("message_too_long", f"message is longer than {max_chars} characters")
