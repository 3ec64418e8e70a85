from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError

from services.messaging import views
from services.messaging.deps import ConversationDep, HumanAgentDep
from shared.access import AccountMember, Member
from shared.app import SessionDep, SettingsDep
from shared.errors import Conflict
from shared.events import Event, emit
from shared.models import Conversation, ConversationStatus
from shared.schemas.api import ConversationCounts, ConversationList, ConversationPage, ConversationRead

router = APIRouter(prefix="/api/v1/accounts/{account_id}/conversations", tags=["conversations"])
PAGE_SIZE = 25
StatusFilter = Literal["open", "resolved", "pending", "snoozed", "all"]
AssigneeFilter = Literal["me", "unassigned", "assigned", "all"]


def _filters(member: Member, status: StatusFilter, inbox_id: int | None) -> list[ColumnElement[bool]]:
    where = [Conversation.account_id == member.account_id]
    if status != "all":
        where.append(Conversation.status == status)
    if inbox_id is not None:
        where.append(Conversation.inbox_id == inbox_id)
    return where


def _assignee(member: Member, assignee_type: AssigneeFilter) -> list[ColumnElement[bool]]:
    by_type: dict[str, list[ColumnElement[bool]]] = {
        "me": [Conversation.assignee_id == member.user.id],
        "unassigned": [Conversation.assignee_id.is_(None)],
        "assigned": [Conversation.assignee_id.is_not(None)],
        "all": [],
    }
    return by_type[assignee_type]


async def _counts(
    session: SessionDep, member: Member, where: list[ColumnElement[bool]]
) -> ConversationCounts:
    row = (
        await session.execute(
            select(
                func.count().filter(Conversation.assignee_id == member.user.id),
                func.count().filter(Conversation.assignee_id.is_(None)),
                func.count().filter(Conversation.assignee_id.is_not(None)),
                func.count(),
            ).where(*where)
        )
    ).one()
    mine, unassigned, assigned, everything = row
    return ConversationCounts(
        mine_count=mine, unassigned_count=unassigned, assigned_count=assigned, all_count=everything
    )


@router.get("")
async def list_conversations(
    member: AccountMember,
    session: SessionDep,
    settings: SettingsDep,
    human_agent: HumanAgentDep,
    status: StatusFilter = "open",
    inbox_id: int | None = None,
    assignee_type: AssigneeFilter = "all",
    page: int = Query(1, ge=1),
) -> ConversationList:
    """Newest activity first, 25 a page, with Chatwoot's counts in `data.meta`."""
    where = _filters(member, status, inbox_id)
    conversations = await session.scalars(
        select(Conversation)
        .where(*where, *_assignee(member, assignee_type))
        .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    payload = await views.conversation_views(session, settings, list(conversations), human_agent=human_agent)
    return ConversationList(
        data=ConversationPage(meta=await _counts(session, member, where), payload=payload)
    )


@router.get("/meta")
async def conversation_counts(
    member: AccountMember, session: SessionDep, status: StatusFilter = "open", inbox_id: int | None = None
) -> dict[str, ConversationCounts]:
    return {"meta": await _counts(session, member, _filters(member, status, inbox_id))}


@router.get("/{conversation_id}")
async def show_conversation(
    conversation: ConversationDep, session: SessionDep, settings: SettingsDep, human_agent: HumanAgentDep
) -> ConversationRead:
    [view] = await views.conversation_views(session, settings, [conversation], human_agent=human_agent)
    return view


class StatusChange(BaseModel):
    status: ConversationStatus | None = None


@router.post("/{conversation_id}/toggle_status")
async def toggle_status(
    conversation: ConversationDep, session: SessionDep, body: StatusChange | None = None
) -> dict[str, Any]:
    """Set the status, or toggle open ↔ resolved when none is given."""
    previous = conversation.status
    wanted = body.status if body and body.status else None
    target = wanted.value if wanted else ("resolved" if previous == "open" else "open")
    if target != previous:
        conversation.status = target
        emit(
            session,
            event=Event.CONVERSATION_STATUS_CHANGED,
            account_id=conversation.account_id,
            inbox_id=conversation.inbox_id,
            conversation_id=conversation.id,
            changed_attributes={"status": [previous, target]},
        )
        try:
            await session.commit()
        except IntegrityError as error:
            raise Conflict("this contact already has an open or pending conversation in the inbox") from error
    return {
        "meta": {},
        "payload": {"success": True, "current_status": target, "conversation_id": conversation.display_id},
    }


@router.post("/{conversation_id}/update_last_seen")
async def mark_read(conversation: ConversationDep, session: SessionDep) -> dict[str, Any]:
    """The agent has read the conversation: unread count back to zero."""
    had_unread = conversation.unread_count
    conversation.agent_last_seen_at = datetime.now(UTC)
    conversation.unread_count = 0
    if had_unread:
        emit(
            session,
            event=Event.CONVERSATION_UPDATED,
            account_id=conversation.account_id,
            inbox_id=conversation.inbox_id,
            conversation_id=conversation.id,
            changed_attributes={"unread_count": [had_unread, 0]},
        )
    await session.commit()
    return {"success": True, "agent_last_seen_at": views.unix(conversation.agent_last_seen_at)}
