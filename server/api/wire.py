"""What every HTTP surface shares: reading fields strictly, answering JSON, reporting errors."""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
from collections.abc import Awaitable, Collection, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal, overload
from urllib.parse import parse_qsl

import asyncpg
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    LiveOpError,
    NotConfigured,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from server.text import has_control_characters

STATUS_FOR: dict[type[LiveOpError], int] = {
    Invalid: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    TooManyRequests: 429,
    NotConfigured: 501,
    Unavailable: 503,
}
# Ids and counts are stored as signed 64-bit integers by every backend.
MAX_INTEGER = 2**63 - 1
MIN_INTEGER = -(2**63)
# ASCII digits only, at most one leading minus, and no more digits than a 64-bit value has:
# str.isdigit() and int() also take "²" and Arabic-Indic digits, and int() raises on more
# than 4,300 digits.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_DIGITS = re.compile(r"[0-9]+")
# The same for decimals (float() also reads Arabic-Indic digits, "1_0" and "infinity").
_DECIMAL = re.compile(r"-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][-+]?[0-9]{1,3})?")
# Store failures a client may simply retry, answered 503 with this Retry-After: SQLite busy,
# locked, full or failing I/O (its primary result codes), and PostgreSQL below.
_SQLITE_RETRYABLE = frozenset(
    {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN",
     "SQLITE_READONLY", "SQLITE_PROTOCOL"}
)  # fmt: skip
# Connection lost or refused (08, and the socket's own errors), resources exhausted (53: disk
# full, too many connections), a serialization conflict (40), shutdown or cancel (57), and a
# statement or pool wait that timed out.
_POSTGRES_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,
    asyncpg.OperatorInterventionError,
    ConnectionError,
    TimeoutError,
)
RETRY_AFTER_S = 2
# Requests in progress at once per process: far above what a healthy store keeps in flight
# (requests take milliseconds), far below what a stalled one would pile up.
IN_FLIGHT_LIMIT = 128
# How long one more waits for a slot: a burst passes, a stall is answered 503 soon.
IN_FLIGHT_WAIT_S = 5.0
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(**fields: Any) -> JSON:
    return JSON({"success": True, **fields})


def error_response(status: int, code: str, message: str) -> JSON:
    return JSON({"success": False, "error": {"code": code, "message": message}}, status_code=status)


def error_json(exc: LiveOpError) -> dict[str, Any]:
    """The ``error`` object of every surface; a spent rate limit also says when to retry."""
    found: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, TooManyRequests):
        found["retry_after"] = exc.retry_after_s
    return found


def check_identifier(value: str, what: str) -> str:
    """An id, key, cursor or other name of a thing, from any field, path or frame: control
    characters are refused (400). No id we issue holds one, PostgreSQL cannot store NUL, and
    a refusal here keeps them out of every query, log line and file name."""
    if has_control_characters(value):
        raise Invalid("invalid_characters", f"{what} contains control characters")
    return value


def path_identifier(request: HTTPConnection, name: str, what: str, max_chars: int) -> str:
    """A text path parameter that names something (an account, a conversation)."""
    value = check_identifier(str(request.path_params[name]), what)
    if len(value) > max_chars:
        raise Invalid("invalid_field", f"{what} is longer than {max_chars} characters")
    return value


def parse_integer(raw: str) -> int | None:
    """A whole number in signed 64-bit range written in ASCII digits (one optional leading
    minus), or None: the one reading of every integer a client sends, in a field, a path or
    a header."""
    if not _INTEGER.fullmatch(raw):
        return None
    value = int(raw)
    return value if MIN_INTEGER <= value <= MAX_INTEGER else None


def path_id(request: HTTPConnection, name: str, missing: LiveOpError) -> int:
    """An id in a path: ASCII digits, else no such path (as a route that does not match);
    digits beyond 64 bits name nothing we could hold: ``missing``."""
    raw = str(request.path_params[name])
    if not _DIGITS.fullmatch(raw):
        raise NotFound("not_found", "no such path")
    value = parse_integer(raw)
    if value is None:
        raise missing
    return value


async def on_liveop_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LiveOpError)
    response = JSON(
        {"success": False, "error": error_json(exc)}, status_code=STATUS_FOR.get(type(exc), 400)
    )
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


