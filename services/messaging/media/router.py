"""Stored attachments, at stable URLs that cannot be guessed from an id.

The file is streamed from the storage backend (a local directory or a private bucket): 404 when
there is none, 503 when the bucket is unreachable, 502 when it refuses us. A single byte range
(`Range: bytes=...`, what players ask for to seek in audio and video) is answered with 206, or
416 when it lies beyond the file."""

import hmac
from urllib.parse import quote

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from shared import storage
from shared.app import SessionDep, SettingsDep, StorageDep, error_response
from shared.errors import NotFound
from shared.models import Attachment

router = APIRouter(tags=["media"])


@router.get(
    "/media/{attachment_id}/{token}/{filename}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
        206: {"content": {"application/octet-stream": {}}, "description": "the requested bytes"},
        404: {"description": "no such file, or a wrong token"},
        416: {"description": "the requested bytes lie beyond the file"},
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
    range_: str | None = Header(None, alias="range"),
) -> Response:
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
    try:
        stored = await files.open(attachment.storage_key, storage.byte_range(range_))
    except storage.RangeNotSatisfiable as beyond:
        refused = error_response(416, "the requested bytes lie beyond the file")
        refused.headers["content-range"] = f"bytes */{'*' if beyond.size is None else beyond.size}"
        return refused
    if stored is None:
        raise NotFound("file not found")
    headers = {
        "content-disposition": f'attachment; filename="{quote(filename)}"',
        "accept-ranges": "bytes",
    }
    if stored.size is not None:
        headers["content-length"] = str(stored.size)
    if stored.content_range:
        headers["content-range"] = stored.content_range
    return StreamingResponse(
        stored.chunks,
        status_code=206 if stored.content_range else 200,
        media_type=attachment.content_type or "application/octet-stream",
        headers=headers,
        background=BackgroundTask(stored.close),
    )
