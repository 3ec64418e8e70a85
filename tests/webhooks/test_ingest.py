"""Webhook ingestion: Meta's handshake, signatures, validation, fan-out and idempotent enqueueing."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sandbox import events
from services.webhooks.main import create_webhooks_app
from shared.settings import Settings, get_settings
from tests.conftest import SANDBOX_APP_SECRET, VERIFY_TOKEN, _asgi_client
from tests.support import free_port

ACME, JANE = "17841400000000001", "1190000000000001"
URL = "/webhooks/instagram"


def signed(payload: Any, secret: str = SANDBOX_APP_SECRET) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else events.encode(payload)
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": events.sign(body, secret)}


async def queued_jobs(redis: ArqRedis) -> list[str]:
    return sorted(job.decode() for job in await redis.zrange("inbound", 0, -1))


async def test_verification_handshake(webhooks_client: httpx.AsyncClient) -> None:
    ok = await webhooks_client.get(
        URL, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    )
    assert (ok.status_code, ok.text, ok.headers["content-type"].split(";")[0]) == (
        200,
        "1158201444",
        "text/plain",
    )
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {},
    ):
        assert (await webhooks_client.get(URL, params=params)).status_code == 403


async def test_a_signed_event_is_enqueued_once_with_a_deterministic_id(
    webhooks_client: httpx.AsyncClient, redis: ArqRedis
) -> None:
    item = events.text(JANE, ACME, text="Hi", mid="aWdfZG1fMDAx")
    body, headers = signed(events.envelope(events.entry(ACME, item)))

    answer = await webhooks_client.post(URL, content=body, headers=headers)

    assert (answer.status_code, answer.text) == (200, "EVENT_RECEIVED")
    assert answer.headers["content-type"] == "text/plain; charset=utf-8" and answer.headers["x-request-id"]
    assert await queued_jobs(redis) == [f"process_event:{ACME}:message:aWdfZG1fMDAx"]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda body, headers: (body, {"Content-Type": "application/json"}), "missing"),
        (lambda body, headers: (body, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}), "wrong"),
        (
            lambda body, headers: (
                body,
                {**headers, "X-Hub-Signature-256": headers["X-Hub-Signature-256"][7:]},
            ),
            "malformed",
        ),
        (lambda body, headers: (body.replace(b"Hi", b"Ho"), headers), "body changed after signing"),
        (lambda body, headers: signed(body, "another-apps-secret"), "other secret"),
    ],
)
async def test_bad_signatures_are_401_and_enqueue_nothing(
    webhooks_client: httpx.AsyncClient, redis: ArqRedis, mutate: Any, reason: str
) -> None:
    body, headers = mutate(*signed(events.envelope(events.entry(ACME, events.text(JANE, ACME, text="Hi")))))
    answer = await webhooks_client.post(URL, content=body, headers=headers)
    assert answer.status_code == 401, reason
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "missing or invalid X-Hub-Signature-256"}
    assert await queued_jobs(redis) == []


async def test_oversize_non_json_and_non_instagram_bodies(
    webhooks_client: httpx.AsyncClient, redis: ArqRedis
) -> None:
    big = b'{"object":"instagram","entry":[],"pad":"' + b"x" * get_settings().WEBHOOK_MAX_BODY_BYTES + b'"}'
    assert (await webhooks_client.post(URL, content=big, headers=signed(big)[1])).status_code == 413
    for body in (
        b"not json",
        b'{"object": "page", "entry": []}',
        b"[]",
        b'{"object":"instagram","entry":[{"messaging":[]}]}',
    ):
        answer = await webhooks_client.post(URL, content=body, headers=signed(body)[1])
        assert answer.status_code == 400, body
        assert answer.json()["error"]
    assert await queued_jobs(redis) == []


async def test_a_batch_fans_out_to_one_job_per_event(
    webhooks_client: httpx.AsyncClient, redis: ArqRedis
) -> None:
    payload = events.envelope(
        events.entry(ACME, events.text(JANE, ACME, text="a"), events.read(JANE, ACME, mid="m0")),
        events.entry("17841400000000002", events.text(JANE, "17841400000000002", text="b")),
        events.entry(ACME, events.text(JANE, ACME, text="c"), source="standby"),
        events.postback_change(JANE, ACME),
    )
    answer = await webhooks_client.post(URL, content=signed(payload)[0], headers=signed(payload)[1])
    assert answer.status_code == 200
    assert len(await queued_jobs(redis)) == 5


async def test_redelivery_sequential_and_concurrent_enqueues_each_event_once(
    webhooks_client: httpx.AsyncClient, redis: ArqRedis
) -> None:
    payload = events.envelope(events.entry(ACME, *(events.text(JANE, ACME, text=str(i)) for i in range(3))))
    body, headers = signed(payload)
    for _ in range(3):
        assert (await webhooks_client.post(URL, content=body, headers=headers)).status_code == 200
    answers = await asyncio.gather(
        *(webhooks_client.post(URL, content=body, headers=headers) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {200}
    assert len(await queued_jobs(redis)) == 3
    metrics = (await webhooks_client.get("/metrics")).text
    assert (
        "instagram_webhook_events_duplicate_total" in metrics
        and "instagram_webhook_ack_seconds_bucket" in metrics
    )


async def test_the_delivery_endpoint_is_documented(webhooks_client: httpx.AsyncClient) -> None:
    document = (await webhooks_client.get("/openapi.json")).json()
    assert document["paths"][URL]["post"] == {
        "tags": ["webhooks"],
        "summary": "Receive",
        "operationId": "receive_webhooks_instagram_post",
        "responses": {
            "200": {"description": "Successful Response", "content": {"application/json": {"schema": {}}}},
            "401": {"description": "Unauthorized"},
            "400": {"description": "Bad Request"},
            "413": {"description": "Request Entity Too Large"},
            "503": {"description": "Service Unavailable"},
        },
    }
    assert set(document["paths"][URL]) == {"get", "post"}


async def test_redis_down_is_503_so_meta_redelivers() -> None:
    settings = Settings(**{**get_settings().model_dump(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    body, headers = signed(events.envelope(events.entry(ACME, events.text(JANE, ACME, text="Hi"))))
    async for client in _asgi_client(create_webhooks_app(settings)):
        answer = await client.post(URL, content=body, headers=headers)
        assert answer.status_code == 503
        assert answer.json() == {"error": "queue unavailable, retry later"}


EVERY_KIND = [
    events.text(JANE, ACME, text="Hi"),
    *(
        events.attachment(JANE, ACME, type=kind)
        for kind in (*events.MEDIA_TYPES, *events.SHARE_TYPES, "ephemeral")
    ),
    events.story_reply(JANE, ACME, text="Love it"),
    events.inline_reply(JANE, ACME, text="yes", reply_to_mid="m1"),
    events.quick_reply(JANE, ACME, text="Track", payload="TRACK"),
    events.echo(ACME, JANE, text="sent from the app"),
    events.read(JANE, ACME, mid="m1"),
    events.reaction(JANE, ACME, mid="m1"),
    events.unreaction(JANE, ACME, mid="m1"),
    events.unsend(JANE, ACME, mid="m1"),
    events.edit(JANE, ACME, mid="m1", text="edited"),
    events.unsupported(JANE, ACME),
    events.postback(JANE, ACME),
    events.referral(JANE, ACME),
]


async def test_every_kind_the_sandbox_sends_is_accepted(
    webhooks_client: httpx.AsyncClient, redis: ArqRedis
) -> None:
    for item in EVERY_KIND:
        body, headers = signed(events.envelope(events.entry(ACME, item)))
        assert (await webhooks_client.post(URL, content=body, headers=headers)).status_code == 200, item
    for entry in (events.postback_change(JANE, ACME), events.dashboard_test()):
        body, headers = signed(events.envelope(entry))
        assert (await webhooks_client.post(URL, content=body, headers=headers)).status_code == 200, entry
    assert len(await queued_jobs(redis)) == len(EVERY_KIND) + 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
instagram_like = st.fixed_dictionaries(
    {
        "object": st.just("instagram"),
        "entry": st.lists(
            st.dictionaries(
                st.sampled_from(["id", "time", "messaging", "changes", "standby", "field", "value"]),
                json_values,
                max_size=5,
            ),
            max_size=3,
        ),
    }
)


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | instagram_like.map(lambda v: json.dumps(v).encode()),
    sign=st.booleans(),
)
async def test_arbitrary_input_never_causes_a_server_error(
    webhooks_client: httpx.AsyncClient, body: bytes, sign: bool
) -> None:
    headers = signed(body)[1] if sign else {"Content-Type": "application/json"}
    answer = await webhooks_client.post(URL, content=body, headers=headers)
    assert answer.status_code in (200, 400, 401, 413)
