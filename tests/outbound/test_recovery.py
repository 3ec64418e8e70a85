"""Replies stranded in `progress` without a send job: the API answers them as stored, and the
outbound worker's recovery sweep sends each exactly once, never a reply whose outcome is unknown."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.messaging.main import create_messaging_app
from services.messaging.outbound import recovery
from services.messaging.worker import OutboundWorkerSettings
from shared.db import create_sessionmaker
from shared.models import DeadLetter
from shared.queue import SEND_MESSAGE, Queue, job_id
from shared.settings import Settings, get_settings
from tests.conftest import _asgi_client
from tests.outbound.conftest import Chat
from tests.support import eventually, free_port, inboxctl, run_worker

GRACE = get_settings().REPLY_RECOVERY_GRACE_SECONDS


@pytest.fixture
async def api_without_redis() -> AsyncIterator[httpx.AsyncClient]:
    """The messaging API with its REDIS_URL on a closed port: every enqueue fails."""
    closed = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(**{**get_settings().model_dump(), "REDIS_URL": closed})
    async for client in _asgi_client(create_messaging_app(settings)):
        yield client


async def reply_without_redis(chat: Chat, api: httpx.AsyncClient, content: str) -> dict[str, Any]:
    answer = await api.post(chat.messages_url, json={"content": content}, headers=chat.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def age(chat: Chat, *replies: dict[str, Any], seconds: float = 2 * GRACE) -> None:
    """Written `seconds` ago: beyond the grace period of the sweep."""
    await chat.db.execute(
        text("UPDATE messages SET created_at = created_at - make_interval(secs => :s) WHERE id = ANY(:ids)"),
        {"s": seconds, "ids": [r["id"] for r in replies]},
    )
    await chat.db.commit()


async def sweep(engine: AsyncEngine, redis: ArqRedis) -> recovery.RecoveryReport:
    return await recovery.sweep(create_sessionmaker(engine), redis, grace_seconds=GRACE)


async def send_without_cron() -> None:
    """The outbound worker, without its cron schedule: only the sweeps a test runs itself happen."""
    await run_worker(OutboundWorkerSettings, cron_jobs=[])


async def has_job(redis: ArqRedis, reply: dict[str, Any]) -> bool:
    return bool(await redis.exists(f"arq:job:{job_id(SEND_MESSAGE, str(reply['id']))}"))


async def sent_texts(chat: Chat) -> list[str]:
    return [s["body"]["message"]["text"] for s in await chat.sandbox.sent()]


async def test_a_reply_posted_while_redis_is_down_is_answered_then_recovered_and_sent_once(
    chat: Chat, api_without_redis: httpx.AsyncClient, redis: ArqRedis
) -> None:
    reply = await reply_without_redis(chat, api_without_redis, "sent after Redis came back")
    assert (reply["status"], reply["source_id"], reply["content"]) == (
        "progress",
        None,
        "sent after Redis came back",
    )
    assert not await has_job(redis, reply)
    assert (await chat.message(reply["id"])).status == "progress"

    await age(chat, reply)
    # The outbound worker runs the sweep as its cron job would, then the send it enqueued.
    await redis.enqueue_job("recover_replies", _queue_name=Queue.OUTBOUND.value)
    await chat.send_all()
    assert await sent_texts(chat) == ["sent after Redis came back"]
    message = await chat.message(reply["id"])
    assert message.status == "sent" and message.source_id == (await chat.sandbox.sent())[0]["mid"]
    assert message.content_attributes["send_recoveries"] == 1

    await redis.enqueue_job("recover_replies", _queue_name=Queue.OUTBOUND.value)
    await chat.send_all()  # a second sweep finds nothing left to send
    assert await sent_texts(chat) == ["sent after Redis came back"]


async def test_inboxctl_replies_recover_runs_the_sweep_now(
    chat: Chat, api_without_redis: httpx.AsyncClient, redis: ArqRedis
) -> None:
    reply = await reply_without_redis(chat, api_without_redis, "recovered by an operator")
    await age(chat, reply)
    ran = await asyncio.to_thread(inboxctl, "replies", "recover")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "enqueued 1, left to their queued or running job 0, given up 0"
    assert await has_job(redis, reply)
    await send_without_cron()
    assert await sent_texts(chat) == ["recovered by an operator"]


async def test_a_fresh_reply_within_the_grace_period_is_left_alone(
    chat: Chat, api_without_redis: httpx.AsyncClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    reply = await reply_without_redis(chat, api_without_redis, "just written")
    await age(chat, reply, seconds=GRACE / 2)
    assert await sweep(engine, redis) == recovery.RecoveryReport()
    assert not await has_job(redis, reply)
    message = await chat.message(reply["id"])
    assert message.status == "progress" and "send_recoveries" not in message.content_attributes
    await send_without_cron()
    assert await chat.sandbox.sent() == []


async def test_a_reply_whose_job_is_still_queued_is_not_enqueued_twice(
    chat: Chat, engine: AsyncEngine, redis: ArqRedis
) -> None:
    reply = await chat.reply("queued before the sweep")
    await age(chat, reply)
    assert await sweep(engine, redis) == recovery.RecoveryReport(waiting=1)
    assert await redis.zcard(Queue.OUTBOUND.value) == 1
    assert "send_recoveries" not in (await chat.message(reply["id"])).content_attributes
    await send_without_cron()
    assert await sent_texts(chat) == ["queued before the sweep"]


async def test_stranded_replies_go_out_once_in_order_with_sweeps_running_at_once(
    chat: Chat, api_without_redis: httpx.AsyncClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    stranded = [await reply_without_redis(chat, api_without_redis, f"stranded {i}") for i in range(3)]
    queued = await chat.reply("queued last")
    await age(chat, *stranded, queued)

    reports = await asyncio.gather(*(sweep(engine, redis) for _ in range(3)))
    assert sum(r.enqueued for r in reports) == 3 and sum(r.given_up for r in reports) == 0
    assert await redis.zcard(Queue.OUTBOUND.value) == 4  # one job per reply
    for reply in stranded:
        assert (await chat.message(reply["id"])).content_attributes["send_recoveries"] == 1

    await asyncio.gather(send_without_cron(), send_without_cron())
    assert await sent_texts(chat) == ["stranded 0", "stranded 1", "stranded 2", "queued last"]
    chat.db.expire_all()
    assert {(await chat.message(r["id"])).status for r in [*stranded, queued]} == {"sent"}


async def test_an_outcome_unknown_reply_is_never_resent(
    chat: Chat, engine: AsyncEngine, redis: ArqRedis
) -> None:
    await chat.sandbox.fault("/messages$", times=1, hang_seconds=4)  # longer than GRAPH_TIMEOUT_SECONDS (3 s)
    reply = await chat.reply("did it go?")
    await send_without_cron()
    message = await chat.message(reply["id"])
    assert message.status == "progress" and message.content_attributes["outcome_unknown"] is True

    # The hung request is logged once it is answered; Instagram did send the reply.
    await eventually(lambda: chat.sandbox.requests("/messages"))

    await age(chat, reply)
    assert await sweep(engine, redis) == recovery.RecoveryReport()
    await send_without_cron()
    assert len(await chat.sandbox.requests("/messages")) == 1
    assert await sent_texts(chat) == ["did it go?"]
    message = await chat.message(reply["id"])
    assert message.status == "progress" and "send_recoveries" not in message.content_attributes


async def test_a_reply_whose_job_finished_without_sending_it_is_started_again_then_given_up(
    chat: Chat, engine: AsyncEngine, redis: ArqRedis
) -> None:
    """A job that fails for good (here: a token that cannot be decrypted) is parked in the dead
    letters and keeps its result, which would block its id; the sweep starts it again, a few times."""
    token = await chat.db.scalar(text("SELECT access_token FROM channel_instagram"))
    corrupt = text("UPDATE channel_instagram SET access_token = 'not-a-fernet-token'")
    await chat.db.execute(corrupt)
    await chat.db.commit()
    first = await chat.reply("first")
    await send_without_cron()
    assert await chat.db.scalar(select(func.count()).select_from(DeadLetter)) == 1
    assert (await chat.message(first["id"])).status == "progress"
    assert await redis.exists(f"arq:result:{job_id(SEND_MESSAGE, str(first['id']))}")

    await chat.db.execute(text("UPDATE channel_instagram SET access_token = :token"), {"token": token})
    await chat.db.commit()
    await age(chat, first)
    assert await sweep(engine, redis) == recovery.RecoveryReport(enqueued=1)
    await send_without_cron()  # its job runs again and finds the token readable
    assert await sent_texts(chat) == ["first"]
    assert (await chat.message(first["id"])).content_attributes["send_recoveries"] == 1

    await chat.db.execute(corrupt)  # now a reply whose job keeps failing
    await chat.db.commit()
    second = await chat.reply("second")
    await send_without_cron()
    await age(chat, second)
    for _ in range(recovery.RECOVERY_LIMIT):
        assert await sweep(engine, redis) == recovery.RecoveryReport(enqueued=1)
        await send_without_cron()
    assert await sweep(engine, redis) == recovery.RecoveryReport(given_up=1)
    message = await chat.message(second["id"])
    assert message.status == "failed" and "send job stopped" in message.content_attributes["external_error"]
    assert await chat.db.scalar(select(func.count()).select_from(DeadLetter)) == 2 + recovery.RECOVERY_LIMIT
    assert await sweep(engine, redis) == recovery.RecoveryReport()
    assert await sent_texts(chat) == ["first"]
