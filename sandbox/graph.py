"""Graph endpoints under `/{version}/`: the account, customer profiles, webhook subscriptions, Send API."""

import asyncio
import hashlib
import re
import time
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response

from sandbox import events
from sandbox.config import SandboxConfig
from sandbox.world import DAY, HOUR, WEBHOOK_FIELDS, Business, GraphFault, Sent, World

router = APIRouter()
VERSION = re.compile(r"^v\d+\.\d+$")
TEXT_LIMIT_BYTES = 1000
ATTACHMENT_TYPES = {"image", "video", "audio", "file", "like_heart", "MEDIA_SHARE", "template"}
SENDER_ACTIONS = {"react", "unreact", "typing_on", "typing_off", "mark_seen"}
FETCH_TIMEOUT_SECONDS = 5.0


def _context(request: Request, version: str) -> tuple[World, SandboxConfig, str]:
    if not VERSION.match(version):
        raise GraphFault(2500, f"Unknown path components: /{version}", kind="IGApiException")
    world: World = request.app.state.world
    token = world.token(request.app.state.bearer(request) or request.query_params.get("access_token"))
    return world, request.app.state.config, token.business


def _owner(world: World, business: str, owner: str) -> Business:
    """`me` or the account's own ig id; another account's id is refused like Meta does."""
    if owner not in ("me", business):
        raise GraphFault(100, f"Unsupported request: object with ID '{owner}' cannot be accessed", subcode=33)
    return world.business(business)


@router.get("/{version}/me")
async def me(request: Request, version: str, fields: str = "") -> dict[str, Any]:
    world, _, business = _context(request, version)
    account = world.business(business).me()
    wanted = [f for f in fields.split(",") if f] or ["id", "username"]
    unknown = [f for f in wanted if f not in account]
    if unknown:
        raise GraphFault(100, f"Tried accessing nonexisting field ({unknown[0]}) on node type (User)")
    return {"id": account["id"], **{f: account[f] for f in wanted}}


@router.api_route("/{version}/{owner}/subscribed_apps", methods=["GET", "POST", "DELETE"])
async def subscribed_apps(request: Request, version: str, owner: str) -> dict[str, Any]:
    world, config, business = _context(request, version)
    account = _owner(world, business, owner)
    if request.method == "GET":
        return {"data": [{"id": config.app_id, "subscribed_fields": account.subscribed_fields}]}
    if request.method == "DELETE":
        account.subscribed_fields = []
        return {"success": True}
    raw = (
        request.query_params.get("subscribed_fields") or (await request.form()).get("subscribed_fields") or ""
    )
    wanted = [f.strip() for f in str(raw).split(",") if f.strip()]
    unknown = [f for f in wanted if f not in WEBHOOK_FIELDS]
    if not wanted or unknown:
        raise GraphFault(
            100, f"(#100) Param subscribed_fields must be one of {sorted(WEBHOOK_FIELDS)} - got {unknown}"
        )
    account.subscribed_fields = wanted
    return {"success": True}


@router.post("/{version}/{owner}/messages")
async def send(request: Request, version: str, owner: str) -> dict[str, Any]:
    world, config, business = _context(request, version)
    _owner(world, business, owner)
    try:
        body = await request.json()
    except ValueError as error:
        raise GraphFault(100, "(#100) The request body is not valid JSON") from error
    if not isinstance(body, dict):
        raise GraphFault(100, "(#100) The request body must be a JSON object")
    recipient = str((body.get("recipient") or {}).get("id", ""))
    if recipient not in world.customers:
        raise GraphFault(100, "No matching user found", subcode=2534014)
    kind = _validate(body)
    limit = config.media_send_rate_limit_per_second if kind == "media" else config.send_rate_limit_per_second
    if not world.take_rate_slot(business, kind, limit):
        raise GraphFault(613, "Calls to this api have exceeded the rate limit.", subcode=2534040)
    _check_window(world, config, business, recipient, body)
    if "sender_action" in body:
        return {"recipient_id": recipient}
    mid = world.new_mid()
    fetched = await _fetch_attachments(body)
    world.sent.append(
        Sent(mid=mid, business=business, recipient=recipient, body=body, at=time.time(), fetched=fetched)
    )
    _send_echo(request, config, business, recipient, body, mid)
    return {"recipient_id": recipient, "message_id": mid}


