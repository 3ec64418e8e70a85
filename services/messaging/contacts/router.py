from fastapi import APIRouter, Query
from sqlalchemy import func, or_, select

from services.messaging import views
from services.messaging.deps import HumanAgentDep
from shared.access import AccountMember
from shared.app import SessionDep, SettingsDep
from shared.errors import NotFound
from shared.models import Contact, Conversation
from shared.schemas.api import ContactList, ContactRead, ConversationRead, PageMeta

router = APIRouter(prefix="/api/v1/accounts/{account_id}/contacts", tags=["contacts"])
PAGE_SIZE = 15


@router.get("")
async def list_contacts(
    member: AccountMember,
    session: SessionDep,
    page: int = Query(1, ge=1),
    q: str | None = Query(None, max_length=255, description="search by name or Instagram username"),
) -> ContactList:
    where = [Contact.account_id == member.account_id]
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        where.append(
            or_(
                Contact.name.ilike(pattern),
                Contact.additional_attributes["username"].as_string().ilike(pattern),
            )
        )
    count = await session.scalar(select(func.count()).select_from(Contact).where(*where))
    contacts = await session.scalars(
        select(Contact)
        .where(*where)
        .order_by(Contact.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    payload = await views.contact_views(session, list(contacts))
    return ContactList(meta=PageMeta(count=count or 0, current_page=page), payload=payload)


async def _contact(session: SessionDep, member: AccountMember, contact_id: int) -> Contact:
    contact = await session.scalar(
        select(Contact).where(Contact.id == contact_id, Contact.account_id == member.account_id)
    )
    if contact is None:
        raise NotFound("contact not found")
    return contact


@router.get("/{contact_id}")
async def show_contact(contact_id: int, member: AccountMember, session: SessionDep) -> dict[str, ContactRead]:
    [view] = await views.contact_views(session, [await _contact(session, member, contact_id)])
    return {"payload": view}


@router.get("/{contact_id}/conversations")
async def contact_conversations(
    contact_id: int,
    member: AccountMember,
    session: SessionDep,
    settings: SettingsDep,
    human_agent: HumanAgentDep,
) -> dict[str, list[ConversationRead]]:
    contact = await _contact(session, member, contact_id)
    conversations = await session.scalars(
        select(Conversation)
        .where(Conversation.contact_id == contact.id)
        .order_by(Conversation.last_activity_at.desc())
    )
    return {
        "payload": await views.conversation_views(
            session, settings, list(conversations), human_agent=human_agent
        )
    }
