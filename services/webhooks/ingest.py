"""Meta's webhook endpoint: verify, authenticate, split, enqueue, answer.

The request path does no database work and no Graph call: the app secret and verify token come
from memory (refreshed in the background), and every event goes to the inbound queue with a
deterministic job id, so a redelivery enqueues nothing new. 200 means every event is queued.

Deliveries are the service's one hot path, so `receive` is a plain ASGI endpoint (no dependency
injection, Request or Response objects), its events are plain dicts (`delivery_events`), and
concurrent deliveries share their Redis round trip (`EnqueueBatcher`).
"""

import hashlib
import hmac
import json
import time
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from redis.exceptions import RedisError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from services.webhooks import metrics
from services.webhooks.batcher import EnqueueBatcher
from shared.logging import get_logger
from shared.queue import PROCESS_EVENT
from shared.schemas.events import InvalidPayload, delivery_events

URL = "/webhooks/instagram"
router = APIRouter(tags=["webhooks"])
log = get_logger("webhooks")
RECEIVED_HEADERS = [(b"content-length", b"14"), (b"content-type", b"text/plain; charset=utf-8")]
JSON_HEADERS = (b"content-type", b"application/json")


def signature_matches(body: bytes, header: str | None, secrets: tuple[str, ...]) -> bool:
    """`X-Hub-Signature-256: sha256=<hex>` against each accepted secret, in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    given = header[len("sha256=") :].strip().lower()
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, given)
    return matched


@router.get(URL, response_class=PlainTextResponse)
async def verify(
    request: Request,
    mode: str = Query("", alias="hub.mode"),
    verify_token: str = Query("", alias="hub.verify_token"),
    challenge: str = Query("", alias="hub.challenge"),
) -> Response:
    """Meta's handshake: echo the challenge when the verify token matches."""
    expected = request.app.state.webhook_config.verify_token
    if mode == "subscribe" and expected and hmac.compare_digest(verify_token.encode(), expected.encode()):
        return PlainTextResponse(challenge)
    return PlainTextResponse("verification failed", status_code=403)


async def _read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than `limit` bytes."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reject(send: Send, status: int, reason: str, message: str) -> None:
    metrics.REJECTED.labels(reason=reason).inc()
    body = json.dumps({"error": message}).encode()
    await _answer(send, status, [(b"content-length", str(len(body)).encode()), JSON_HEADERS], body)


# The endpoint's OpenAPI operation (FastAPI documents only its own routes).
DELIVERY_OPERATION: dict[str, Any] = {
    "tags": ["webhooks"],
    "summary": "Receive",
    "operationId": "receive_webhooks_instagram_post",
    "responses": {
        "200": {"description": "Successful Response", "content": {"application/json": {"schema": {}}}},
        "401": {"description": "Unauthorized"},
        "400": {"description": "Bad Request"},
        "413": {"description": "Request Entity Too Large"},
        "503": {"description": "Service Unavailable"},
    },
}


class DeliveryEndpoint:
    """`POST /webhooks/instagram` as an ASGI app (a class, so Starlette's Route calls it as one)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        metrics.RECEIVED.inc()
        config = scope["app"].state.webhook_config
        signature = declared = None
        for name, value in scope["headers"]:
            if name == b"x-hub-signature-256" and signature is None:
                signature = value.decode("latin-1")
            elif name == b"content-length" and declared is None:
                declared = value
        body = await _read_body(receive, declared, config.max_body_bytes)
        if body is None:
            return await _reject(send, 413, "too_large", f"body larger than {config.max_body_bytes} bytes")
        if not signature_matches(body, signature, config.secrets):
            reason = "missing_signature" if signature is None else "bad_signature"
            return await _reject(send, 401, reason, "missing or invalid X-Hub-Signature-256")
        try:
            events = delivery_events(orjson.loads(body))
        except InvalidPayload as error:
            return await _reject(send, 400, "invalid_payload", str(error))
        except orjson.JSONDecodeError:
            return await _reject(send, 400, "invalid_payload", "body is not JSON")
        batcher: EnqueueBatcher = scope["state"]["batcher"]
        try:
            created = await batcher.enqueue_many([(PROCESS_EVENT, e["key"], {"event": e}) for e in events])
        except (RedisError, OSError) as error:
            log.warning("queue unavailable; Meta will redeliver", error=f"{type(error).__name__}: {error}")
            return await _reject(send, 503, "queue_unavailable", "queue unavailable, retry later")
        fresh = sum(created)
        if fresh:
            metrics.ENQUEUED.inc(fresh)
        if fresh < len(events):
            metrics.DUPLICATES.inc(len(events) - fresh)
        metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        await _answer(send, 200, RECEIVED_HEADERS, b"EVENT_RECEIVED")
