"""Webhooks service: Meta's verification handshake and signed event ingestion."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from starlette.routing import Route

from services.webhooks import metrics
from services.webhooks.batcher import EnqueueBatcher
from services.webhooks.ingest import DELIVERY_OPERATION, URL, DeliveryEndpoint, router
from shared.app import State, create_app
from shared.app_config import InstagramApp
from shared.logging import get_logger
from shared.settings import Settings, get_settings

log = get_logger("webhooks")
MIN_REFRESH_SECONDS = 0.2


@dataclass(frozen=True)
class WebhookConfig:
    """What the request path needs, held in memory."""

    secrets: tuple[str, ...]
    verify_token: str
    max_body_bytes: int


def webhook_config(app: InstagramApp, settings: Settings) -> WebhookConfig:
    secrets = (app.app_secret, settings.META_APP_SECRET.get_secret_value())
    return WebhookConfig(
        secrets=tuple(s for s in secrets if s),
        verify_token=app.verify_token,
        max_body_bytes=settings.WEBHOOK_MAX_BODY_BYTES,
    )


def _from_environment(settings: Settings) -> InstagramApp:
    return InstagramApp(
        app_id=settings.INSTAGRAM_APP_ID,
        app_secret=settings.INSTAGRAM_APP_SECRET.get_secret_value(),
        verify_token=settings.INSTAGRAM_VERIFY_TOKEN.get_secret_value(),
        api_version=settings.INSTAGRAM_API_VERSION,
        human_agent_enabled=settings.ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT,
    )


@asynccontextmanager
async def lifespan(app: FastAPI, state: State) -> AsyncIterator[dict[str, Any]]:
    """Keep the app secret and verify token in memory, re-read from the database in the background."""
    settings = state["settings"]

    async def refresh() -> None:
        app.state.webhook_config = webhook_config(await state["app_config"].refresh(), settings)

    try:
        await refresh()
    except Exception as error:  # the database is down: start with the environment's values
        log.warning("app config unavailable, using the environment", error=str(error))
        app.state.webhook_config = webhook_config(_from_environment(settings), settings)

    async def keep_fresh() -> None:
        while True:
            await asyncio.sleep(max(settings.APP_CONFIG_CACHE_SECONDS, MIN_REFRESH_SECONDS))
            try:
                await refresh()
            except Exception as error:  # keep the last good values
                log.warning("app config refresh failed", error=str(error))

    task = asyncio.create_task(keep_fresh())
    batcher = EnqueueBatcher(state["redis"])
    try:
        yield {"batcher": batcher}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await batcher.aclose()


def create_webhooks_app(settings: Settings | None = None) -> FastAPI:
    app = create_app(
        "Instagram Inbox — webhooks",
        routers=[router],
        settings=settings,
        lifespan=lifespan,
        routes=[Route(URL, DeliveryEndpoint(), methods=["POST"])],  # first: the hot path matches first
    )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    document = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI documents its own routes only: add the delivery endpoint's operation."""
        schema = document()
        schema["paths"].setdefault(URL, {})["post"] = DELIVERY_OPERATION
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_webhooks_app(get_settings())
