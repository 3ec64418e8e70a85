"""Contacts: one per Instagram-scoped id and inbox, created on first sight, enriched from the profile."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import Event, emit
from shared.models import Contact, ContactInbox, Inbox

PROFILE_MAX_AGE = timedelta(days=7)  # Instagram's picture URLs expire within days


async def contact_for(
    session: AsyncSession, *, inbox: Inbox, igsid: str
) -> tuple[ContactInbox, Contact, bool]:
    """The contact behind an IGSID in this inbox; (contact_inbox, contact, created).

    Concurrent first events from one person race on the unique (inbox_id, source_id): the loser
    waits for the winner's commit, finds its row, and drops the contact it had just inserted.
    """
    row = (
        await session.execute(
            select(ContactInbox, Contact)
            .join(Contact, Contact.id == ContactInbox.contact_id)
            .where(ContactInbox.inbox_id == inbox.id, ContactInbox.source_id == igsid)
        )
    ).one_or_none()
    if row is not None:
        return row[0], row[1], False
    contact = Contact(account_id=inbox.account_id, name=igsid, additional_attributes={"instagram_id": igsid})
    session.add(contact)
    await session.flush()
    created_id = await session.scalar(
        insert(ContactInbox)
        .values(contact_id=contact.id, inbox_id=inbox.id, source_id=igsid)
        .on_conflict_do_nothing(index_elements=[ContactInbox.inbox_id, ContactInbox.source_id])
        .returning(ContactInbox.id)
    )
    if created_id is None:
        await session.execute(delete(Contact).where(Contact.id == contact.id))
        session.expunge(contact)
        return await contact_for(session, inbox=inbox, igsid=igsid)
    emit(
        session,
        event=Event.CONTACT_CREATED,
        account_id=inbox.account_id,
        inbox_id=inbox.id,
        contact_id=contact.id,
    )
    contact_inbox = await session.get(ContactInbox, created_id)
    assert contact_inbox is not None
    return contact_inbox, contact, True


def needs_profile(contact: Contact, now: datetime | None = None) -> bool:
    fetched = contact.profile_fetched_at
    return fetched is None or (now or datetime.now(UTC)) - fetched > PROFILE_MAX_AGE


def apply_profile(session: AsyncSession, *, contact: Contact, inbox_id: int, profile: dict[str, Any]) -> None:
    """Store what the User Profile API said: name, avatar, and the rest in additional_attributes."""
    username = profile.get("username")
    attributes = dict(contact.additional_attributes)
    attributes.update(
        {
            "username": username,
            "social_instagram_user_name": username,
            "social_profiles": {"instagram": f"https://www.instagram.com/{username}" if username else None},
            "followers_count": profile.get("follower_count"),
            "is_verified_user": profile.get("is_verified_user"),
            "is_user_follow_business": profile.get("is_user_follow_business"),
            "is_business_follow_user": profile.get("is_business_follow_user"),
        }
    )
    contact.additional_attributes = attributes
    contact.name = profile.get("name") or username or contact.name
    contact.avatar_url = profile.get("profile_pic") or contact.avatar_url
    contact.profile_fetched_at = datetime.now(UTC)
    emit(
        session,
        event=Event.CONTACT_UPDATED,
        account_id=contact.account_id,
        inbox_id=inbox_id,
        contact_id=contact.id,
    )
