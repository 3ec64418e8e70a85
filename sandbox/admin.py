"""The sandbox's own API under `/_sandbox/`: shape the world, inject faults, read logs, send webhooks."""

import random
import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from sandbox import events
from sandbox.config import SandboxConfig
from sandbox.oauth import issue_code
from sandbox.world import DAY, SCOPES, Business, Customer, Fault, World

router = APIRouter(prefix="/_sandbox", tags=["sandbox admin"])


def _world(request: Request) -> World:
    return request.app.state.world  # type: ignore[no-any-return]


def _config(request: Request) -> SandboxConfig:
    return request.app.state.config  # type: ignore[no-any-return]


@router.post("/reset")
async def reset(request: Request) -> dict[str, bool]:
    request.app.state.cancel_background()  # no webhook of the old world arrives after the reset
    _world(request).reset()
    request.app.state.config.update(asdict(request.app.state.initial_config))
    return {"success": True}


@router.get("/world")
async def world(request: Request) -> dict[str, Any]:
    w = _world(request)
    return {
        "businesses": [asdict(b) for b in w.businesses.values()],
        "customers": [asdict(c) for c in w.customers.values()],
    }


@router.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    return asdict(_config(request))


@router.patch("/config")
async def patch_config(request: Request, changes: dict[str, Any]) -> dict[str, Any]:
    try:
        _config(request).update(changes)
    except ValueError as error:
        raise HTTPException(422, str(error)) from error
    return asdict(_config(request))


class BusinessIn(BaseModel):
    ig_id: str
    asid: int
    username: str
    name: str = ""
    profile_picture_url: str = "https://scontent.cdninstagram.example/business.jpg"


@router.post("/businesses")
async def add_business(request: Request, body: BusinessIn) -> dict[str, Any]:
    business = Business(**body.model_dump())
    _world(request).businesses[business.ig_id] = business
    return asdict(business)


class CustomerIn(BaseModel):
    igsid: str
    username: str
    name: str | None = None
    profile_pic: str | None = None
    follower_count: int = 0
    is_verified_user: bool = False
    is_user_follow_business: bool = True
    is_business_follow_user: bool = False


@router.post("/customers")
async def add_customer(request: Request, body: CustomerIn) -> dict[str, Any]:
    customer = Customer(**body.model_dump())
    _world(request).customers[customer.igsid] = customer
    return asdict(customer)


class LastMessage(BaseModel):
    business: str = "17841400000000001"
    seconds_ago: float = 0
    never: bool = False


@router.post("/customers/{igsid}/last_message")
async def set_last_message(request: Request, igsid: str, body: LastMessage) -> dict[str, bool]:
    """Open (or age) the messaging window and profile consent as if the customer wrote `seconds_ago`."""
    w = _world(request)
    if body.never:
        w.last_inbound.pop((body.business, igsid), None)
    else:
        w.record_inbound(body.business, igsid, time.time() - body.seconds_ago)
    return {"success": True}


class TokenIn(BaseModel):
    business: str = "17841400000000001"
    long_lived: bool = True
    age_seconds: float = 0
    expires_in: float | None = None
    scopes: list[str] = Field(default_factory=lambda: list(SCOPES[:2]))


@router.post("/tokens")
async def mint_token(request: Request, body: TokenIn) -> dict[str, Any]:
    """A token as Business Login would have left it, issued `age_seconds` ago."""
    config, w = _config(request), _world(request)
    w.business(body.business)
    lifetime: float = config.long_lived_seconds if body.long_lived else config.short_lived_seconds
    if body.expires_in is not None:
        lifetime = body.age_seconds + body.expires_in
    token = w.mint_token(
        body.business,
        long_lived=body.long_lived,
        scopes=tuple(body.scopes),
        lifetime=lifetime,
        age=body.age_seconds,
    )
    return {"access_token": token.value, "expires_at": token.expires_at, "issued_at": token.issued_at}


class Age(BaseModel):
    seconds: float = DAY


@router.post("/tokens/{token}/age")
async def age_token(request: Request, token: str, body: Age) -> dict[str, bool]:
    found = _world(request).tokens.get(token)
    if found is None:
        raise HTTPException(404, "unknown token")
    found.issued_at -= body.seconds
    found.expires_at -= body.seconds
    return {"success": True}


@router.post("/tokens/{token}/{action}")
async def revoke_or_expire(request: Request, token: str, action: str) -> dict[str, bool]:
    found = _world(request).tokens.get(token)
    if found is None or action not in ("revoke", "expire"):
        raise HTTPException(404, "unknown token or action (revoke, expire)")
    if action == "revoke":
        found.revoked = True
    else:
        found.expires_at = time.time() - 1
    return {"success": True}


