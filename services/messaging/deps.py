"""Dependencies of the messaging API: resources loaded within the caller's account, or 404."""

from typing import Annotated

from fastapi import Depends, Path
from sqlalchemy import select

from shared.access import AccountMember
from shared.app import SessionDep, StateDep
from shared.errors import NotFound
from shared.models import ChannelInstagram, Conversation, Inbox


async def human_agent_enabled(state: StateDep) -> bool:
    return (await state["app_config"].get()).human_agent_enabled


async def conversation_in_account(
    member: AccountMember,
    session: SessionDep,
    conversation_id: Annotated[int, Path(description="display id")],
) -> Conversation:
    conversation = await session.scalar(
        select(Conversation).where(
            Conversation.account_id == member.account_id, Conversation.display_id == conversation_id
        )
    )
    if conversation is None:
        raise NotFound("conversation not found")
    return conversation


async def inbox_in_account(
    member: AccountMember, session: SessionDep, inbox_id: int
) -> tuple[Inbox, ChannelInstagram]:
    row = (
        await session.execute(
            select(Inbox, ChannelInstagram)
            .join(ChannelInstagram, ChannelInstagram.id == Inbox.channel_id)
            .where(Inbox.id == inbox_id, Inbox.account_id == member.account_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("inbox not found")
    return row[0], row[1]


HumanAgentDep = Annotated[bool, Depends(human_agent_enabled)]
ConversationDep = Annotated[Conversation, Depends(conversation_in_account)]
InboxDep = Annotated[tuple[Inbox, ChannelInstagram], Depends(inbox_in_account)]
