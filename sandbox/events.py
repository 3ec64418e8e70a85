"""Meta's Instagram webhook payloads, built exactly as Meta sends them, signed and delivered.

Pure functions: tests build and sign payloads without a running sandbox. Shapes follow
instagram-platform.md §5–6: ms timestamps, string ids, escaped-unicode compact JSON, and
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`.
"""

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

CDN = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={asset}&signature={signature}"
MEDIA_TYPES = ("image", "video", "audio", "file")
SHARE_TYPES = (
    "share",
    "story_mention",
    "ig_reel",
    "reel",
    "ig_post",
    "ig_story",
    "media",
    "template",
    "fallback",
)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_mid() -> str:
    return f"aWdfZG1f{secrets.token_hex(12)}"


def cdn_url() -> str:
    return CDN.format(asset=secrets.randbelow(10**15), signature=secrets.token_hex(8))


def _item(sender: str, recipient: str, timestamp: int | None, **body: Any) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": timestamp or now_ms(),
        **body,
    }


# -- events from a customer (sender) to a business (recipient) -------------------------------


def text(
    customer: str, business: str, *, text: str, mid: str | None = None, timestamp: int | None = None
) -> dict[str, Any]:
    return _item(customer, business, timestamp, message={"mid": mid or new_mid(), "text": text})


def attachment(
    customer: str,
    business: str,
    *,
    type: str = "image",
    url: str | None = None,
    mid: str | None = None,
    timestamp: int | None = None,
    text: str | None = None,
    **payload: Any,
) -> dict[str, Any]:
    """One attachment of any type Meta sends (media, shares, story mentions, reels, posts...)."""
    if type == "ig_reel" or type == "reel":
        payload = {"title": "reel caption", "reel_video_id": "18070000000000001", **payload}
    elif type == "ig_post":
        payload = {"title": "post caption", "ig_post_media_id": "18000000000000001", **payload}
    elif type in ("ig_story", "story"):
        payload = {"story_media_id": "18050000000000001", "story_media_url": url or cdn_url(), **payload}
    body: dict[str, Any] = {"type": type, "payload": {"url": url or cdn_url(), **payload}}
    if type == "ephemeral":
        body = {"type": type, "payload": {}}
    message: dict[str, Any] = {"mid": mid or new_mid(), "attachments": [body]}
    if text:
        message["text"] = text
    return _item(customer, business, timestamp, message=message)


