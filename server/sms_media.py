"""The pictures of inbound MMS (issue 14), fetched in the background from the provider.

The webhook only records each ``MediaUrl{N}`` (``media_rows``) and answers at once; a worker
in every process claims due rows with a lease (the outbound worker's pattern, so a process
that dies mid-fetch leaves the row to the next claim, and a restart loses nothing), fetches
them, stores each picture as an uploaded image is stored (server/uploads.py) and makes the
first one stored its message's image and each further one an attachment of the message (as an
email's files are), which the operators hear of live (``message:image``).

Only the provider's hosts are asked (research note A, "MMS media behind redirects/auth"):
the channel's ``api_url`` origin, ``api.twilio.com`` and Twilio's media CDN
(``*.twiliocdn.com``) over HTTPS. A URL on any other host is refused when it comes in and no
request is made; a redirect to one is refused before it is followed. The channel's
credentials (HTTP basic) go only to the ``api_url`` origin and ``api.twilio.com``: the CDN's
URLs are signed by the provider itself. A body over the size cap or of a type that is not a
picture is refused without reading the rest.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from server import metrics
from server.channels import Channels
from server.claim_loop import ClaimLoop
from server.crypto import UnreadableSecret
from server.errors import LiveOpError, NotFound, TooManyRequests
from server.event_catalogue import MESSAGE_IMAGE
from server.events import EventFeed
from server.outbound import backoff_s, new_worker_id
from server.render.snake_case import attachments_data
from server.uploads import MEDIA_TYPES, SERVE_ROOT, ImageStore
from storage.base import Store
from storage.models import Attachment, MediaState, SmsMedia

log = logging.getLogger(__name__)

TWILIO_API_HOST = "api.twilio.com"
TWILIO_CDN_SUFFIX = ".twiliocdn.com"
# The picture types the inbox shows (server/uploads.py stores exactly these).
CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Twilio sends at most 10 media per message.
MAX_MEDIA = 10
URL_MAX = 2000
MAX_REDIRECTS = 5
BATCH = 5
POLL_S = 1.0
LEASE_S = 60.0
# A fetch is cut off well before its lease ends (see server/outbound.py).
FETCH_TIMEOUT_S = LEASE_S / 3
MAX_ATTEMPTS = 5
BACKOFF_BASE_S = 10.0
ERROR_MAX = 300


class Refused(Exception):
    """Not fetched, and never will be: a foreign host, a type or size we do not take."""


class Retry(Exception):
    """Not fetched this time: the provider was unreachable, slow or failing."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def allowed(url: str, api_url: str) -> bool:
    """Whether ``url`` is on one of the provider's media hosts (see the module docstring)."""
    scheme, host, port = _origin(url)
    if (scheme, host, port) == _origin(api_url):
        return True
    return (
        scheme == "https"
        and port == 443
        and (host == TWILIO_API_HOST or host.endswith(TWILIO_CDN_SUFFIX))
    )


def _with_credentials(url: str, api_url: str) -> bool:
    scheme, host, port = _origin(url)
    return (scheme, host, port) == _origin(api_url) or (scheme, host, port) == (
        "https",
        TWILIO_API_HOST,
        443,
    )


def media_rows(
    account_id: str,
    channel_id: int,
    convo_id: str,
    seq: int,
    urls: list[tuple[str, str]],
    api_url: str,
    now: float,
) -> list[SmsMedia]:
    """A row per (url, content type) of an inbound message: queued, or refused at once (a
    foreign host, a type that is not a picture), so no request is ever made for it."""
    found = []
    for n, (url, content_type) in enumerate(urls):
        error = None
        if not allowed(url, api_url):
            error = f"refused: {urlsplit(url).hostname or url[:60]} is not the provider's host"
        elif content_type not in CONTENT_TYPES:
            error = f"refused: {content_type[:60]} is not a picture the inbox shows"
        row = SmsMedia(
            convo_id=convo_id, seq=seq, n=n, account_id=account_id, channel_id=channel_id,
            url=url, content_type=content_type, state="queued" if error is None else "refused",
            attempts=0, claimed_by=None, lease_until=None, next_attempt_at=now,
            last_error=error, image_url=None, created=now,
        )  # fmt: skip
        found.append(row)
    return found


