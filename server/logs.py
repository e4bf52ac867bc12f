"""Logging that keeps secrets out: no credential or capability in a URL reaches a log line.

Two formats (``LIVEOP_LOG_FORMAT``): ``text``, uvicorn's own lines with its access log, and
``json``, one JSON object per line for every logger, where the access line is written by
``server.api.telemetry`` with the request id, the route template and the duration. Both redact
the same way.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson
from uvicorn.config import LOGGING_CONFIG

# Query fields whose value grants access, case-folded: credentials, and the conversation id,
# which is the visitor's capability to read and write the conversation.
SECRET_FIELDS = frozenset({"token", "key", "apikey", "password", "convoid"})
# Path segments that are capabilities: the conversation id in the chat window's and the
# operator panel's paths, and an uploaded image's unguessable name.
_CAPABILITY_PATH = re.compile(
    r"(/liveoperator/loadchat/"
    r"|/api/v1/operator/(?:conversation|accept|close|transfer)/"
    r"|/uploads/[^/?]+/)[^/?\s]+"
)
REDACTED = "[redacted]"


def _redact_field(field: str) -> str:
    """``name=value`` with the value redacted when the name, as a server would read it
    (percent-decoded, case-folded), is a secret one."""
    name, equals, _ = field.partition("=")
    if equals and unquote_plus(name).casefold() in SECRET_FIELDS:
        return f"{name}={REDACTED}"
    return field


TEXT = "text"
JSON = "json"
LOG_FORMATS = (TEXT, JSON)
ACCESS_LOGGER = "liveop.access"
# The fields a record may carry (``extra=``) that a JSON line reports under the same name.
_RECORD_FIELDS = ("method", "path", "status", "duration_s")


def redact(text: str) -> str:
    path, question, query = text.partition("?")
    path = _CAPABILITY_PATH.sub(rf"\1{REDACTED}", path)
    if not question:
        return path
    return path + "?" + "&".join(_redact_field(field) for field in query.split("&"))


# Requests no route matched share one route label: arbitrary paths must not grow label sets.
UNMATCHED = "unmatched"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a log line written while serving one request says about it. Read from the ASGI
    scope when the line is written: the router fills in the route as it matches."""

    request_id: str
    scope: Mapping[str, Any]

    @property
    def route(self) -> str:
        """The matched route's template (``/{account_id}/liveoperator/ws``), never the path."""
        path: object = getattr(self.scope.get("route"), "path", None)
        return path if isinstance(path, str) and path else UNMATCHED

    @property
    def account_id(self) -> str | None:
        account: object = self.scope.get("path_params", {}).get("account_id")
        return account if isinstance(account, str) else None


current_request: ContextVar[RequestContext | None] = ContextVar("liveop_request", default=None)


class RedactSecrets(logging.Filter):
    """For uvicorn's access log, whose record args are (client, method, path, http, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str):
                args[2] = redact(args[2])
                record.args = tuple(args)
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message (redacted), and the request
    it was written for when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        context = current_request.get()
        if context is not None:
            line["request_id"] = context.request_id
            line["route"] = context.route
            account_id = context.account_id
            if account_id is not None:
                line["account_id"] = account_id
        for name in _RECORD_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


def uvicorn_log_config(log_format: str = TEXT) -> dict[str, Any]:
    """uvicorn's own logging config with the redacting filter on its access log; in JSON, every
    logger (uvicorn's, the app's, the access line) writes JSON lines to stderr."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    config["handlers"]["access"]["filters"] = ["redact_secrets"]
    if log_format == JSON:
        config["formatters"] = {"json": {"()": JsonLines}}
        config["handlers"] = {
            "default": {
                "formatter": "json",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            }
        }
        config["loggers"] = {
            "uvicorn": {"level": "INFO"},
            "uvicorn.error": {"level": "INFO"},
            # Replaced by the ACCESS_LOGGER line, which knows the route and the request id.
            "uvicorn.access": {"level": "WARNING"},
        }
        config["root"] = {"handlers": ["default"], "level": "INFO"}
    return config
