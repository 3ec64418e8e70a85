"""Concurrent deliveries share their Redis round trip, and still each get their own answer."""

import asyncio
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.jobs import deserialize_job
from prometheus_client import REGISTRY

from sandbox import events
from services.webhooks.batcher import EnqueueBatcher
from services.webhooks.main import create_webhooks_app
from shared.queue import PROCESS_EVENT, Job, enqueue_many
from shared.settings import Settings, get_settings
from tests.conftest import REDIS_DB, _asgi_client
from tests.support import TcpProxy, eventually
from tests.webhooks.test_ingest import ACME, JANE, URL, queued_jobs, signed

ROUND_TRIPS = "instagram_webhook_enqueue_round_trips_total"


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def delivery(*mids: str, secret: str | None = None) -> tuple[bytes, dict[str, str]]:
    payload = events.envelope(
        events.entry(ACME, *(events.text(JANE, ACME, text="hi", mid=mid) for mid in mids))
    )
    return signed(payload) if secret is None else signed(payload, secret)


def job(key: str) -> tuple[Job, str, dict[str, Any]]:
    return (PROCESS_EVENT, key, {"event": {"key": key}})


async def test_concurrent_callers_share_one_round_trip_and_get_their_own_flags(redis: ArqRedis) -> None:
    assert await enqueue_many(redis, [job("a")]) == [True]
    batcher = EnqueueBatcher(redis)
    before = counter(ROUND_TRIPS)

    try:
        answers = await asyncio.gather(
            batcher.enqueue_many([job("a"), job("b")]),
            batcher.enqueue_many([job("b"), job("c")]),
            batcher.enqueue_many([]),
            batcher.enqueue_many([job("d")]),
            batcher.enqueue_many([job("c"), job("e"), job("a")]),
        )
    finally:
        await batcher.aclose()

    assert answers == [[False, True], [False, True], [], [True], [False, True, False]]
    assert counter(ROUND_TRIPS) - before == 1
    assert await queued_jobs(redis) == [f"process_event:{key}" for key in "abcde"]
    stored = deserialize_job(await redis.get("arq:job:process_event:e"))
    assert (stored.function, stored.args, stored.kwargs) == ("process_event", (), {"event": {"key": "e"}})


async def test_many_concurrent_deliveries_each_get_their_own_answer(
    webhooks_client: httpx.AsyncClient, redis: ArqRedis
) -> None:
    fresh = [delivery(f"m{i}") for i in range(20)]
    forged = delivery("forged", secret="not-the-secret")
    pair = delivery("pair0", "pair1")
    assert (await webhooks_client.post(URL, content=fresh[0][0], headers=fresh[0][1])).status_code == 200
    deliveries = [
        *fresh,
        *fresh[:10],
        *[forged] * 5,
        *[(b"not json", signed(b"not json")[1])] * 5,
        pair,
        pair,
    ]
    counts = {
        name: counter(name)
        for name in ("instagram_webhook_events_enqueued_total", "instagram_webhook_events_duplicate_total")
    }

    answers = await asyncio.gather(
        *(webhooks_client.post(URL, content=body, headers=headers) for body, headers in deliveries)
    )

    assert [a.status_code for a in answers] == [200] * 30 + [401] * 5 + [400] * 5 + [200] * 2
    assert {a.text for a in answers[:30]} == {"EVENT_RECEIVED"}
    assert await queued_jobs(redis) == sorted(
        [f"process_event:{ACME}:message:m{i}" for i in range(20)]
        + [f"process_event:{ACME}:message:pair{i}" for i in range(2)]
    )
    # 21 new events (m1..m19 and pair0/1); m0 was queued before, m0..m9 and the second pair repeat
    assert (
        counter("instagram_webhook_events_enqueued_total") - counts["instagram_webhook_events_enqueued_total"]
        == 21
    )
    assert (
        counter("instagram_webhook_events_duplicate_total")
        - counts["instagram_webhook_events_duplicate_total"]
        == 13
    )


async def test_a_redis_failure_during_a_coalesced_flush_answers_503_to_that_batch_and_a_redelivery_enqueues_it(
    redis: ArqRedis,
) -> None:
    deliveries = [delivery(f"cut{i}") for i in range(8)]
    redis_port = int(get_settings().REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(redis_port) as proxy:
        settings = Settings(
            **{**get_settings().model_dump(), "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"}
        )
        async for client in _asgi_client(create_webhooks_app(settings)):
            warm = delivery("warm")
            assert (await client.post(URL, content=warm[0], headers=warm[1])).status_code == 200
            proxy.hold()

            posts = [
                asyncio.create_task(client.post(URL, content=body, headers=headers))
                for body, headers in deliveries
            ]

            async def all_sent() -> bool:
                return all(f"cut{i}".encode() in proxy.held for i in range(8))

            await eventually(all_sent)  # one EVAL carries all eight deliveries' jobs; Redis never sees it
            assert proxy.held.count(b"EVAL") == 1
            proxy.cut()
            answers = await asyncio.gather(*posts)

            assert [(a.status_code, a.json()) for a in answers] == [
                (503, {"error": "queue unavailable, retry later"})
            ] * 8
            assert await queued_jobs(redis) == [f"process_event:{ACME}:message:warm"]

            proxy.restore()
            redelivered = await asyncio.gather(
                *(client.post(URL, content=body, headers=headers) for body, headers in deliveries)
            )
            assert [a.status_code for a in redelivered] == [200] * 8
            assert len(await queued_jobs(redis)) == 9
