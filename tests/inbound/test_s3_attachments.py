"""Inbound attachments kept in an S3-compatible bucket (moto's server over real HTTP)."""

from pathlib import Path

import httpx
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox import events
from services.messaging.main import create_messaging_app
from services.messaging.worker import WorkerSettings
from shared import storage
from shared.models import Attachment, DeadLetter
from shared.queue import DOWNLOAD_ATTACHMENT, Queue
from shared.settings import Settings
from tests.conftest import S3Server, _asgi_client, configured, s3_server_on
from tests.inbound.conftest import ACME, JANE, Connected
from tests.support import assert_serves_byte_ranges, free_port, run_worker


async def _download(url: str) -> bytes:
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).content


async def _media_path(settings: Settings, attachment: Attachment) -> str:
    url = storage.data_url(settings, attachment)
    assert url is not None and url.startswith(f"{settings.PUBLIC_MEDIA_URL}/media/")
    assert attachment.external_url and attachment.external_url not in url
    return url.removeprefix(settings.PUBLIC_MEDIA_URL)


async def test_an_attachment_is_copied_into_the_bucket_and_served_at_its_stable_url(
    connected: Connected, db: AsyncSession, sandbox_url: str, s3: Settings, s3_server: S3Server
) -> None:
    cdn_url = f"{sandbox_url}/cdn/photo.jpg"
    original = await _download(cdn_url)
    await connected.deliver(events.attachment(JANE, ACME, type="image", url=cdn_url))
    await connected.process()

    image = (await db.scalars(select(Attachment))).one()
    assert image.storage_key and image.download_error is None and image.external_url == cdn_url
    stored = s3_server.client().get_object(Bucket=s3.S3_BUCKET, Key=f"inbox/{image.storage_key}")
    assert (stored["Body"].read(), stored["ContentType"]) == (original, "image/jpeg")
    assert not (Path(s3.STORAGE_DIR) / image.storage_key).exists()  # the bucket, not the directory

    path = await _media_path(s3, image)
    async for client in _asgi_client(create_messaging_app(s3)):
        served = await client.get(path)
        assert served.status_code == 200
        assert (served.content, served.headers["content-type"]) == (original, "image/jpeg")
        assert served.headers["content-length"] == str(len(original))
        await assert_serves_byte_ranges(client, path, original)
        wrong = await client.get(f"/media/{image.id}/wrongtoken/{storage.filename(image)}")
        assert wrong.status_code == 404 and wrong.json() == {"error": "file not found"}
        s3_server.client().delete_object(Bucket=s3.S3_BUCKET, Key=f"inbox/{image.storage_key}")
        gone = await client.get(path)
        assert gone.status_code == 404 and gone.json() == {"error": "file not found"}


async def test_a_bucket_that_is_down_delays_the_copy_which_is_retried_until_it_succeeds(
    connected: Connected, db: AsyncSession, sandbox_url: str, redis: ArqRedis
) -> None:
    port = free_port()  # nothing listens here until the server starts below
    bucket = "attachments"
    down = S3Server(f"http://127.0.0.1:{port}", "testing", "testing")
    cdn_url = f"{sandbox_url}/cdn/clip.mp4"
    with configured(**down.environment(bucket)) as settings:
        await connected.deliver(events.attachment(JANE, ACME, type="video", url=cdn_url))
        # the event, the profile lookup and at least one try of the copy, which fails
        await run_worker(WorkerSettings, max_burst_jobs=3)
        db.expire_all()
        assert len(await connected.messages()) == 1  # the message never waits for its file
        attachment = (await db.scalars(select(Attachment))).one()
        assert attachment.storage_key is None and attachment.download_error is None
        job = Job(f"{DOWNLOAD_ATTACHMENT.name}:{attachment.id}", redis, _queue_name=Queue.INBOUND)
        assert await job.status() in (JobStatus.deferred, JobStatus.queued)  # to be tried again

        with s3_server_on(port, check_signatures=False) as server:
            server.client().create_bucket(Bucket=bucket)
            await connected.process()
            await db.refresh(attachment)
            assert attachment.storage_key and attachment.download_error is None
            stored = server.client().get_object(Bucket=bucket, Key=f"inbox/{attachment.storage_key}")
            assert stored["Body"].read() == await _download(cdn_url)
            path = await _media_path(settings, attachment)
            async for client in _asgi_client(create_messaging_app(settings)):
                assert (await client.get(path)).status_code == 200

        async for client in _asgi_client(create_messaging_app(settings)):  # the bucket is down again
            unreachable = await client.get(path)
        assert unreachable.status_code == 503
        assert "attachment store unreachable" in unreachable.json()["error"]
    assert await db.scalar(select(func.count()).select_from(DeadLetter)) == 0
    assert len(await connected.messages()) == 1