class MediaWorker(ClaimLoop):
    def __init__(
        self,
        store: Store,
        feed: EventFeed,
        channels: Channels,
        images: ImageStore,
        *,
        public_url: str | None,
        worker_id: str | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        super().__init__("liveop-sms-media", poll_s)
        self.worker_id = worker_id or new_worker_id()
        self._store = store
        self._feed = feed
        self._channels = channels
        self._images = images
        self._public_url = public_url or ""
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=FETCH_TIMEOUT_S)

    async def stop(self) -> None:
        """Lets the fetches in flight finish (see ClaimLoop.stop); an unfinished claim lapses
        with its lease and another worker takes it."""
        await super().stop()
        await self._client.aclose()

    async def run_once(self) -> int:
        """Claims one batch, fetches and records it; returns how many were claimed."""
        claimed = await self._store.claim_sms_media(
            self.worker_id, now=time.time(), lease_s=LEASE_S, limit=BATCH
        )
        await asyncio.gather(*(self._fetch_one(m) for m in claimed))
        return len(claimed)

    async def _fetch_one(self, media: SmsMedia) -> None:
        error = None
        picture: Attachment | None = None
        retry_at: float | None = None
        state: MediaState
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                data = await self._download(media)
                name = await self._images.save(media.account_id, data)
            picture = self._picture(media, name, len(data))
            state = "stored"
        except Refused as exc:
            state, error = "refused", str(exc)
        except (Retry, TimeoutError, TooManyRequests) as exc:
            error = str(exc) or "the provider did not answer in time"
            if isinstance(exc, TooManyRequests):
                error = "this process was storing too many pictures at once"
            if media.attempts >= MAX_ATTEMPTS:
                state, error = "failed", f"{error} (gave up after {media.attempts} attempts)"
            else:
                state = "queued"
                delay = backoff_s(media.attempts, base_s=BACKOFF_BASE_S, jitter=random.random())
                retry_at = time.time() + delay
        except LiveOpError as exc:  # the bytes are not a picture, or too many pixels
            state, error = "refused", f"refused: {exc.message}"
        result = await self._store.finish_sms_media(
            media, self.worker_id, state=state, error=error and error[:ERROR_MAX],
            retry_at=retry_at, picture=picture,
        )  # fmt: skip
        metrics.sms_media.labels(state if result is not None else "lost").inc()
        if error is not None:
            log.warning("MMS picture %s/%s/%s: %s", media.convo_id, media.seq, media.n, error)
        if result:
            shown = {
                "conversation_id": result.convo_id,
                "seq": result.seq,
                "image_url": result.image_url,
                "attachments": attachments_data(result.attachments),
            }
            await self._feed.ephemeral(media.account_id, MESSAGE_IMAGE, orjson.dumps(shown))

    def _picture(self, media: SmsMedia, name: str, size: int) -> Attachment:
        """The stored picture as the message lists it: named by its place in the MMS and typed
        by the format the image store decoded (its name's extension), not by the provider."""
        extension = PurePosixPath(name).suffix
        return Attachment(
            name=f"picture-{media.n + 1}{extension}",
            content_type=MEDIA_TYPES[extension],
            size=size,
            url=f"{self._public_url}{SERVE_ROOT}/{media.account_id}/{name}",
        )

    async def _download(self, media: SmsMedia) -> bytes:
        try:
            channel = await self._channels.get(media.account_id, media.channel_id)
            credentials = self._channels.credentials(channel)
        except NotFound:
            raise Refused("the channel was deleted") from None
        except UnreadableSecret:
            raise Retry("the channel's credentials cannot be opened") from None
        url = media.url
        for _ in range(MAX_REDIRECTS + 1):
            if not allowed(url, credentials.api_url):
                raise Refused(f"refused: a redirect to {urlsplit(url).hostname}, not the provider")
            auth = (
                (credentials.account_sid, credentials.auth_token)
                if _with_credentials(url, credentials.api_url)
                else None
            )
            request = self._client.build_request("GET", url)
            try:
                response = await self._client.send(request, auth=auth, stream=True)
            except httpx.HTTPError as exc:
                raise Retry(f"the provider is unreachable: {exc}") from None
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                return await self._body(response)
            finally:
                await response.aclose()
        raise Refused(f"refused: more than {MAX_REDIRECTS} redirects")

    async def _body(self, response: httpx.Response) -> bytes:
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise Retry(f"the provider answered HTTP {status}")
        if status != 200:
            raise Refused(f"refused: the provider answered HTTP {status}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:
            raise Refused(f"refused: {content_type[:60] or 'no type'} is not a picture")
        cap = self._images.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise Refused(f"refused: larger than {cap} bytes")
        data = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > cap:
                    raise Refused(f"refused: larger than {cap} bytes")
        except httpx.HTTPError as exc:
            raise Retry(f"the download broke off: {exc}") from None
        return bytes(data)
