"""Where attachment files live, and the stable URLs that serve them.

Instagram's media URLs expire within days, so inbound attachments are copied into our storage
(outgoing ones are stored when uploaded) and served by the messaging API at
`{PUBLIC_MEDIA_URL}/media/{id}/{token}/{filename}`, whatever the backend: a local directory
(STORAGE_DIR, the default) or an S3-compatible bucket (S3_BUCKET), which the media router
streams from, so the bucket can stay private. The token is an HMAC of the id, so URLs are
stable but cannot be guessed from an id.
"""

import asyncio
import hashlib
import hmac
import mimetypes
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote

import httpx

from shared.errors import AppError
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
CHUNK_BYTES = 64 * 1024
S3_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class StorageError(AppError):
    """The attachment store refused a request (credentials, permissions, a missing bucket)."""

    status_code = 502


class StorageUnavailable(StorageError):
    """The attachment store is unreachable or busy: worth retrying."""

    status_code = 503


class RangeNotSatisfiable(Exception):
    """The requested bytes lie beyond the object (`size`: its size, when known)."""

    def __init__(self, size: int | None) -> None:
        super().__init__(f"range not satisfiable (size {size})")
        self.size = size


@dataclass
class StoredFile:
    """A stored object being read: its bytes in chunks; `close()` it even when not read to the end.
    `size` counts the bytes of `chunks`; `content_range` is set when they are a part of it."""

    size: int | None
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]
    content_range: str | None = None  # "bytes first-last/total"


RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None) -> str | None:
    """A Range header's single byte range ("0-99", "100-", "-500"); None for none or several."""
    match = RANGE.fullmatch((header or "").strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first and last and int(last) < int(first):
        return None  # not a valid range: the whole file is answered
    return f"{first}-{last}"


def _resolve(spec: str, size: int) -> tuple[int, int]:
    """(first, last) byte of `spec` within an object of `size` bytes."""
    first, last = spec.split("-")
    if not first:  # the last `last` bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - int(last)), size - 1
    if int(first) >= size:
        raise RangeNotSatisfiable(size)
    return int(first), min(int(last), size - 1) if last else size - 1


class Storage(Protocol):
    async def save(self, key: str, data: bytes, content_type: str | None) -> None: ...

    async def open(self, key: str, byte_range: str | None = None) -> StoredFile | None:
        """The object (or the part of it `byte_range` names, see `byte_range()`), or None when
        there is none under `key`. RangeNotSatisfiable when the part lies beyond it."""
        ...

    async def aclose(self) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key escapes the storage directory: {key!r}")
        return path

    async def save(self, key: str, data: bytes, content_type: str | None) -> None:
        await asyncio.to_thread(self._write, self.path(key), data)

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        """Atomically: a reader never sees half a file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, target)

    async def open(self, key: str, byte_range: str | None = None) -> StoredFile | None:
        try:
            file: BinaryIO = await asyncio.to_thread(self.path(key).open, "rb")
        except (FileNotFoundError, IsADirectoryError):
            return None
        size = os.fstat(file.fileno()).st_size
        first, last, content_range = 0, size - 1, None
        if byte_range is not None:
            try:
                first, last = _resolve(byte_range, size)
            except RangeNotSatisfiable:
                file.close()
                raise
            content_range = f"bytes {first}-{last}/{size}"

        async def chunks() -> AsyncIterator[bytes]:
            await asyncio.to_thread(file.seek, first)
            left = last - first + 1
            while left > 0 and (chunk := await asyncio.to_thread(file.read, min(CHUNK_BYTES, left))):
                left -= len(chunk)
                yield chunk

        async def close() -> None:
            await asyncio.to_thread(file.close)

        return StoredFile(size=last - first + 1, chunks=chunks(), close=close, content_range=content_range)

    async def aclose(self) -> None:
        pass


class S3Storage:
    """Objects in an S3-compatible bucket, signed with AWS Signature Version 4 over httpx.

    With S3_ENDPOINT_URL (MinIO, R2, ...) objects are addressed path-style
    (`{endpoint}/{bucket}/{key}`); without it, AWS's virtual-hosted style for the region."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.S3_BUCKET
        self.prefix = settings.S3_KEY_PREFIX
        self.region = settings.S3_REGION
        self.access_key_id = settings.S3_ACCESS_KEY_ID
        self.secret_access_key = settings.S3_SECRET_ACCESS_KEY
        endpoint = settings.S3_ENDPOINT_URL.rstrip("/")
        if endpoint:
            self.base_url = f"{endpoint}/{quote(self.bucket)}/"
        else:
            self.base_url = f"https://{self.bucket}.s3.{self.region}.amazonaws.com/"
        self.client = httpx.AsyncClient(timeout=S3_TIMEOUT)

    def _request(
        self,
        method: str,
        key: str,
        data: bytes = b"",
        content_type: str | None = None,
        byte_range: str | None = None,
    ) -> httpx.Request:
        url = httpx.URL(self.base_url + quote(self.prefix + key, safe="/~"))
        headers = {"content-type": content_type} if content_type else {}
        if byte_range is not None:
            headers["range"] = f"bytes={byte_range}"
        headers |= sign_v4(
            method,
            url,
            headers,
            hashlib.sha256(data).hexdigest(),
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key.get_secret_value(),
            region=self.region,
            now=datetime.now(UTC),
        )
        return self.client.build_request(
            method, url, headers=headers, content=data if method == "PUT" else None
        )

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self.client.send(request, stream=stream)
        except httpx.TransportError as error:
            raise StorageUnavailable(
                f"attachment store unreachable: bucket {self.bucket!r}: {type(error).__name__}"
            ) from error

    def _failure(self, response: httpx.Response, body: bytes) -> StorageError:
        code = re.search(rb"<Code>([^<]{1,100})</Code>", body)
        reason = f"bucket {self.bucket!r} answered {response.status_code}" + (
            f" {code.group(1).decode(errors='replace')}" if code else ""
        )
        if response.status_code >= 500 or response.status_code == 429:
            return StorageUnavailable(f"attachment store unavailable: {reason}")
        return StorageError(f"attachment store refused the request: {reason}")

    async def save(self, key: str, data: bytes, content_type: str | None) -> None:
        response = await self._send(self._request("PUT", key, data, content_type))
        if response.status_code != 200:
            raise self._failure(response, response.content)

    async def open(self, key: str, byte_range: str | None = None) -> StoredFile | None:
        response = await self._send(self._request("GET", key, byte_range=byte_range), stream=True)
        if response.status_code not in (200, 206):
            try:
                body = await response.aread()
            except httpx.TransportError:
                body = b""
            finally:
                await response.aclose()
            if response.status_code == 404:
                return None
            if response.status_code == 416:
                total = response.headers.get("content-range", "").rpartition("/")[2]
                if not total.isdigit():  # not every S3-compatible store says: ask for the size
                    head = await self._send(self._request("HEAD", key))
                    total = head.headers.get("content-length", "") if head.status_code == 200 else ""
                raise RangeNotSatisfiable(int(total) if total.isdigit() else None)
            raise self._failure(response, body)
        length = response.headers.get("content-length")
        return StoredFile(
            size=int(length) if length and length.isdigit() else None,
            chunks=response.aiter_raw(CHUNK_BYTES),  # as stored: Content-Length counts these
            close=response.aclose,
            content_range=response.headers.get("content-range") if response.status_code == 206 else None,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def sign_v4(
    method: str,
    url: httpx.URL,
    headers: dict[str, str],
    payload_sha256: str,
    *,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    now: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers that sign this request (AWS Signature Version 4): `x-amz-date`,
    `x-amz-content-sha256` and `authorization`. Every header given, and the host, is signed;
    the URL's path must already be percent-encoded (S3 keys are not encoded twice)."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    added = {"x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
    signed = {k.lower(): " ".join(v.split()) for k, v in {**headers, **added}.items()}
    signed["host"] = url.netloc.decode()
    names = ";".join(sorted(signed))
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(url.params.multi_items())
    )
    canonical = "\n".join(
        [
            method,
            url.raw_path.split(b"?")[0].decode() or "/",
            query,
            "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
            names,
            payload_sha256,
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret_access_key}".encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope},SignedHeaders={names},Signature={signature}"
    )
    return {**added, "authorization": authorization}


def storage_from(settings: Settings) -> Storage:
    """The bucket when S3_BUCKET is set, else the local directory STORAGE_DIR."""
    if settings.S3_BUCKET:
        return S3Storage(settings)
    return LocalStorage(Path(settings.STORAGE_DIR))


def attachment_key(attachment: Attachment) -> str:
    return f"attachments/{attachment.account_id}/{attachment.id}/{filename(attachment)}"


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
