"""Rules for text people type, for every place that stores some (messages, canned
responses, names, visitor details), so that each rule is written once."""

from __future__ import annotations

import re
import unicodedata

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


# The joiners that scripts and emoji need between their own characters (Persian's ZWNJ, the
# ZWJ of a family emoji); beside ASCII they only hide a difference ("Al\u200dex").
_JOINERS = frozenset("\u200c\u200d")


def has_invisible_formatting(value: str) -> bool:
    """Whether a name holds characters that change how it reads without being seen: bidi
    overrides, embeddings, isolates and marks (a name shown reversed), zero-width spaces,
    word joiners, soft hyphens, BOMs (two names that look alike), i.e. Unicode's format
    characters (Cf), except a joiner between two characters beyond ASCII. Names with them
    are refused, not stripped: what is stored is what the person typed."""
    for i, char in enumerate(value):
        if unicodedata.category(char) != "Cf":
            continue
        if char not in _JOINERS or i == 0 or i == len(value) - 1:
            return True
        before, after = value[i - 1], value[i + 1]
        if before.isascii() or after.isascii() or before in _JOINERS or after in _JOINERS:
            return True
    return False


def check_body(text: str, max_chars: int) -> None:
    """A message body: any characters but NUL, which no backend can store (PostgreSQL text
    refuses U+0000), and at most ``max_chars`` of them."""
    if "\x00" in text:
        raise Invalid("invalid_characters", "message contains a NUL character")
    if len(text) > max_chars:
        raise Invalid("message_too_long", f"message is longer than {max_chars} characters")
