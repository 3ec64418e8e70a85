"""The body of an account webhook event, in Chatwoot's shape: the API object the event is about
(as the API shows it when the event is dispatched), plus `event`, `account` and `inbox`."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging import views
from shared.app_config import load_instagram_app
from shared.models import Account, ChannelInstagram, Contact, Conversation, Inbox, Message, WebhookEvent
from shared.settings import Settings


async def render(session: AsyncSession, settings: Settings, event: WebhookEvent) -> dict[str, Any]:
    subject: dict[str, int] = event.payload.get("subject", {})
    account = await session.get(Account, event.account_id)
    body: dict[str, Any] = {}
    if "message_id" in subject and (message := await session.get(Message, subject["message_id"])):
        [view] = await views.message_views(session, settings, [message])
        body = view.model_dump(mode="json")
        conversation = await session.get(Conversation, message.conversation_id)
        if conversation is not None:
            body["conversation"] = await _conversation(session, settings, conversation)
    elif "conversation_id" in subject and (
        conversation := await session.get(Conversation, subject["conversation_id"])
    ):
        body = await _conversation(session, settings, conversation)
    elif "contact_id" in subject and (contact := await session.get(Contact, subject["contact_id"])):
        [contact_view] = await views.contact_views(session, [contact])
        body = contact_view.model_dump(mode="json")
    elif event.inbox_id is not None:
        row = (
            await session.execute(
                select(Inbox, ChannelInstagram)
                .join(ChannelInstagram, ChannelInstagram.id == Inbox.channel_id)
                .where(Inbox.id == event.inbox_id)
            )
        ).one_or_none()
        if row is not None:
            body = views.inbox_view(*row).model_dump(mode="json")
    inbox = await session.get(Inbox, event.inbox_id) if event.inbox_id else None
    body.update(
        {
            "event": event.event,
            "account": {"id": event.account_id, "name": account.name if account else None},
            "inbox": {"id": inbox.id, "name": inbox.name} if inbox else None,
        }
    )
    if "changed_attributes" in event.payload:
        body["changed_attributes"] = event.payload["changed_attributes"]
    return body


async def _conversation(
    session: AsyncSession, settings: Settings, conversation: Conversation
) -> dict[str, Any]:
    human_agent = (await load_instagram_app(session, settings)).human_agent_enabled
    [view] = await views.conversation_views(session, settings, [conversation], human_agent=human_agent)
    return view.model_dump(mode="json")
