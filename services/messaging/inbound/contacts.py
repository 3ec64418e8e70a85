"""Contacts: one per Instagram-scoped id and inbox, created on first sight, enriched from the profile."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import pairs_among, table
from shared.events import Event, emit
from shared.models import Contact, ContactInbox, Inbox

PROFILE_MAX_AGE = timedelta(days=7)  # Instagram's picture URLs expire within days
_CONTACTS, _CONTACT_INBOXES = table(Contact), table(ContactInbox)


Pair = tuple[int, str]  # (inbox id, the customer's IGSID)


class Customer(NamedTuple):
    """What storing a customer's messages needs of their contact."""

    contact_inbox_id: int
    contact_id: int
    profile_fetched_at: datetime | None


async def _known(session: AsyncSession, pairs: set[Pair]) -> dict[Pair, Customer]:
    rows = await session.execute(
        select(
            ContactInbox.inbox_id,
            ContactInbox.source_id,
            ContactInbox.id,
            ContactInbox.contact_id,
            Contact.profile_fetched_at,
        )
        .join(Contact, Contact.id == ContactInbox.contact_id)
        .where(pairs_among(ContactInbox.inbox_id, ContactInbox.source_id, pairs))
    )
    return {
        (row.inbox_id, row.source_id): Customer(row.id, row.contact_id, row.profile_fetched_at)
        for row in rows
    }


async def contacts_for(session: AsyncSession, wanted: Sequence[tuple[Inbox, str]]) -> dict[Pair, Customer]:
    """The contact behind each (inbox, IGSID), created where missing: a few statements for any number.

    Concurrent first events from one person race on the unique (inbox_id, source_id): the loser's
    insert waits for the winner's commit and skips; the loser drops the contact it had just made.
    Inserts go in one order (sorted), so two batches waiting on each other's new rows cannot deadlock.
    """
    inboxes = {(inbox.id, igsid): inbox for inbox, igsid in wanted}
    known = await _known(session, set(inboxes))
    missing = sorted(pair for pair in inboxes if pair not in known)
    if not missing:
        return known
    contact_ids = list(
        await session.scalars(
            insert(_CONTACTS).returning(_CONTACTS.c.id, sort_by_parameter_order=True),
            [
                {
                    "account_id": inboxes[pair].account_id,
                    "name": pair[1],
                    "additional_attributes": {"instagram_id": pair[1]},
                }
                for pair in missing
            ],
        )
    )
    linked = set(
        await session.scalars(
            insert(_CONTACT_INBOXES)
            .on_conflict_do_nothing(
                index_elements=[_CONTACT_INBOXES.c.inbox_id, _CONTACT_INBOXES.c.source_id]
            )
            .returning(_CONTACT_INBOXES.c.contact_id),
            [
                {"contact_id": contact_id, "inbox_id": pair[0], "source_id": pair[1]}
                for pair, contact_id in zip(missing, contact_ids, strict=True)
            ],
        )
    )
    if orphans := [contact_id for contact_id in contact_ids if contact_id not in linked]:
        await session.execute(delete(Contact).where(Contact.id.in_(orphans)))
    for pair, contact_id in zip(missing, contact_ids, strict=True):
        if contact_id in linked:
            emit(
                session,
                event=Event.CONTACT_CREATED,
                account_id=inboxes[pair].account_id,
                inbox_id=pair[0],
                contact_id=contact_id,
            )
    return known | await _known(session, set(missing))


def needs_profile(fetched_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a profile read at `fetched_at` (None: never) should be read again."""
    return fetched_at is None or (now or datetime.now(UTC)) - fetched_at > PROFILE_MAX_AGE


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
