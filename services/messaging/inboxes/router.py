from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import delete, select

from services.messaging import views
from services.messaging.deps import InboxDep
from shared.access import AccountAdministrator, AccountMember
from shared.app import GraphDep, SessionDep
from shared.graph import GraphError
from shared.logging import get_logger
from shared.models import ChannelInstagram, Inbox
from shared.schemas.api import InboxRead

router = APIRouter(prefix="/api/v1/accounts/{account_id}/inboxes", tags=["inboxes"])
log = get_logger("inboxes")


class InboxUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    lock_to_single_conversation: bool | None = Field(
        default=None, description="true: a resolved conversation is reopened for the contact's next message"
    )


@router.get("")
async def list_inboxes(member: AccountMember, session: SessionDep) -> dict[str, list[InboxRead]]:
    rows = await session.execute(
        select(Inbox, ChannelInstagram)
        .join(ChannelInstagram, ChannelInstagram.id == Inbox.channel_id)
        .where(Inbox.account_id == member.account_id)
        .order_by(Inbox.id)
    )
    return {"payload": [views.inbox_view(inbox, channel) for inbox, channel in rows]}


@router.get("/{inbox_id}")
async def show_inbox(found: InboxDep) -> InboxRead:
    return views.inbox_view(*found)


@router.patch("/{inbox_id}")
async def update_inbox(
    body: InboxUpdate, found: InboxDep, _: AccountAdministrator, session: SessionDep
) -> InboxRead:
    inbox, channel = found
    for field, value in body.model_dump(exclude_none=True).items():
        setattr(inbox, field, value)
    await session.commit()
    return views.inbox_view(inbox, channel)


@router.delete("/{inbox_id}")
async def delete_inbox(
    found: InboxDep, _: AccountAdministrator, session: SessionDep, graph: GraphDep
) -> dict[str, bool]:
    """Remove the inbox, its channel and conversations; unsubscribe Meta's webhooks on a best-effort basis."""
    inbox, channel = found
    token, reauthorization_required = channel.access_token, channel.reauthorization_required
    # The database cascades from the channel to the inbox and everything in it.
    await session.execute(delete(ChannelInstagram).where(ChannelInstagram.id == channel.id))
    await session.commit()
    if not reauthorization_required:
        try:
            await graph.unsubscribe_webhooks(token)
        except GraphError as error:
            log.warning(
                "could not unsubscribe webhooks of a deleted inbox", inbox_id=inbox.id, error=str(error)
            )
    return {"success": True}
