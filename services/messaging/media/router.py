"""Stored attachments, at stable URLs that cannot be guessed from an id."""

import hmac

from fastapi import APIRouter
from fastapi.responses import FileResponse

from shared import storage
from shared.app import SessionDep, SettingsDep
from shared.errors import NotFound
from shared.models import Attachment

router = APIRouter(tags=["media"])


@router.get("/media/{attachment_id}/{token}/{filename}", response_class=FileResponse)
async def media(
    attachment_id: int, token: str, filename: str, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    attachment = await session.get(Attachment, attachment_id)
    valid = hmac.compare_digest(token.encode(), storage.media_token(settings, attachment_id).encode())
    if (
        attachment is None
        or not valid
        or not attachment.storage_key
        or filename != storage.filename(attachment)
    ):
        raise NotFound("file not found")
    path = storage.storage_from(settings).path(attachment.storage_key)
    if not path.exists():
        raise NotFound("file not found")
    return FileResponse(
        path, media_type=attachment.content_type or "application/octet-stream", filename=filename
    )
