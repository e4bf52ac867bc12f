"""The LibreTranslate client against a local server that speaks LibreTranslate's API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from server.adapters.translate import (
    LibreTranslate,
    TranslationFailed,
    check_language,
    create_translator,
)
from server.errors import Invalid
from tests.adapters.providers import FakeLibreTranslate, running
from tests.server.realtime_clients import free_port


@pytest.fixture
async def libre() -> AsyncIterator[FakeLibreTranslate]:
    provider = FakeLibreTranslate()
    async with running(provider):
        yield provider


@pytest.fixture
async def translator(libre: FakeLibreTranslate) -> AsyncIterator[LibreTranslate]:
    client = LibreTranslate(libre.url)
    yield client
    await client.aclose()


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [("hello world", "de", "hallo welt"), ("thanks Anna", "pt-BR", "obrigado Anna")],
)
async def test_translates_with_the_fields_libretranslate_reads(
    libre: FakeLibreTranslate, translator: LibreTranslate, text: str, target: str, expected: str
) -> None:
    assert await translator.translate(text, source="en", target=target) == expected
    assert libre.received == [{"q": text, "source": "en", "target": target, "format": "text"}]


async def test_auto_source_lets_the_provider_detect_the_language(
    translator: LibreTranslate,
) -> None:
    assert await translator.translate("merci bonjour", source="auto", target="en") == (
        "thanks hello"
    )


async def test_the_api_key_is_sent_only_when_configured_and_a_wrong_one_is_reported(
    libre: FakeLibreTranslate,
) -> None:
    libre.api_key = "right-key"
    keyed = LibreTranslate(libre.url, api_key="right-key")
    wrong = LibreTranslate(libre.url, api_key="wrong-key")
    keyless = LibreTranslate(libre.url)
    try:
        assert await keyed.translate("hello", source="en", target="fr") == "bonjour"
        assert libre.received[-1]["api_key"] == "right-key"
        for client in (wrong, keyless):
            with pytest.raises(TranslationFailed, match="HTTP 403: Invalid API key") as failed:
                await client.translate("hello", source="en", target="fr")
            assert failed.value.status == 403
        assert "api_key" not in libre.received[-1]
    finally:
        for client in (keyed, wrong, keyless):
            await client.aclose()


async def test_an_unsupported_language_is_a_refused_request_not_an_outage(
    translator: LibreTranslate,
) -> None:
    with pytest.raises(TranslationFailed, match="HTTP 400: ja is not supported") as failed:
        await translator.translate("hello", source="en", target="ja")
    assert failed.value.status == 400


async def test_a_provider_failure_carries_its_error_text(
    libre: FakeLibreTranslate, translator: LibreTranslate
) -> None:
    libre.crash = True
    with pytest.raises(TranslationFailed, match="HTTP 500: Cannot translate text") as failed:
        await translator.translate("hello", source="en", target="de")
    assert failed.value.status == 500


async def test_a_slow_provider_is_abandoned_after_the_timeout(libre: FakeLibreTranslate) -> None:
    libre.delay_s = 1.0
    client = LibreTranslate(libre.url, timeout_s=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(TranslationFailed, match=r"did not answer within 0\.2 s"):
            await client.translate("hello", source="en", target="de")
    finally:
        await client.aclose()
    assert time.monotonic() - started < 0.9


async def test_an_answer_that_is_not_json_is_a_failure(
    libre: FakeLibreTranslate, translator: LibreTranslate
) -> None:
    libre.not_json = True
    with pytest.raises(TranslationFailed, match="without a translatedText") as failed:
        await translator.translate("hello", source="en", target="de")
    assert failed.value.status is None


async def test_an_unreachable_provider_is_a_failure() -> None:
    client = LibreTranslate(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TranslationFailed, match="unreachable"):
            await client.translate("hello", source="en", target="de")
    finally:
        await client.aclose()


async def test_blank_text_is_not_sent(
    libre: FakeLibreTranslate, translator: LibreTranslate
) -> None:
    assert await translator.translate("  ", source="en", target="de") == "  "
    assert libre.received == []


async def test_the_local_provider_reads_forms_as_libretranslate_does(
    libre: FakeLibreTranslate,
) -> None:
    # The stand-in is only worth its tests if it behaves like the real server for every body.
    async with httpx.AsyncClient() as client:
        fields = {"q": "danke", "source": "de", "target": "en"}
        response = await client.post(f"{libre.url}/translate", data=fields)
        missing = await client.post(f"{libre.url}/translate", data={"q": "danke"})
    assert response.json() == {"translatedText": "thanks"}
    assert missing.status_code == 400
    assert missing.json() == {"error": "Invalid request: missing source parameter"}


async def test_create_translator_is_none_without_a_url(libre: FakeLibreTranslate) -> None:
    assert create_translator(None, "key") is None
    assert create_translator("", None) is None
    translator = create_translator(f"{libre.url}/", None)
    assert translator is not None
    try:
        assert await translator.translate("help", source="en", target="de") == "hilfe"
    finally:
        await translator.aclose()


@pytest.mark.parametrize(
    ("code", "normalised"),
    [
        ("de", "de"),
        ("fil", "fil"),
        ("pt-BR", "pt-BR"),
        ("pt_br", "pt-BR"),
        ("ZH-hans", "zh-Hans"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("es-419", "es-419"),
        (" fr ", "fr"),
    ],
)
def test_language_codes_are_normalised(code: str, normalised: str) -> None:
    assert check_language(code) == normalised


@pytest.mark.parametrize(
    "code",
    ["", "d", "deutsch", "auto", "en-", "en-USA", "pt-BR-x", "12", "de;en", "e n", "x" * 1000],
)
def test_language_codes_that_are_not_iso_639_are_refused(code: str) -> None:
    with pytest.raises(Invalid) as refused:
        check_language(code)
    assert refused.value.code == "invalid_language"
