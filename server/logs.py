"""Logging that keeps secrets out: no credential or capability in a URL reaches a log line."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

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


def redact(text: str) -> str:
    path, question, query = text.partition("?")
    path = _CAPABILITY_PATH.sub(rf"\1{REDACTED}", path)
    if not question:
        return path
    return path + "?" + "&".join(_redact_field(field) for field in query.split("&"))


class RedactSecrets(logging.Filter):
    """For uvicorn's access log, whose record args are (client, method, path, http, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str):
                args[2] = redact(args[2])
                record.args = tuple(args)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging config with the redacting filter on its access log."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    config["handlers"]["access"]["filters"] = ["redact_secrets"]
    return config
