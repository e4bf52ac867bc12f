"""An account's AI assistants (issue 17): OpenAI-compatible Chat Completions endpoints.

Validates what the admin surfaces hand in, seals the API key with the installation's
encryption keys (server/crypto.py, as channel credentials are) and makes one Store call. The
key is write-only: only ``api_key`` opens it, for the widget chat's call to the model, and
nothing renders or logs it.
"""

from __future__ import annotations

from server.channels import _url
from server.crypto import Sealer
from server.directory import _name
from server.errors import Invalid, NotFound, at_most
from server.text import check_body, has_control_characters
from storage.base import AssistantPatch, Store
from storage.models import Assistant

MODEL_MAX = 200
API_KEY_MAX = 1000
SYSTEM_PROMPT_MAX = 20_000
# Assistants an account may configure (server.errors.at_most): its sites share a few, with
# room to try other models and prompts.
ASSISTANTS_MAX = 50
# A chat reply, not an essay; providers cap far higher, and the operator reads these.
MAX_TOKENS_LIMIT = 16_384
DEFAULT_MAX_TOKENS = 512
# Far beyond any account's month, still a number every backend stores exactly.
BUDGET_LIMIT = 10**12


def _model(value: str) -> str:
    value = value.strip()
    if not 0 < len(value) <= MODEL_MAX or has_control_characters(value):
        raise Invalid("invalid_field", f"model must be 1 to {MODEL_MAX} visible characters")
    return value


def _api_key(value: str) -> str:
    """Empty for servers that want none (a local Ollama or llama.cpp)."""
    if len(value) > API_KEY_MAX or has_control_characters(value) or " " in value:
        raise Invalid("invalid_field", f"api_key must be at most {API_KEY_MAX} visible characters")
    return value


def _system_prompt(value: str) -> str:
    check_body(value, SYSTEM_PROMPT_MAX)
    return value


def _bounded(value: int, name: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise Invalid("invalid_field", f"{name} must be between {low} and {high}")
    return value


class Assistants:
    def __init__(self, store: Store, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    async def list(self, account_id: str) -> list[Assistant]:
        return await self._store.list_assistants(account_id)

    async def get(self, account_id: str, assistant_id: int) -> Assistant:
        assistant = await self._store.get_assistant(account_id, assistant_id)
        if assistant is None:
            raise NotFound("assistant_not_found", f"no assistant {assistant_id}")
        return assistant

    def api_key(self, assistant: Assistant) -> str:
        """Raises UnreadableSecret when no configured encryption key opens it."""
        return self._sealer.open(assistant.credentials)["api_key"]

    async def create(
        self,
        account_id: str,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None,
        system_prompt: str | None,
        max_tokens: int | None,
        monthly_token_budget: int,
    ) -> Assistant:
        at_most(len(await self._store.list_assistants(account_id)), ASSISTANTS_MAX, "assistants")
        return await self._store.create_assistant(
            account_id,
            _name(name, "name"),
            _url(base_url, "base_url"),
            _model(model),
            self._sealer.seal({"api_key": _api_key(api_key or "")}),
            _system_prompt(system_prompt or ""),
            _bounded(max_tokens or DEFAULT_MAX_TOKENS, "max_tokens", 1, MAX_TOKENS_LIMIT),
            _bounded(monthly_token_budget, "monthly_token_budget", 0, BUDGET_LIMIT),
        )

    async def update(
        self,
        account_id: str,
        assistant_id: int,
        *,
        name: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        monthly_token_budget: int | None = None,
    ) -> Assistant:
        """Changes what is given; a new api_key replaces the sealed one."""
        patch = AssistantPatch(
            name=_name(name, "name") if name is not None else None,
            base_url=_url(base_url, "base_url") if base_url is not None else None,
            model=_model(model) if model is not None else None,
            credentials=(
                self._sealer.seal({"api_key": _api_key(api_key)}) if api_key is not None else None
            ),
            system_prompt=_system_prompt(system_prompt) if system_prompt is not None else None,
            max_tokens=(
                _bounded(max_tokens, "max_tokens", 1, MAX_TOKENS_LIMIT)
                if max_tokens is not None
                else None
            ),
            monthly_token_budget=(
                _bounded(monthly_token_budget, "monthly_token_budget", 0, BUDGET_LIMIT)
                if monthly_token_budget is not None
                else None
            ),
        )
        assistant = await self._store.update_assistant(account_id, assistant_id, patch)
        if assistant is None:
            raise NotFound("assistant_not_found", f"no assistant {assistant_id}")
        return assistant

    async def delete(self, account_id: str, assistant_id: int) -> None:
        if not await self._store.delete_assistant(account_id, assistant_id):
            raise NotFound("assistant_not_found", f"no assistant {assistant_id}")
