"""AI assistants through any OpenAI-compatible Chat Completions endpoint (issue 17).

Hosted providers, Ollama, vLLM and llama.cpp's server all answer ``POST {base}/chat/completions``
alike; httpx speaks it directly, no SDK. The assistant is offered one tool, ``handover``: a
model that calls it hands the conversation to the operators.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

HANDOVER_TOOL = "handover"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": HANDOVER_TOOL,
            "description": (
                "Hand the conversation to a human operator: when the visitor asks for a"
                " person, or when you cannot help."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "reason": {"type": "string", "description": "why a human should take over"}
                },
            },
        },
    }
]
# A server that sends no `usage` still costs tokens: count about four characters a token, the
# rule of thumb OpenAI gives for English, so budgets hold with such servers too.
CHARS_PER_TOKEN = 4
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    """The model's answer: its text ("" when it only called the tool), whether it asked to
    hand over, the model that answered and what it cost (estimated when ``estimated``)."""

    text: str
    handover: bool
    model: str
    tokens: int
    estimated: bool


class AssistantFailed(Exception):
    """The provider gave no answer: unreachable, too slow, refusing (``status``: its HTTP
    status, 429 for its own rate limit), or answering something that is not a completion."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ChatCompletions:
    """One connection pool for every assistant; each call ends within ``timeout_s``."""

    def __init__(self, *, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None):
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def complete(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        turns: Sequence[Turn],
        max_tokens: int,
    ) -> Completion:
        body = {
            "model": model,
            "messages": [{"role": t.role, "content": t.content} for t in turns],
            "max_tokens": max_tokens,
            "tools": TOOLS,
        }
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            # httpx bounds each phase; this bounds the whole exchange, e.g. a trickling answer.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(
                    f"{base_url}/chat/completions", json=body, headers=headers
                )
        except (TimeoutError, httpx.TimeoutException):
            raise AssistantFailed(f"the model did not answer within {self._timeout_s} s") from None
        except httpx.HTTPError as exc:
            raise AssistantFailed(
                f"the model's server is unreachable: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise AssistantFailed(
                f"the model's server answered HTTP {response.status_code}", response.status_code
            )
        return _completion(response, model, turns)

    async def aclose(self) -> None:
        await self._client.aclose()


def _completion(response: httpx.Response, model: str, turns: Sequence[Turn]) -> Completion:
    try:
        answer = response.json()
        message = answer["choices"][0]["message"]
        content = message.get("content") or ""
        calls = message.get("tool_calls") or []
        if not isinstance(content, str) or not isinstance(calls, list):
            raise TypeError("content or tool_calls of the wrong type")
        handover = any(
            isinstance(c, dict) and c.get("function", {}).get("name") == HANDOVER_TOOL
            for c in calls
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise AssistantFailed(
            "the model's server answered something that is no completion"
        ) from None
    if not content.strip() and not handover:
        raise AssistantFailed("the model answered with no text")
    answered = answer.get("model")
    usage = answer.get("usage")
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    estimated = not (isinstance(total, int) and not isinstance(total, bool) and total >= 0)
    if estimated:
        chars = sum(len(t.content) for t in turns) + len(content) + len(json.dumps(calls))
        total = math.ceil(chars / CHARS_PER_TOKEN)
    assert isinstance(total, int)
    return Completion(
        text=content.strip(),
        handover=handover,
        model=answered if isinstance(answered, str) and answered else model,
        tokens=total,
        estimated=estimated,
    )