class CodeIn(BaseModel):
    redirect_uri: str
    business: str = "17841400000000001"
    scopes: list[str] = Field(default_factory=lambda: list(SCOPES[:2]))


@router.post("/oauth/codes")
async def mint_code(request: Request, body: CodeIn) -> dict[str, str]:
    """An authorization code, as if the person had pressed Allow on the consent page."""
    w = _world(request)
    w.business(body.business)
    code = issue_code(w, redirect_uri=body.redirect_uri, business=body.business, scopes=tuple(body.scopes))
    return {"code": code.value}


class FaultIn(BaseModel):
    path_regex: str
    times: int = 1
    method: str | None = None
    status: int | None = None
    body: Any = None
    error: dict[str, Any] | None = Field(
        default=None, description="Graph error: code, subcode, message, type"
    )
    hang_seconds: float = 0.0


@router.post("/faults")
async def add_fault(request: Request, body: FaultIn) -> dict[str, bool]:
    """The next `times` requests matching the path fail as described (or hang first)."""
    _world(request).faults.append(Fault(**body.model_dump()))
    return {"success": True}


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, bool]:
    _world(request).faults.clear()
    return {"success": True}


@router.get("/requests")
async def requests_log(request: Request, path_contains: str = "") -> list[dict[str, Any]]:
    return [r for r in _world(request).requests if path_contains in r["path"]]


@router.delete("/requests")
async def clear_requests(request: Request) -> dict[str, bool]:
    _world(request).requests.clear()
    return {"success": True}


@router.get("/sent")
async def sent(request: Request, business: str | None = None) -> list[dict[str, Any]]:
    """Every message a business sent through the Send API, in order: proof a reply went out once."""
    return [asdict(s) for s in _world(request).sent if business in (None, s.business)]


@router.delete("/sent")
async def clear_sent(request: Request) -> dict[str, bool]:
    _world(request).sent.clear()
    return {"success": True}


class WebhookEvent(BaseModel):
    kind: str = "text"
    customer: str = "1190000000000001"
    business: str = "17841400000000001"
    fields: dict[str, Any] = Field(
        default_factory=dict, description="kind-specific: text, mid, type, url, ..."
    )


class WebhookRequest(WebhookEvent):
    events: list[WebhookEvent] = Field(
        default_factory=list, description="a batch; the top-level event if empty"
    )
    separate_entries: bool = False
    shuffle: bool = False
    redeliver: int = Field(0, description="send the same body this many more times")


@router.post("/webhooks")
async def send_webhook(request: Request, body: WebhookRequest) -> dict[str, Any]:
    """Build a delivery like Meta, sign it with the app secret, and POST it to the webhook URL."""
    config, w = _config(request), _world(request)
    batch = body.events or [body]
    items: list[tuple[str, dict[str, Any]]] = []
    for event in batch:
        build = events.KINDS.get(event.kind)
        if build is None:
            raise HTTPException(422, f"unknown kind {event.kind!r}; known: {', '.join(events.KINDS)}")
        if event.customer not in w.customers:
            raise HTTPException(422, f"unknown customer {event.customer}")
        try:
            items.append((event.business, build(event.customer, event.business, **event.fields)))
        except TypeError as error:
            raise HTTPException(422, f"{event.kind}: {error}") from error
        if event.kind in events.CUSTOMER_MESSAGES:
            w.record_inbound(event.business, event.customer)
    if body.shuffle:
        random.shuffle(items)
    if body.separate_entries:
        entries = [events.entry(business, item) for business, item in items]
    else:
        by_business: dict[str, list[dict[str, Any]]] = {}
        for business, item in items:
            by_business.setdefault(business, []).append(item)
        entries = [events.entry(business, *grouped) for business, grouped in by_business.items()]
    payload = events.envelope(*entries)
    if not config.webhook_url:
        raise HTTPException(409, "no webhook_url configured (PATCH /_sandbox/config)")
    raw = events.encode(payload)
    retries, timeout = config.webhook_retries, config.webhook_timeout_seconds
    statuses = [
        await events.deliver(config.webhook_url, raw, config.signing_secret, retries=retries, timeout=timeout)
        for _ in range(body.redeliver + 1)
    ]
    mids = [item.get("message", {}).get("mid") for _, item in items]
    return {"payload": payload, "statuses": statuses, "mids": mids}
