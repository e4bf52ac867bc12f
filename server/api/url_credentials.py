"""Credentials stay out of URLs: URLs end up in access logs, proxy logs, browser history and
Referer headers, so a password, API key or token sent in a query string is refused with
``400 credentials_in_query`` before any endpoint reads it.

The one exception is what EventSource cannot avoid: the operator stream's ``?token=JWT``
(server.logs redacts it). Names are compared as the endpoints would read them (percent-
decoded) and case-folded, so ``?%74oken=`` or ``?KEY=`` is refused as well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Mapping
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.wire import error_response

# Case-folded names of the fields that carry a credential anywhere in the API.
CREDENTIAL_FIELDS = frozenset({"password", "key", "apikey", "token"})


def credential_names(query_string: bytes) -> set[str]:
    """The credential fields named in a raw query string, decoded and case-folded."""
    text = query_string.decode("latin-1")
    names = {name.casefold() for name, _ in parse_qsl(text, keep_blank_values=True)}
    return names & CREDENTIAL_FIELDS


class CredentialsStayOutOfURLs:
    """``allowed`` maps a path to the credential fields it may take in its query string."""

    def __init__(self, app: ASGIApp, allowed: Mapping[str, Collection[str]]) -> None:
        self.app = app
        self.allowed = allowed

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: it hands back the next app's, so a request it lets through keeps
        # no frame of it alive for as long as it lasts (an SSE stream, a WebSocket).
        if scope["type"] == "http":
            found = credential_names(scope.get("query_string", b""))
            refused = sorted(found - set(self.allowed.get(scope["path"], ())))
            if refused:
                response = error_response(
                    400,
                    "credentials_in_query",
                    f"send {', '.join(refused)} in the body or a header, never in the URL",
                )
                return response(scope, receive, send)
        return self.app(scope, receive, send)
