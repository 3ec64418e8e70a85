"""Uploaded attachments kept in an S3-compatible bucket (moto's server over real HTTP), fetched by
the sandbox (as Meta does) from their stable URL when the reply is sent."""

import hashlib

import httpx
import pytest
from sqlalchemy import func, select

from services.messaging.main import create_messaging_app
from shared.models import Attachment, Message
from shared.settings import Settings
from tests.conftest import S3Server, _asgi_client, configured
from tests.outbound.conftest import Chat
from tests.support import free_port, serve_in_thread

IMAGE = b"\x89PNG fake image kept in a bucket"


async def _reply_with_image(api: httpx.AsyncClient, chat: Chat) -> httpx.Response:
    return await api.post(
        chat.messages_url,
        data={"content": "See photo"},
        files={"attachments[]": ("photo.png", IMAGE, "image/png")},
        headers=chat.headers,
    )


async def test_an_uploaded_attachment_is_kept_in_the_bucket_and_fetched_from_its_url_when_sent(
    chat: Chat, s3: Settings, s3_server: S3Server
) -> None:
    port = free_port()
    # The API serves the media URLs over real HTTP, where the sandbox fetches them.
    with (
        configured(PUBLIC_MEDIA_URL=f"http://127.0.0.1:{port}") as settings,
        serve_in_thread(create_messaging_app(settings), port) as api_url,
    ):
        async with httpx.AsyncClient(base_url=api_url) as api:
            answer = await _reply_with_image(api, chat)
        assert answer.status_code == 200, answer.text
        [attachment] = answer.json()["attachments"]
        assert attachment["data_url"].startswith(f"{api_url}/media/{attachment['id']}/")
        row = await chat.db.get(Attachment, attachment["id"])
        assert row is not None and row.storage_key
        stored = s3_server.client().get_object(Bucket=settings.S3_BUCKET, Key=f"inbox/{row.storage_key}")
        assert (stored["Body"].read(), stored["ContentType"]) == (IMAGE, "image/png")

        await chat.send_all()

    sent = await chat.sandbox.sent()
    assert [s["body"]["message"].get("text") for s in sent] == ["See photo", None]
    assert sent[1]["body"]["message"]["attachment"]["payload"]["url"] == attachment["data_url"]
    assert sent[1]["fetched"] == [
        {
            "url": attachment["data_url"],
            "status": 200,
            "content_type": "image/png",
            "size": len(IMAGE),
            "sha256": hashlib.sha256(IMAGE).hexdigest(),
        }
    ]
    assert (await chat.message(answer.json()["id"])).status == "sent"


async def test_an_upload_while_the_bucket_is_down_is_refused_and_nothing_is_kept(chat: Chat) -> None:
    down = S3Server(f"http://127.0.0.1:{free_port()}", "testing", "testing")
    before = await chat.db.scalar(select(func.count()).select_from(Message))
    with configured(**down.environment("attachments")) as settings:
        async for api in _asgi_client(create_messaging_app(settings)):
            answer = await _reply_with_image(api, chat)
    assert answer.status_code == 503
    assert "attachment store unreachable" in answer.json()["error"]
    assert await chat.db.scalar(select(func.count()).select_from(Message)) == before
    assert await chat.db.scalar(select(func.count()).select_from(Attachment)) == 0
    await chat.send_all()
    assert await chat.sandbox.sent() == []


async def test_an_upload_the_bucket_refuses_answers_502_without_revealing_the_secret(
    chat: Chat, s3_server: S3Server
) -> None:
    wrong = S3Server(s3_server.url, s3_server.access_key_id, "not-the-secret-access-key")
    with configured(**wrong.environment(s3_server.new_bucket())) as settings:
        async for api in _asgi_client(create_messaging_app(settings)):
            answer = await _reply_with_image(api, chat)
    assert answer.status_code == 502
    assert answer.json()["error"].endswith("answered 403 SignatureDoesNotMatch")
    assert "not-the-secret-access-key" not in answer.text
    assert await chat.db.scalar(select(func.count()).select_from(Attachment)) == 0


def test_a_bucket_needs_its_keys() -> None:
    with pytest.raises(ValueError, match="S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are required"):
        Settings(S3_BUCKET="attachments", S3_ACCESS_KEY_ID="", S3_SECRET_ACCESS_KEY="")
