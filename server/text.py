"""Rules for text people type, for every place that stores some (messages, canned
responses, names, visitor details), so that each rule is written once."""

from __future__ import annotations

import re

from server.errors import Invalid

# Names and details show up in inboxes, logs and emails: no line breaks or terminal escapes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# One address (RFC 5321's dot-atom local part, a domain of two or more labels), nothing
# around it: a list ("a@x.com, b@evil.example"), a display name or angle brackets would make
# replies go elsewhere or to several people. Letters beyond ASCII are allowed (RFC 6531).
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\uffff]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\uffff]+)*"
    r"@(?:[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\-\u0080-\uffff]*[A-Za-z0-9\u0080-\uffff])?\.)+"
    r"[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\-\u0080-\uffff]*[A-Za-z0-9\u0080-\uffff])?"
)
# RFC 5321: 254 characters in a path, 64 in a local part.
EMAIL_MAX_CHARS = 254
EMAIL_LOCAL_MAX_CHARS = 64


def is_email(value: str) -> bool:
    """Whether ``value`` is one syntactically valid address: every place that accepts an
    email (visitor details, operators, the CLI) asks this one question."""
    local, _, _ = value.partition("@")
    return (
        len(value) <= EMAIL_MAX_CHARS
        and len(local) <= EMAIL_LOCAL_MAX_CHARS
        and _EMAIL.fullmatch(value) is not None
        and not has_control_characters(value)
    )


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def check_body(text: str, max_chars: int) -> None:
    """A message body: any characters but NUL, which no backend can store (PostgreSQL text
    refuses U+0000), and at most ``max_chars`` of them."""
    if "\x00" in text:
        raise Invalid("invalid_characters", "message contains a NUL character")
    if len(text) > max_chars:
        raise Invalid("message_too_long", f"message is longer than {max_chars} characters")
