"""The application: routes, middleware, and a lifespan that builds and closes the services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime.broker import Broker, create_broker
from realtime.holders import Holders
from realtime.hub import Hub
from realtime.presence import MemoryPresence, Presence, RedisPresence
from realtime.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, Unlimited
from realtime.typing_indicators import (
    MemoryTypingIndicators,
    RedisTypingIndicators,
    TypingIndicators,
)
from server import metrics
from server.adapters.assistant import ChatCompletions
from server.adapters.translate import create_translator
from server.api import (
    admin,
    auth,
    chat_window,
    commands,
    contacts,
    inbox_app,
    operations,
    operator_api,
    operator_panel,
    people,
    reports,
    stream,
    tenant_ws,
    uploads,
    visitor_ws,
    webhooks_email,
    webhooks_twilio,
    widgets,
)
from server.api.telemetry import Telemetry
from server.api.url_credentials import CredentialsStayOutOfURLs
from server.api.wire import BodyLimit, InFlightLimit, ok, on_crash, on_http_error, on_liveop_error
from server.assistants import Assistants
from server.auth import Authenticator
from server.availability import Availability
from server.channels import Channels
from server.contacts import Contacts
from server.conversations import ConversationEngine
from server.crypto import Sealer
from server.directory import Directory
from server.email_imap import ImapSources
from server.email_ingest import MAX_ATTACHMENT_BYTES, EmailIngest
from server.errors import LiveOpError
from server.events import EventFeed
from server.gc_policy import GcPolicy
from server.inbox import Inbox
from server.logs import JSON
from server.metered_store import metered
from server.outbound import outbound_worker
from server.push import push_notifications
from server.readiness import Readiness, ShutdownState
from server.services import Services
from server.settings import Settings
from server.sms_media import MediaWorker
from server.uploads import FileStore, ImageStore
from server.webhook_delivery import webhook_worker
from server.webhooks import Webhooks
from server.widgets import Widgets
from storage import create_store


async def healthz(request: Request) -> Response:
    return ok(status="ok")


# Answers when the broker does; None when the broker lives in this process.
BrokerPing = Callable[[], Awaitable[object]] | None


async def _ephemeral_state(
    settings: Settings, broker: Broker, stack: contextlib.AsyncExitStack
) -> tuple[TypingIndicators, Presence, RateLimiter, BrokerPing]:
    """Typing, presence and rate limits live where the broker does: in this process, or in
    Redis so that every process behind the load balancer sees the same."""
    if urlsplit(settings.broker_url).scheme == "memory":
        return MemoryTypingIndicators(), MemoryPresence(), MemoryRateLimiter(), None
    from redis.asyncio import Redis

    from realtime.backends.redis import RedisBroker

    # create_broker made it from the same URL; typing clears ride on its publishing connection.
    assert isinstance(broker, RedisBroker)

    # No socket timeout: each typing/presence call bounds itself, and redis-py's socket timeout
    # can swallow a task's cancellation on Python 3.11 (see realtime.backends.redis).
    client = Redis.from_url(settings.broker_url, socket_timeout=None)
    stack.push_async_callback(client.aclose)
    return (
        RedisTypingIndicators(client, broker),
        RedisPresence(client),
        RedisRateLimiter(client),
        client.ping,
    )


def create_app(settings: Settings, shutdown: ShutdownState | None = None) -> Starlette:
    """The app; ``shutdown`` is the flag the server sets on SIGTERM (server.shutdown)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = metered(create_store(settings.database_url))
        broker = create_broker(settings.broker_url)
        hub = Hub(broker)
        await store.open()
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(metrics.process_exited)
            stack.push_async_callback(store.close)
            await hub.start()
            stack.push_async_callback(hub.close)
            typing, presence, limiter, broker_ping = await _ephemeral_state(settings, broker, stack)
            app.state.readiness = Readiness(
                store, settings.data_dir, broker_ping, shutdown or ShutdownState()
            )
            push = await stack.enter_async_context(push_notifications(settings, store, presence))
            # Kept for tests, which wait for the background pushes with push.idle().
            app.state.push = push
            feed = EventFeed(hub, store, [push.committed] if push else [])
            sealer = Sealer(settings.encryption_keys)
            channels = Channels(store, sealer)
            assistants = Assistants(store, sealer)
            completions = ChatCompletions(timeout_s=settings.assistant_timeout_s)
            stack.push_async_callback(completions.aclose)
            await stack.enter_async_context(outbound_worker(settings, store, feed, channels))
            webhooks = Webhooks(store, sealer)
            await stack.enter_async_context(webhook_worker(settings, store, webhooks))
            images = ImageStore(settings.data_dir / "uploads", max_bytes=settings.max_image_bytes)
            stack.callback(images.close)
            if settings.outbound_worker:
                # The background fetches of inbound MMS pictures run beside the outbound
                # worker, under the same switch (LIVEOP_OUTBOUND_WORKER).
                media = MediaWorker(store, feed, channels, images, public_url=settings.public_url)
                media.start()
                stack.push_async_callback(media.stop)
            translator = create_translator(settings.translate_url, settings.translate_api_key)
            if translator is not None:
                stack.push_async_callback(translator.aclose)
            engine = ConversationEngine(
                store,
                typing,
                feed,
                presence,
                max_message_chars=settings.max_message_chars,
                translator=translator,
            )
            availability = Availability(presence, feed, store, engine.assign_waiting)
            refresher = asyncio.create_task(availability.refresh_connected())
            stack.callback(refresher.cancel)
            files = FileStore(settings.data_dir / "uploads", max_bytes=MAX_ATTACHMENT_BYTES)
            email = EmailIngest(store, engine, settings.max_message_chars, images, files)
            if settings.imap_sources:
                imap = ImapSources(store, channels, email, poll_s=settings.imap_poll_s)
                imap.start()
                stack.push_async_callback(imap.stop)
            app.state.services = Services(
                settings=settings,
                store=store,
                engine=engine,
                email=email,
                directory=Directory(store, settings.max_message_chars),
                channels=channels,
                webhooks=webhooks,
                contacts=Contacts(store, feed),
                assistants=assistants,
                widgets=Widgets(store, engine, assistants, completions),
                auth=Authenticator(store, settings.secret_key, settings.jwt_ttl_s),
                hub=hub,
                feed=feed,
                availability=availability,
                inbox=Inbox(store),
                images=images,
                files=files,
                limiter=limiter if settings.rate_limits else Unlimited(),
                streams=Holders(stream.MAX_STREAMS_PER_OPERATOR),
            )
            # Last: what startup built is frozen with the first settle.
            gc_policy = GcPolicy()
            gc_policy.start()
            stack.callback(gc_policy.stop)
            yield

    return Starlette(
        # Starlette tries routes in order: the busiest (chat-window polls, App Commands)
        # go first. "/{account_id}/liveoperator/..." cannot shadow the fixed paths below.
        routes=[
            *chat_window.routes(chat_window.load_template()),
            *commands.routes,
            *visitor_ws.routes,
            *stream.routes,
            *operator_panel.routes,
            *contacts.routes,
            *tenant_ws.routes,
            *auth.routes,
            *admin.routes,
            *people.routes,
            *reports.routes,
            *webhooks_twilio.routes,
            *operator_api.routes,
            *widgets.routes,
            *webhooks_email.routes,
            *uploads.routes(),
            *inbox_app.routes(),
            Route("/healthz", healthz, methods=["GET"]),
            *operations.routes,
            chat_window.asset_mount(),
        ],
        middleware=[
            Middleware(Telemetry, access_log=settings.access_log and settings.log_format == JSON),
            Middleware(CredentialsStayOutOfURLs, allowed={stream.ROUTE: {"token"}}),
            Middleware(
                BodyLimit,
                max_bytes=settings.max_body_bytes,
                exempt={uploads.UPLOAD_PATH},
                exempt_prefixes=(webhooks_email.PREFIX,),
            ),
            Middleware(InFlightLimit, exempt={stream.ROUTE}),
        ],
        exception_handlers={
            LiveOpError: on_liveop_error,
            HTTPException: on_http_error,
            Exception: on_crash,
        },
        lifespan=lifespan,
    )
