"""Meta's webhook endpoint: verify, authenticate, split, enqueue, answer.

The request path does no database work and no Graph call: the app secret and verify token come
from memory (refreshed in the background), and every event goes to the inbound queue with a
deterministic job id, so a redelivery enqueues nothing new. 200 means every event is queued.
"""

import hashlib
import hmac
import json
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from redis.exceptions import RedisError

from services.webhooks import metrics
from shared.app import QueueDep
from shared.logging import get_logger
from shared.queue import PROCESS_EVENT, enqueue_many
from shared.schemas.events import InvalidPayload, split_delivery

router = APIRouter(tags=["webhooks"])
log = get_logger("webhooks")


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


def _reject(status: int, reason: str, message: str) -> Response:
    metrics.REJECTED.labels(reason=reason).inc()
    return Response(json.dumps({"error": message}), status_code=status, media_type="application/json")


@router.get("/webhooks/instagram", response_class=PlainTextResponse)
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


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/instagram", responses={401: {}, 400: {}, 413: {}, 503: {}})
async def receive(request: Request, queue: QueueDep) -> Response:
    started = time.perf_counter()
    metrics.RECEIVED.inc()
    config = request.app.state.webhook_config
    body = await _read_body(request, config.max_body_bytes)
    if body is None:
        return _reject(413, "too_large", f"body larger than {config.max_body_bytes} bytes")
    if not signature_matches(body, request.headers.get("x-hub-signature-256"), config.secrets):
        reason = "missing_signature" if "x-hub-signature-256" not in request.headers else "bad_signature"
        return _reject(401, reason, "missing or invalid X-Hub-Signature-256")
    try:
        events = split_delivery(json.loads(body))
    except (ValueError, InvalidPayload) as error:
        return _reject(
            400, "invalid_payload", str(error) if isinstance(error, InvalidPayload) else "body is not JSON"
        )
    try:
        created = await enqueue_many(
            queue, [(PROCESS_EVENT, e.key, {"event": e.model_dump(mode="json")}) for e in events]
        )
    except (RedisError, OSError) as error:
        log.warning("queue unavailable; Meta will redeliver", error=f"{type(error).__name__}: {error}")
        return _reject(503, "queue_unavailable", "queue unavailable, retry later")
    fresh = sum(created)
    metrics.ENQUEUED.inc(fresh)
    metrics.DUPLICATES.inc(len(events) - fresh)
    metrics.ACK_SECONDS.observe(time.perf_counter() - started)
    return PlainTextResponse("EVENT_RECEIVED")
