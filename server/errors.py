"""Errors every surface reports the same way: a snake_case code and a sentence for humans.

The engine raises these; each transport maps the class to its own status (HTTP status, or
WebSocket close code) in one place.
"""

from __future__ import annotations


class LiveOpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Invalid(LiveOpError):
    """The request is malformed or breaks a documented limit."""


def at_most(
    held: int, limit: int, what: str, holder: str = "an account", noun: str | None = None
) -> None:
    """Refuses one more of ``what`` when ``holder`` already has ``limit``: every list a person
    or a script can grow is bounded, far above what a real team needs, so a script gone wrong
    meets a clear ``400 too_many_<what>`` rather than lists every screen reads whole. Checked
    before the insert: creates racing each other may pass the bound by their number."""
    if held >= limit:
        raise Invalid(f"too_many_{what}", f"{holder} has at most {limit} {noun or what}")


class Unauthorized(LiveOpError):
    """No credentials, or credentials that do not check out."""


class Forbidden(LiveOpError):
    """Authenticated, but this principal may not do this."""


class NotFound(LiveOpError):
    """Absent, or belongs to another account (which must look the same)."""


class Conflict(LiveOpError):
    """Well-formed, but contradicts the current state."""


class TooLarge(LiveOpError):
    """The body exceeds the size limit."""


class UnsupportedMediaType(LiveOpError):
    """The body is in a format this endpoint does not read."""


class NotConfigured(LiveOpError):
    """The request is valid, but the account has not set up what it needs (a voice number)."""


class Unavailable(LiveOpError):
    """A service the request depends on (an AI model's server) failed or timed out; what
    could be kept was kept."""


class TooManyRequests(LiveOpError):
    """A rate limit is spent: the same request succeeds after ``retry_after_s`` whole
    seconds (rounded up, never 0, as HTTP's Retry-After says it)."""

    def __init__(self, code: str, message: str, retry_after_s: int) -> None:
        super().__init__(code, message)
        self.retry_after_s = retry_after_s
