"""Stored attachments, at stable URLs that cannot be guessed from an id.

The file is streamed from the storage backend (a local directory or a private bucket): 404 when
there is none, 503 when the bucket is unreachable, 502 when it refuses us."""

import hmac
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from shared import storage
from shared.app import SessionDep, SettingsDep, StorageDep
from shared.errors import NotFound
from shared.models import Attachment

router = APIRouter(tags=["media"])


@router.get(
    "/media/{attachment_id}/{token}/{filename}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
        404: {"description": "no such file, or a wrong token"},
        502: {"description": "the attachment bucket refused the request"},
        503: {"description": "the attachment bucket is unreachable"},
    },
)
async def media(
    attachment_id: int,
    token: str,
    filename: str,
    session: SessionDep,
    settings: SettingsDep,
    files: StorageDep,
) -> StreamingResponse:
    attachment = await session.get(Attachment, attachment_id)
    valid = hmac.compare_digest(token.encode(), storage.media_token(settings, attachment_id).encode())
    if (
        attachment is None
        or not valid
        or not attachment.storage_key
        or filename != storage.filename(attachment)
    ):
        raise NotFound("file not found")
    await session.close()  # no database connection is held while the file streams
    stored = await files.open(attachment.storage_key)
    if stored is None:
        raise NotFound("file not found")
    headers = {"content-disposition": f'attachment; filename="{quote(filename)}"'}
    if stored.size is not None:
        headers["content-length"] = str(stored.size)
    return StreamingResponse(
        stored.chunks,
        media_type=attachment.content_type or "application/octet-stream",
        headers=headers,
        background=BackgroundTask(stored.close),
    )
