"""Delivering account webhook events: dispatch the outbox, then POST each event to each webhook.

Dispatch renders an event's body once (the API objects as they are when it is dispatched) and
enqueues one `deliver_event` job per matching webhook, keyed by (event, webhook), in the same
transaction that marks the outbox row dispatched; SKIP LOCKED lets several workers dispatch.

A delivery is signed: `X-Inbox-Signature: sha256=HMAC_SHA256(secret, f"{timestamp}.{body}")`
with the timestamp in `X-Inbox-Timestamp`, so receivers can reject replays; `X-Inbox-Delivery`
stays the same across retries of one (event, webhook) pair, so receivers can deduplicate.
"""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from arq.connections import ArqRedis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.webhooks import rendering
from services.messaging.webhooks.service import DELIVERY_LOG_SIZE, DestinationRefused, check_destination
from shared.logging import get_logger
from shared.models import Webhook, WebhookDelivery, WebhookEvent
from shared.queue import DELIVER_EVENT, enqueue
from shared.settings import Settings

log = get_logger("webhooks.delivery")
DISPATCH_BATCH = 500


def _matches(webhook: Webhook, event: WebhookEvent) -> bool:
    return event.event in webhook.subscriptions and webhook.inbox_id in (None, event.inbox_id)


async def dispatch_pending(session: AsyncSession, redis: ArqRedis, settings: Settings) -> int:
    """Hand undispatched events to delivery jobs. Returns how many events were dispatched."""
    events = list(
        await session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.dispatched_at.is_(None))
            .order_by(WebhookEvent.id)
            .limit(DISPATCH_BATCH)
            .with_for_update(skip_locked=True)
        )
    )
    if not events:
        return 0
    account_ids = {event.account_id for event in events}
    hooks = list(
        await session.scalars(
            select(Webhook).where(Webhook.account_id.in_(account_ids), Webhook.enabled.is_(True))
        )
    )
    now = datetime.now(UTC)
    for event in events:
        targets = [hook for hook in hooks if hook.account_id == event.account_id and _matches(hook, event)]
        if targets:
            event.payload = {**event.payload, "body": await rendering.render(session, settings, event)}
        for hook in targets:
            await enqueue(
                redis, DELIVER_EVENT, key=f"{event.id}:{hook.id}", event_id=event.id, webhook_id=hook.id
            )
        event.dispatched_at = now
    return len(events)


@dataclass(frozen=True)
class Outcome:
    retry: bool = False


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


async def deliver(
    session: AsyncSession,
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    event_id: int,
    webhook_id: int,
    attempt: int,
) -> Outcome:
    """POST one event to one webhook and log the attempt. `retry` asks the job to try again later."""
    webhook = await session.get(Webhook, webhook_id)
    event = await session.get(WebhookEvent, event_id)
    if webhook is None or event is None or not webhook.enabled:
        return Outcome()
    body = json.dumps(event.payload.get("body", {}), separators=(",", ":"), default=str).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "instagram-inbox-webhooks",
        "X-Inbox-Event": event.event,
        "X-Inbox-Delivery": f"{event.id}-{webhook.id}",
        "X-Inbox-Timestamp": str(timestamp),
        "X-Inbox-Signature": signature(webhook.secret, timestamp, body),
    }
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    refused = False
    try:
        await check_destination(webhook.url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES)
        response = await http.post(
            webhook.url, content=body, headers=headers, timeout=settings.EVENT_DELIVERY_TIMEOUT_SECONDS
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except DestinationRefused as reason:
        error, refused = str(reason), True
    except httpx.TimeoutException:
        error = f"timed out after {settings.EVENT_DELIVERY_TIMEOUT_SECONDS:g} s"
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
    delivered = error is None
    session.add(
        WebhookDelivery(
            webhook_id=webhook.id,
            event_id=event.id,
            attempt=attempt,
            status_code=status_code,
            latency_ms=round((time.perf_counter() - started) * 1000),
            error=error,
            delivered=delivered,
        )
    )
    await _trim_log(session, webhook_id=webhook.id)
    if delivered:
        webhook.failing_since = None
        return Outcome()
    now = datetime.now(UTC)
    webhook.failing_since = webhook.failing_since or now
    if now - webhook.failing_since >= timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_SECONDS):
        webhook.enabled = False
        webhook.disabled_reason = f"disabled after failing since {webhook.failing_since.isoformat()}: {error}"
        log.error(
            "account webhook disabled", webhook_id=webhook.id, account_id=webhook.account_id, error=error
        )
        return Outcome()
    return Outcome(retry=not refused and attempt < settings.EVENT_DELIVERY_MAX_TRIES)


async def _trim_log(session: AsyncSession, *, webhook_id: int) -> None:
    keep = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(DELIVERY_LOG_SIZE * 2)
    )
    await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.id.not_in(keep)
        )
    )
