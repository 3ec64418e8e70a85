"""Meta webhook deliveries, split into single events: the contract between the webhooks service
(which enqueues one `process_event` job per event) and the inbound worker (which handles it).

A delivery is `{"object": "instagram", "entry": [...]}`; each entry holds `messaging[]`,
`standby[]` and/or `changes[]` items (instagram-platform.md §5–6). Every event gets a `kind`
and a deterministic `key`, so a redelivered webhook maps to the same job id and enqueues nothing.

`delivery_events` builds each event as the plain dict the job carries (exactly what
`InboundEvent.model_dump(mode="json")` gives), so the webhooks service builds no model per event;
the worker validates it with `InboundEvent`.
"""

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel

# `changes[]` fields whose value is shaped like a `messaging[]` element (Dashboard test button,
# postbacks seen in production): they are handled as messaging events.
MESSAGING_CHANGE_FIELDS = frozenset(
    {
        "messages",
        "messaging_postbacks",
        "message_reactions",
        "messaging_seen",
        "messaging_referral",
        "message_edit",
    }
)


class InvalidPayload(ValueError):
    """The body is not an Instagram webhook delivery."""


class InboundEvent(BaseModel):
    entry_id: str  # the business's Instagram account id (`entry.id`)
    entry_time: int | None = None
    source: Literal["messaging", "standby", "changes"]
    field: str | None = None  # for `changes`: the subscription field
    item: dict[str, Any]  # the messaging element, or the change's `value`
    kind: str
    key: str

    @property
    def is_messaging(self) -> bool:
        return self.source != "changes" or self.field in MESSAGING_CHANGE_FIELDS

    @property
    def timestamp_ms(self) -> int | None:
        """When the event happened (ms); falls back to the entry's time for `changes` without one."""
        value = _int(self.item.get("timestamp"))
        if value is None and self.entry_time is not None:
            # `entry.time` is in ms for messaging, in seconds in `changes` examples.
            value = self.entry_time if self.entry_time > 10**11 else self.entry_time * 1000
        return value


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def messaging_kind(item: dict[str, Any]) -> tuple[str, str | None]:
    """(kind, mid) of a messaging element."""
    message = item.get("message")
    if isinstance(message, dict):
        mid = message.get("mid")
        if message.get("is_deleted"):
            return "unsend", mid
        if message.get("is_echo"):
            return "echo", mid
        return "message", mid
    for kind in ("message_edit", "reaction", "read", "postback"):
        value = item.get(kind)
        if isinstance(value, dict):
            return kind, value.get("mid")
    if isinstance(item.get("referral"), dict):
        return "referral", None
    if isinstance(item.get("optin"), dict):
        return "optin", None
    return "unknown", None


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _event(
    entry_id: str, entry_time: int | None, source: str, item: dict[str, Any], field: str | None
) -> dict[str, Any]:
    if source == "changes" and field not in MESSAGING_CHANGE_FIELDS:
        kind, mid = field or "unknown_change", None
    else:
        kind, mid = messaging_kind(item)
    if mid and kind in ("message", "echo", "unsend", "postback"):
        suffix = str(mid)
    elif mid and kind == "message_edit":
        suffix = f"{mid}:{item['message_edit'].get('num_edit', '')}"
    elif mid:  # reactions and reads repeat per mid: the event time tells them apart
        detail = item.get("reaction", {}).get("action", "") if kind == "reaction" else ""
        suffix = f"{mid}:{detail}:{item.get('timestamp', '')}"
    else:
        suffix = _digest({"entry": entry_id, "field": field, "item": item})
    return {
        "entry_id": entry_id,
        "entry_time": entry_time,
        "source": source,
        "field": field,
        "item": item,
        "kind": kind,
        "key": f"{entry_id}:{kind}:{suffix}",
    }


def split_delivery(payload: Any) -> list[InboundEvent]:
    """Every single event of a delivery. Raises InvalidPayload for anything that is not one."""
    return [InboundEvent.model_validate(event) for event in delivery_events(payload)]


def delivery_events(payload: Any) -> list[dict[str, Any]]:
    """`split_delivery` as plain dicts (the `event` kwarg of each process_event job), for a parsed
    JSON body. Raises InvalidPayload for anything that is not a delivery."""
    if not isinstance(payload, dict) or payload.get("object") != "instagram":
        raise InvalidPayload('not an Instagram webhook delivery (expected "object": "instagram")')
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise InvalidPayload('"entry" must be a list')
    events: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("id") is None:
            raise InvalidPayload('each entry must be an object with an "id"')
        entry_id, entry_time = str(entry["id"]), _int(entry.get("time"))
        changes = entry.get("changes", [])
        if not isinstance(changes, list):
            raise InvalidPayload('"changes" must be a list')
        if "field" in entry and "value" in entry:  # `field`/`value` straight under the entry
            changes = [*changes, {"field": entry["field"], "value": entry["value"]}]
        for source, items in (
            ("messaging", entry.get("messaging", [])),
            ("standby", entry.get("standby", [])),
        ):
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise InvalidPayload(f'"{source}" must be a list of objects')
            events += [_event(entry_id, entry_time, source, item, None) for item in items]
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise InvalidPayload('each change must be an object with a "field" and an object "value"')
            events.append(_event(entry_id, entry_time, "changes", change["value"], str(change.get("field"))))
    return events
