"""Twilio's request signature (``X-Twilio-Signature``), checked exactly as Twilio computes it.

The signed string is the URL Twilio requested, then every POST parameter sorted by name (and
a repeated name's values sorted), name and value with no separators; the signature is the
base64 HMAC-SHA1 of it keyed with the account's auth token. Twilio's own validator accepts
the URL with the default port added and with any port removed, since Twilio's side is not
consistent about it; so does this. A JSON body is not signed as parameters: the URL carries
``bodySHA256`` (the hex SHA-256 of the raw body) and the URL alone is signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit, urlunsplit

DEFAULT_PORTS = {"https": 443, "http": 80}


def signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + v for name in sorted(values) for v in sorted(values[name]))
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    bare = urlunsplit(parts._replace(netloc=host))
    default = DEFAULT_PORTS.get(parts.scheme)
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    return (url, bare, with_port)


def valid_form(
    url: str, params: Iterable[tuple[str, str]], auth_token: str, header: str | None
) -> bool:
    """Whether ``header`` signs this form POST to ``url``."""
    if not header:
        return False
    pairs = list(params)
    return any(
        hmac.compare_digest(signature(u, pairs, auth_token), header) for u in _port_variants(url)
    )


def valid_json(url: str, body: bytes, auth_token: str, header: str | None) -> bool:
    """Whether ``header`` signs ``url`` (with its ``bodySHA256``) and the body matches it."""
    claimed = parse_qs(urlsplit(url).query).get("bodySHA256", [""])[0]
    actual = hashlib.sha256(body).hexdigest()
    return hmac.compare_digest(claimed, actual) and valid_form(url, (), auth_token, header)