def _validate(body: dict[str, Any]) -> str:
    """Meta's payload checks; returns the rate-limit class ("text" or "media")."""
    action = body.get("sender_action")
    if action is not None:
        if action not in SENDER_ACTIONS:
            raise GraphFault(100, f"(#100) Param sender_action must be one of {sorted(SENDER_ACTIONS)}")
        return "text"
    message = body.get("message")
    if not isinstance(message, dict) or not message:
        raise GraphFault(100, "(#100) Param message must be a non-empty object")
    text = message.get("text")
    if text is not None and len(str(text).encode()) > TEXT_LIMIT_BYTES:
        raise GraphFault(
            100, "(#100) Length of param message[text] must be less than or equal to 1000", subcode=2534015
        )
    attachments = _attachments(message)
    if text is None and not attachments:
        raise GraphFault(100, "(#100) Message must have text or an attachment", subcode=2534015)
    if len(attachments) > 10:
        raise GraphFault(100, "(#100) At most 10 attachments per message", subcode=2534015)
    for attachment in attachments:
        kind = attachment.get("type") if isinstance(attachment, dict) else None
        payload = attachment.get("payload") or {} if isinstance(attachment, dict) else {}
        if kind not in ATTACHMENT_TYPES:
            raise GraphFault(100, f"(#100) Unsupported attachment type {kind!r}", subcode=2534015)
        if kind in ("image", "video", "audio", "file") and not (
            payload.get("url") or payload.get("attachment_id")
        ):
            raise GraphFault(
                100, "(#100) Attachment payload needs a url or an attachment_id", subcode=2534015
            )
    media = any(isinstance(a, dict) and a.get("type") in ("audio", "video") for a in attachments)
    return "media" if media else "text"


def _attachments(message: dict[str, Any]) -> list[Any]:
    """A message's attachments: one under `attachment`, or several under `attachments`."""
    return message.get("attachments") or ([message["attachment"]] if "attachment" in message else [])


async def _fetch_attachments(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Download each attachment URL, as Meta does when a message is sent, and say what came back
    (status, content type, size and SHA-256 of the bytes, or the network error). A failed download
    is only recorded: the send still succeeds."""
    message = body.get("message") or {}
    attachments = _attachments(message)
    urls = [str(a["payload"]["url"]) for a in attachments if (a.get("payload") or {}).get("url")]
    if not urls:
        return []
    fetched: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
        for url in urls:
            try:
                response = await client.get(url)
            except httpx.HTTPError as error:
                fetched.append({"url": url, "error": f"{type(error).__name__}: {error}"})
                continue
            fetched.append(
                {
                    "url": url,
                    "status": response.status_code,
                    "content_type": response.headers.get("content-type"),
                    "size": len(response.content),
                    "sha256": hashlib.sha256(response.content).hexdigest(),
                }
            )
    return fetched


def _check_window(
    world: World, config: SandboxConfig, business: str, recipient: str, body: dict[str, Any]
) -> None:
    since = world.window_open_since(business, recipient)
    age = time.time() - since if since is not None else float("inf")
    if age <= 24 * HOUR:
        return
    human_agent = body.get("tag") == "HUMAN_AGENT" and config.human_agent_enabled
    if human_agent and age <= 7 * DAY:
        return
    raise GraphFault(10, "(#10) This message is sent outside of allowed window.", subcode=2534022)


def _send_echo(
    request: Request, config: SandboxConfig, business: str, recipient: str, body: dict[str, Any], mid: str
) -> None:
    """As Meta does: every message the business sends comes back as an `is_echo` webhook."""
    if not config.webhook_url:
        return
    text = (body.get("message") or {}).get("text") or ""
    payload = events.envelope(events.entry(business, events.echo(business, recipient, text=text, mid=mid)))

    async def later() -> None:
        await asyncio.sleep(config.echo_delay_seconds)
        await events.deliver(
            config.webhook_url or "",
            events.encode(payload),
            config.signing_secret,
            retries=config.webhook_retries,
            timeout=config.webhook_timeout_seconds,
        )

    request.app.state.background(later())


MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "mp4": "video/mp4",
    "m4a": "audio/mp4",
    "pdf": "application/pdf",
}


@router.get("/cdn/{name}")
async def cdn(name: str) -> Response:
    """Stand-in for Meta's media CDN (lookaside.fbsbx.com): deterministic bytes per file name."""
    extension = name.rsplit(".", 1)[-1]
    if extension not in MEDIA_TYPES:
        return Response(status_code=404)
    return Response(f"sandbox media {name}\n".encode() * 64, media_type=MEDIA_TYPES[extension])


@router.get("/{version}/{igsid}")
async def profile(request: Request, version: str, igsid: str, fields: str = "") -> dict[str, Any]:
    """User Profile API: works once the customer has messaged the business (instagram-platform.md §8)."""
    world, _, business = _context(request, version)
    customer = world.customers.get(igsid)
    if customer is None:
        raise GraphFault(9010, "No matching Instagram user", kind="IGApiException")
    if world.window_open_since(business, igsid) is None:
        raise GraphFault(230, "User consent is required to access user profile")
    found = customer.profile()
    wanted = [f for f in fields.split(",") if f] or ["name", "username"]
    return {**{f: found.get(f) for f in wanted}, "id": igsid}