def retryable(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a store failure that passes: the same request may succeed soon.

    Its causes count: a transaction that cannot end because its connection was lost raises
    asyncpg's InterfaceError, in the context of the ConnectionDoesNotExistError that says so.
    """
    while exc is not None:
        if isinstance(exc, sqlite3.OperationalError):
            name = getattr(exc, "sqlite_errorname", "")
            if "_".join(name.split("_")[:2]) in _SQLITE_RETRYABLE:
                return True
        elif isinstance(exc, _POSTGRES_RETRYABLE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def unavailable() -> JSON:
    response = error_response(
        503, "store_unavailable", "the store is busy or unreachable; retry in a moment"
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def crash_response(exc: BaseException) -> Response:
    """What a client gets for an exception no handler took: 503 when retrying may work."""
    if retryable(exc):
        return unavailable()
    return error_response(500, "internal_error", "the server failed; the error was logged")


async def on_crash(request: Request, exc: Exception) -> Response:
    return crash_response(exc)


class Fields:
    """Typed, validating access to one request's fields (a form or a JSON object)."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self._data = data
        self._prefix = prefix

    def _raw(self, name: str, required: bool) -> Any:
        value = self._data.get(name)
        if value is None or value == "":
            if required:
                raise Invalid("missing_field", f"{self._prefix}{name} is required")
            return None
        return value

    def _bad(self, name: str, what: str) -> Invalid:
        return Invalid("invalid_field", f"{self._prefix}{name} must be {what}")

    def text(
        self, name: str, *, required: bool = False, max_chars: int | None = None
    ) -> str | None:
        """Present strings are returned as sent (even empty); absent ones are None. What
        the text may hold is the caller's rule (an identifier's is ``identifier``)."""
        value = self._data.get(name)
        if value is None or (required and value == ""):
            if required:
                raise Invalid("missing_field", f"{self._prefix}{name} is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._bad(name, "a string")
        text = str(value)
        if max_chars is not None and len(text) > max_chars:
            raise self._bad(name, f"at most {max_chars} characters")
        return text

    @overload
    def identifier(
        self, name: str, *, required: Literal[True], max_chars: int | None = None
    ) -> str: ...

    @overload
    def identifier(
        self, name: str, *, required: bool = False, max_chars: int | None = None
    ) -> str | None: ...

    def identifier(
        self, name: str, *, required: bool = False, max_chars: int | None = None
    ) -> str | None:
        """An id, key, cursor or keyword: text without control characters; absent or empty
        is None (or ``missing_field`` when ``required``)."""
        value = self.text(name, required=required, max_chars=max_chars)
        if not value:
            return None
        return check_identifier(value, f"{self._prefix}{name}")

    def require(self, name: str, *, max_chars: int | None = None) -> str:
        """A string that must be present and non-empty."""
        return self.text(name, required=True, max_chars=max_chars) or ""

    @overload
    def integer(self, name: str, *, required: Literal[True], minimum: int | None = None) -> int: ...

    @overload
    def integer(
        self, name: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None: ...

    def integer(
        self, name: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_integer(value)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not MIN_INTEGER <= value <= MAX_INTEGER
        ):
            raise self._bad(name, "a whole number")
        if minimum is not None and value < minimum:
            raise self._bad(name, f"at least {minimum}")
        return value

    def number(self, name: str, *, minimum: float | None = None) -> float | None:
        value = self._raw(name, False)
        if value is None:
            return None
        if isinstance(value, str):
            if not _DECIMAL.fullmatch(value):
                raise self._bad(name, "a number")
            value = float(value)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._bad(name, "a number")
        if minimum is not None and value < minimum:
            raise self._bad(name, f"at least {minimum}")
        return float(value)

    @overload
    def boolean(self, name: str, *, required: Literal[True]) -> bool: ...

    @overload
    def boolean(self, name: str, *, required: bool = False) -> bool | None: ...

    def boolean(self, name: str, *, required: bool = False) -> bool | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, str) and value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def int_list(self, name: str) -> list[int] | None:
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, int) or not MIN_INTEGER <= v <= MAX_INTEGER
            for v in value
        ):
            raise self._bad(name, "a list of whole numbers")
        return value

    def text_list(self, name: str, *, max_items: int, max_chars: int) -> list[str] | None:
        """A list of short strings, sent as one (JSON bodies) or JSON-encoded (forms); the
        caller judges their values."""
        value = self._data.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise self._bad(name, "a list of strings") from None
        if (
            not isinstance(value, list)
            or len(value) > max_items
            or any(not isinstance(v, str) or len(v) > max_chars for v in value)
        ):
            raise self._bad(
                name, f"a list of at most {max_items} strings of at most {max_chars} characters"
            )
        return value

    def objects(self, name: str, *, max_items: int) -> list[Mapping[str, Any]] | None:
        """A list of objects, sent as one (JSON bodies) or JSON-encoded (forms); the caller
        judges their values."""
        value = self._data.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise self._bad(name, "a list of objects") from None
        if (
            not isinstance(value, list)
            or len(value) > max_items
            or any(not isinstance(v, dict) for v in value)
        ):
            raise self._bad(name, f"a list of at most {max_items} objects")
        return value

    @property
    def data(self) -> Mapping[str, Any]:
        """The fields as sent: for a free-form object such as analytics metadata."""
        return self._data

    def nested(self, name: str) -> Fields | None:
        """An object, sent as one (JSON bodies) or as a JSON-encoded string (forms)."""
        value = self.mapping(name)
        return None if value is None else Fields(value, f"{self._prefix}{name}.")

    def mapping(self, name: str) -> dict[str, Any] | None:
        """An object as sent (see ``nested``), its values unchecked: the caller's to judge."""
        value = self._raw(name, False)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise Invalid("invalid_json", f"{self._prefix}{name} is not valid JSON") from None
        if not isinstance(value, dict):
            raise self._bad(name, "a JSON object")
        return value


