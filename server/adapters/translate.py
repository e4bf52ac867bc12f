"""Machine translation through LibreTranslate, which an installation can host itself."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Protocol

import httpx

from server.errors import Invalid

# LibreTranslate detects the language of the text itself when asked for this source.
AUTO = "auto"
# A primary ISO 639 code, then optionally a script (zh-Hans) and a region (pt-BR, es-419).
_LANGUAGE = re.compile(r"([a-z]{2,3})(?:-([a-z]{4}))?(?:-([a-z]{2}|[0-9]{3}))?", re.IGNORECASE)


class TranslationFailed(Exception):
    """The provider gave no translation. ``status`` is its HTTP status when it answered: a 400
    means the request itself was refused (an unsupported language, say), not an outage."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Translator(Protocol):
    async def translate(self, text: str, *, source: str, target: str) -> str: ...

    async def aclose(self) -> None: ...


def check_language(code: str) -> str:
    """A language code in its canonical BCP 47 spelling ("PT_br" -> "pt-BR")."""
    found = _LANGUAGE.fullmatch(code.strip().replace("_", "-"))
    if found is None:
        raise Invalid(
            "invalid_language", "the language must be an ISO 639 code such as de, pt-BR or zh-Hans"
        )
    language, script, region = found.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


class LibreTranslate:
    """One connection pool to one LibreTranslate server; every call ends within ``timeout_s``."""

    def __init__(
        self, base_url: str, *, api_key: str | None = None, timeout_s: float = 5.0
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/translate"
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def translate(self, text: str, *, source: str, target: str) -> str:
        if not text.strip():
            return text  # LibreTranslate refuses an empty q; there is nothing to translate anyway
        body: dict[str, str] = {"q": text, "source": source, "target": target, "format": "text"}
        if self._api_key:
            body["api_key"] = self._api_key
        try:
            # httpx bounds each phase; this bounds the whole exchange, e.g. a trickling answer.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(self._url, json=body)
        except (TimeoutError, httpx.TimeoutException):
            raise TranslationFailed(
                f"LibreTranslate did not answer within {self._timeout_s} s"
            ) from None
        except httpx.HTTPError as exc:
            raise TranslationFailed(f"LibreTranslate is unreachable: {exc!r}") from None
        answer = _json_object(response)
        if response.status_code != 200:
            reason = (answer.get("error") if answer else None) or response.reason_phrase
            raise TranslationFailed(
                f"LibreTranslate answered HTTP {response.status_code}: {reason}",
                response.status_code,
            )
        translated = answer.get("translatedText") if answer else None
        if not isinstance(translated, str):
            raise TranslationFailed("LibreTranslate answered without a translatedText string")
        return translated

    async def aclose(self) -> None:
        await self._client.aclose()


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is anything else (a proxy's HTML page)."""
    try:
        parsed = response.json()
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def create_translator(url: str | None, api_key: str | None) -> Translator | None:
    """The configured translator, or None when the installation has none."""
    return LibreTranslate(url, api_key=api_key) if url else None
