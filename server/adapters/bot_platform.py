"""Posts events to a bot platform's webhook (seed 004: TextMessage, FileMessage, Closed,
SelectDestination), as the change that queued them rendered them.

Any answer but a 2xx is a failure worth retrying: a platform that is redeploying answers 404
or 502 for a while, and its events must arrive late rather than never. The event's ``id`` is
our message id, so a platform that receives one twice (at-least-once) can tell.
"""

from __future__ import annotations

import httpx

from server.adapters.delivery import DeliveryFailed

# How much of a refusing webhook's answer the health line keeps.
ANSWER_CHARS = 200


class BotWebhook:
    def __init__(self, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def post(self, url: str, payload: str) -> None:
        try:
            response = await self._client.post(
                url, content=payload.encode(), headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise DeliveryFailed(
                f"the bot platform's webhook could not be reached: {exc!r}", retryable=True
            ) from None
        if not response.is_success:
            answer = response.text[:ANSWER_CHARS]
            raise DeliveryFailed(
                f"the bot platform's webhook answered {response.status_code}: {answer}",
                retryable=True,
            )

    async def aclose(self) -> None:
        await self._client.aclose()
