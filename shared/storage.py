"""Where attachment files live, and the stable URLs that serve them.

Instagram's media URLs expire within days, so inbound attachments are copied here (a local
directory, STORAGE_DIR) and served by the messaging API at
`{PUBLIC_MEDIA_URL}/media/{id}/{token}/{filename}`. The token is an HMAC of the id, so URLs
are stable but cannot be guessed from an id.
"""

import hashlib
import hmac
import mimetypes
import os
import tempfile
from pathlib import Path

from shared.models import Attachment
from shared.settings import Settings

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "application/pdf": "pdf",
}


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key escapes the storage directory: {key!r}")
        return path

    def save(self, key: str, data: bytes) -> None:
        """Write atomically: a reader never sees half a file."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, target)


def storage_from(settings: Settings) -> Storage:
    return Storage(Path(settings.STORAGE_DIR))


def extension_for(content_type: str | None, url: str | None) -> str | None:
    if content_type:
        base = content_type.split(";")[0].strip()
        return EXTENSIONS.get(base) or (mimetypes.guess_extension(base) or "").lstrip(".") or None
    suffix = Path((url or "").split("?")[0]).suffix.lstrip(".")
    return suffix or None


def media_token(settings: Settings, attachment_id: int) -> str:
    secret = settings.SECRET_KEY.get_secret_value().encode()
    return hmac.new(secret, f"attachment:{attachment_id}".encode(), hashlib.sha256).hexdigest()[:24]


def filename(attachment: Attachment) -> str:
    return f"{attachment.file_type}-{attachment.id}.{attachment.extension or 'bin'}"


def data_url(settings: Settings, attachment: Attachment) -> str | None:
    """Our stable URL once the file is stored; Meta's original URL until then."""
    if attachment.storage_key:
        token = media_token(settings, attachment.id)
        return f"{settings.PUBLIC_MEDIA_URL.rstrip('/')}/media/{attachment.id}/{token}/{filename(attachment)}"
    return attachment.external_url
