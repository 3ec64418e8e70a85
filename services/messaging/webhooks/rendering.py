"""The body of an account webhook event: Chatwoot's shape, i.e. the API object the event is
about, plus `event`, `account` and `inbox`."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Account, Inbox, WebhookEvent


async def render(session: AsyncSession, event: WebhookEvent) -> dict[str, Any]:
    account = await session.get(Account, event.account_id)
    inbox = await session.get(Inbox, event.inbox_id) if event.inbox_id else None
    body: dict[str, Any] = {
        "event": event.event,
        "account": {"id": event.account_id, "name": account.name if account else None},
        "inbox": {"id": inbox.id, "name": inbox.name} if inbox else None,
        **event.payload.get("subject", {}),
    }
    if "changed_attributes" in event.payload:
        body["changed_attributes"] = event.payload["changed_attributes"]
    return body