def story_reply(
    customer: str,
    business: str,
    *,
    text: str,
    story_id: str = "18050000000000001",
    mid: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    reply_to = {"story": {"url": cdn_url(), "id": story_id}}
    return _item(
        customer, business, timestamp, message={"mid": mid or new_mid(), "text": text, "reply_to": reply_to}
    )


def inline_reply(
    customer: str,
    business: str,
    *,
    text: str,
    reply_to_mid: str,
    mid: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    message = {"mid": mid or new_mid(), "text": text, "reply_to": {"mid": reply_to_mid}}
    return _item(customer, business, timestamp, message=message)


def quick_reply(
    customer: str,
    business: str,
    *,
    text: str,
    payload: str,
    mid: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    message = {"mid": mid or new_mid(), "text": text, "quick_reply": {"payload": payload}}
    return _item(customer, business, timestamp, message=message)


def read(customer: str, business: str, *, mid: str, timestamp: int | None = None) -> dict[str, Any]:
    return _item(customer, business, timestamp, read={"mid": mid})


def reaction(
    customer: str,
    business: str,
    *,
    mid: str,
    reaction: str = "love",
    emoji: str = "\u2764\ufe0f",
    timestamp: int | None = None,
) -> dict[str, Any]:
    return _item(
        customer,
        business,
        timestamp,
        reaction={"mid": mid, "action": "react", "reaction": reaction, "emoji": emoji},
    )


def unreaction(customer: str, business: str, *, mid: str, timestamp: int | None = None) -> dict[str, Any]:
    return _item(customer, business, timestamp, reaction={"mid": mid, "action": "unreact"})


def unsend(customer: str, business: str, *, mid: str, timestamp: int | None = None) -> dict[str, Any]:
    return _item(customer, business, timestamp, message={"mid": mid, "is_deleted": True})


def edit(
    customer: str, business: str, *, mid: str, text: str, num_edit: int = 1, timestamp: int | None = None
) -> dict[str, Any]:
    return _item(customer, business, timestamp, message_edit={"mid": mid, "text": text, "num_edit": num_edit})


def unsupported(
    customer: str, business: str, *, mid: str | None = None, timestamp: int | None = None
) -> dict[str, Any]:
    return _item(customer, business, timestamp, message={"mid": mid or new_mid(), "is_unsupported": True})


def postback(
    customer: str,
    business: str,
    *,
    title: str = "Talk to an agent",
    payload: str = "CARE_HELP",
    mid: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    return _item(
        customer, business, timestamp, postback={"mid": mid or new_mid(), "title": title, "payload": payload}
    )


def referral(
    customer: str, business: str, *, ref: str = "promo42", timestamp: int | None = None
) -> dict[str, Any]:
    return _item(
        customer,
        business,
        timestamp,
        referral={"ref": ref, "source": "IGME_LINK_SOURCE", "type": "OPEN_THREAD"},
    )


# -- events of the business ------------------------------------------------------------------


def echo(
    business: str, customer: str, *, text: str, mid: str | None = None, timestamp: int | None = None
) -> dict[str, Any]:
    """The business sent a message (through the API or the Instagram app)."""
    return _item(
        business, customer, timestamp, message={"mid": mid or new_mid(), "text": text, "is_echo": True}
    )


# -- envelopes ---------------------------------------------------------------------------------


def entry(business: str, *items: dict[str, Any], source: str = "messaging") -> dict[str, Any]:
    """One entry; `source` is "messaging" or "standby" (handover: the app is not the thread owner)."""
    return {"id": business, "time": now_ms(), source: list(items)}


def change_entry(business: str, field: str, value: dict[str, Any]) -> dict[str, Any]:
    """The `changes[]` shape (comments, and postbacks as sometimes seen in production; `time` in seconds)."""
    return {"id": business, "time": int(time.time()), "changes": [{"field": field, "value": value}]}


def postback_change(
    customer: str, business: str, *, payload: str = "CARE_HELP", title: str = "Talk to an agent"
) -> dict[str, Any]:
    value = {
        "sender": {"id": customer},
        "recipient": {"id": business},
        "postback": {"mid": new_mid(), "title": title, "payload": payload},
    }
    return change_entry(business, "messaging_postbacks", value)


def dashboard_test(
    customer: str = "12334", business: str = "23245", *, text: str = "random_text"
) -> dict[str, Any]:
    """What the App Dashboard's "Test" button sends: entry id "0" and a `changes[]` message."""
    value = {
        "sender": {"id": customer},
        "recipient": {"id": business},
        "timestamp": str(int(time.time())),
        "message": {"mid": "random_mid", "text": text},
    }
    return {"id": "0", "time": int(time.time()), "changes": [{"field": "messages", "value": value}]}


def envelope(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "instagram", "entry": list(entries)}


def encode(payload: Any) -> bytes:
    """Meta's serialization: compact, with non-ASCII characters escaped (`\\u00e4`)."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver(
    url: str, body: bytes, secret: str, *, retries: int = 3, timeout: float = 5.0, retry_delay: float = 0.2
) -> int | None:
    """POST a signed delivery, retried like Meta on a non-2xx answer or a timeout.

    Returns the last HTTP status (None: no answer at all).
    """
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}
    status: int | None = None
    async with httpx.AsyncClient(timeout=timeout) as client:
        for attempt in range(retries + 1):
            try:
                status = (await client.post(url, content=body, headers=headers)).status_code
            except httpx.HTTPError:
                status = None
            if status is not None and 200 <= status < 300:
                return status
            if attempt < retries:
                await asyncio.sleep(retry_delay * 2**attempt)
    return status


# Customer-to-business kinds the admin API and `inboxctl sandbox dm` can send by name.
KINDS: dict[str, Callable[..., dict[str, Any]]] = {
    "text": text,
    "attachment": attachment,
    "story_reply": story_reply,
    "inline_reply": inline_reply,
    "quick_reply": quick_reply,
    "read": read,
    "reaction": reaction,
    "unreaction": unreaction,
    "unsend": unsend,
    "edit": edit,
    "unsupported": unsupported,
    "postback": postback,
    "referral": referral,
}
# Kinds that are a customer's message: they open the messaging window and give profile consent.
CUSTOMER_MESSAGES = frozenset(
    {"text", "attachment", "story_reply", "inline_reply", "quick_reply", "unsupported", "postback"}
)