async def read_fields(request: Request) -> Fields:
    """The query string's fields, overlaid by the body's (form, multipart or JSON)."""
    data: dict[str, Any] = dict(_parse_query(request.scope.get("query_string", b"")))
    if request.method in ("GET", "HEAD"):
        return Fields(data)
    full_type = request.headers.get("content-type", "")
    content_type = full_type.split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        return Fields(data)
    if content_type == "multipart/form-data":
        data.update(_multipart(full_type, body))
    elif content_type == "application/json":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Invalid("invalid_json", "the body is not valid UTF-8 JSON") from None
        if not isinstance(parsed, dict):
            raise Invalid("invalid_json", "the body must be a JSON object")
        data.update(parsed)
    elif content_type in ("application/x-www-form-urlencoded", ""):
        data.update(_parse_query(body))
    else:
        raise UnsupportedMediaType(
            "unsupported_media_type",
            "send application/json, application/x-www-form-urlencoded or multipart/form-data",
        )
    return Fields(data)


def _parse_query(raw: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise Invalid("invalid_encoding", "fields must be UTF-8 (percent-encoded)") from None


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    """Text fields of a multipart body, decoded as strict UTF-8.

    The stdlib MIME parser is used rather than Starlette's form parser because that one
    silently falls back to Latin-1 for bytes that are not UTF-8.
    """
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise Invalid("invalid_form", "the multipart body is malformed")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            raise Invalid("invalid_form", "multipart parts must be named text fields")
        payload = part.get_payload(decode=True)
        try:
            fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else ""
        except UnicodeDecodeError:
            raise Invalid("invalid_encoding", f"{name} is not UTF-8") from None
    return fields


class InFlightLimit:
    """Bounds the HTTP requests in progress at once to ``limit``; one more waits at most
    ``wait_s`` for a slot, then is answered 503 with Retry-After.

    When the store stalls (a full or hung disk, a lost database) every request hangs on it:
    this keeps how many wait, and what they hold (sockets, memory, pool waits), bounded, and
    tells the rest to come back. Long-lived streams (``exempt`` paths) are not counted, nor
    are WebSockets.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int = IN_FLIGHT_LIMIT,
        wait_s: float = IN_FLIGHT_WAIT_S,
        exempt: Collection[str] = (),
    ) -> None:
        self.app = app
        self.wait_s = wait_s
        self.exempt = frozenset(exempt)
        self._slots = asyncio.Semaphore(limit)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Hands back the next app's coroutine where it has nothing to do, so that streams
        # and sockets keep no frame of it alive (see CredentialsStayOutOfURLs).
        if scope["type"] != "http" or scope["path"] in self.exempt:
            return self.app(scope, receive, send)
        return self._in_turn(scope, receive, send)

    async def _in_turn(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self.wait_s)
            except TimeoutError:
                await unavailable()(scope, receive, send)
                return
        else:
            # A free slot is taken without suspending. wait_for (Python 3.11) would wrap the
            # acquire in a task of its own, with a timer, on every request.
            await self._slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` before anything parses them.

    The paths in ``exempt``, and those starting with one of ``exempt_prefixes``, take larger
    bodies (image uploads, inbound mail) and enforce their own limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        exempt: Collection[str] = (),
        exempt_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = frozenset(exempt)
        self.exempt_prefixes = exempt_prefixes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # As InFlightLimit: no frame of it for what it lets through untouched.
        if (
            scope["type"] != "http"
            or scope["path"] in self.exempt
            or scope["path"].startswith(self.exempt_prefixes)
        ):
            return self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            # No body to count (RFC 9112 6.3): a GET, such as an operator's event stream.
            return self.app(scope, receive, send)
        return self._limited(scope, receive, send, declared)

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, declared: bytes | None
    ) -> None:
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(413, "body_too_large", self._message())
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise TooLarge("body_too_large", self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"
