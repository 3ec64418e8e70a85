"""Follow-up work that needs Meta and must never hold up a message: profiles and media downloads."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.inbound import contacts
from shared import channels, storage
from shared.graph import GraphClient, GraphPermissionError, GraphRequestError, GraphTokenError
from shared.logging import get_logger
from shared.models import Attachment, ChannelInstagram, Contact, ContactInbox, Inbox
from shared.settings import Settings

log = get_logger("inbound.enrichment")
MAX_MEDIA_BYTES = 25 * 1024 * 1024  # Instagram's largest attachment


async def enrich_contact(
    session: AsyncSession, graph: GraphClient, settings: Settings, *, contact_inbox_id: int
) -> None:
    """Fetch the customer's Instagram profile. Consent not given yet (230) or an unknown user (9010)
    is expected: the contact keeps its fallback name and is enriched after its next message."""
    row = (
        await session.execute(
            select(ContactInbox, Contact, ChannelInstagram)
            .join(Contact, Contact.id == ContactInbox.contact_id)
            .join(Inbox, Inbox.id == ContactInbox.inbox_id)
            .join(ChannelInstagram, ChannelInstagram.id == Inbox.channel_id)
            .where(ContactInbox.id == contact_inbox_id)
        )
    ).one_or_none()
    if row is None:
        return
    contact_inbox, contact, channel = row
    if channel.reauthorization_required or not contacts.needs_profile(contact.profile_fetched_at):
        return
    try:
        profile = await graph.user_profile(channel.access_token, contact_inbox.source_id)
    except GraphTokenError:
        await channels.record_token_error(session, settings, channel_id=channel.id)
        return
    except (GraphRequestError, GraphPermissionError) as error:
        log.info("profile not available yet", contact_id=contact.id, code=error.code, reason=error.message)
        return
    contacts.apply_profile(session, contact=contact, inbox_id=contact_inbox.inbox_id, profile=profile)


async def download_attachment(
    session: AsyncSession, graph: GraphClient, files: storage.Storage, *, attachment_id: int
) -> None:
    """Copy the file from Meta's expiring URL into our storage. A refused download is recorded on
    the attachment (it keeps the original URL); transient failures (Meta's or the store's)
    propagate to be retried."""
    attachment = await session.get(Attachment, attachment_id, with_for_update=True)
    if attachment is None or attachment.storage_key or not attachment.external_url:
        return
    try:
        media = await graph.fetch(attachment.external_url)
    except GraphRequestError as error:
        attachment.download_error = f"download refused: {error.message}"[:500]
        return
    if len(media.content) > MAX_MEDIA_BYTES:
        attachment.download_error = f"file larger than {MAX_MEDIA_BYTES} bytes"
        return
    attachment.content_type = media.content_type
    attachment.extension = storage.extension_for(media.content_type, attachment.external_url)
    attachment.file_size = len(media.content)
    key = storage.attachment_key(attachment)
    await files.save(key, media.content, media.content_type)
    attachment.storage_key = key
    attachment.download_error = None
