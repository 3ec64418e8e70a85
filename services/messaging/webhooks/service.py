"""Account webhooks: who wants which events, where. Delivery lives in `delivery.py`."""

import asyncio
import ipaddress
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.webhooks.schemas import WebhookCreate, WebhookUpdate
from shared.errors import NotFound, Unprocessable
from shared.models import Inbox, Webhook, WebhookDelivery, WebhookEvent

DELIVERY_LOG_SIZE = 50


class DestinationRefused(Exception):
    """The URL points where we must not send requests (server-side request forgery guard)."""


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unprocessable("url must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None:
        raise Unprocessable("url must not contain credentials")
    return url


async def check_destination(url: str, *, allow_private: bool) -> None:
    """Refuse loopback, link-local and private destinations unless the operator allows them."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise DestinationRefused(f"cannot resolve {host}") from error
    private = sorted({str(info[4][0]) for info in infos if _is_private(str(info[4][0]))})
    if private:
        raise DestinationRefused(
            f"{host} resolves to a private, loopback or link-local address ({', '.join(private)}); "
            "set WEBHOOK_ALLOW_PRIVATE_ADDRESSES=true to allow it"
        )


async def _check_inbox(session: AsyncSession, *, account_id: int, inbox_id: int | None) -> None:
    if inbox_id is not None:
        found = await session.scalar(
            select(Inbox.id).where(Inbox.id == inbox_id, Inbox.account_id == account_id)
        )
        if found is None:
            raise Unprocessable(f"inbox {inbox_id} does not exist in this account")


async def create_webhook(
    session: AsyncSession, *, account_id: int, body: WebhookCreate, allow_private: bool
) -> tuple[Webhook, str]:
    """The new webhook and its signing secret (shown once)."""
    url = validate_url(body.url)
    await _check_new_destination(url, allow_private=allow_private)
    await _check_inbox(session, account_id=account_id, inbox_id=body.inbox_id)
    secret = secrets.token_hex(32)
    webhook = Webhook(
        account_id=account_id,
        url=url,
        subscriptions=sorted({event.value for event in body.subscriptions}),
        inbox_id=body.inbox_id,
        secret=secret,
    )
    session.add(webhook)
    await session.flush()
    await session.refresh(webhook)
    return webhook, secret


async def _check_new_destination(url: str, *, allow_private: bool) -> None:
    try:
        await check_destination(url, allow_private=allow_private)
    except DestinationRefused as error:
        raise Unprocessable(str(error)) from error


async def list_webhooks(session: AsyncSession, *, account_id: int) -> list[Webhook]:
    return list(
        await session.scalars(select(Webhook).where(Webhook.account_id == account_id).order_by(Webhook.id))
    )


async def get_webhook(session: AsyncSession, *, account_id: int, webhook_id: int) -> Webhook:
    webhook = await session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.account_id == account_id)
    )
    if webhook is None:
        raise NotFound("webhook not found")
    return webhook


async def update_webhook(
    session: AsyncSession, *, webhook: Webhook, body: WebhookUpdate, allow_private: bool
) -> None:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if "url" in changes and changes["url"] is not None:
        webhook.url = validate_url(changes["url"])
        await _check_new_destination(webhook.url, allow_private=allow_private)
    if changes.get("subscriptions") is not None:
        webhook.subscriptions = sorted({event.value for event in body.subscriptions or []})
    if "inbox_id" in changes:
        await _check_inbox(session, account_id=webhook.account_id, inbox_id=body.inbox_id)
        webhook.inbox_id = body.inbox_id
    if body.enabled is not None:
        webhook.enabled = body.enabled
        if body.enabled:
            webhook.failing_since = None
            webhook.disabled_reason = None
    await session.flush()
    await session.refresh(webhook)


async def recent_deliveries(
    session: AsyncSession, *, webhook_id: int, limit: int = DELIVERY_LOG_SIZE
) -> list[tuple[WebhookDelivery, str]]:
    rows = await session.execute(
        select(WebhookDelivery, WebhookEvent.event)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [(delivery, event) for delivery, event in rows]
