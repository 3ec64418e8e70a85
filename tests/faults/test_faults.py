"""With signed webhooks in flight and replies going out, break the system and check that every
acknowledged event is stored exactly once, every reply is sent exactly once, and nothing is stuck.
Select with `-m fault`."""

import asyncio

import httpx
import pytest

from tests.faults.conftest import System
from tests.support import eventually

pytestmark = pytest.mark.fault
EVENTS, RATE = 120, 60.0


async def _traffic(system: System, prefix: str) -> None:
    await system.stream(EVENTS, rate=RATE, prefix=prefix)


async def _replies(system: System, count: int, prefix: str) -> None:
    await asyncio.sleep(0.5)  # the first DM has opened a conversation
    for i in range(count):
        await system.reply(f"{prefix} reply {i}")
        await asyncio.sleep(0.1)


async def _supervise(system: System) -> None:
    """What docker-compose's `restart: unless-stopped` does: start a worker again when it exits."""
    while True:
        for name in ("inbound_worker", "outbound_worker"):
            service = system.stack.services[name]
            if service.process is not None and service.process.poll() is not None:
                system.faults.append(f"{name} exited; restarted")
                service.start()
        await asyncio.sleep(0.2)


async def _with_fault(system: System, prefix: str, fault: object) -> dict[str, int]:
    supervisor = asyncio.create_task(_supervise(system))
    traffic = asyncio.create_task(_traffic(system, prefix))
    replies = asyncio.create_task(_replies(system, 6, prefix))
    await asyncio.sleep(0.8)
    await fault()  # type: ignore[operator]
    await asyncio.gather(traffic, replies)
    try:
        report = await system.settled()
    finally:
        supervisor.cancel()
    assert report["lost"] == 0 and report["duplicated"] == 0
    return report


async def test_kill_9_a_messaging_worker_and_restart_it(system: System) -> None:
    async def fault() -> None:
        for name in ("inbound_worker", "outbound_worker"):
            process = system.stack.services[name].process
            assert process is not None
            process.kill()  # SIGKILL: no cleanup; the supervisor starts it again
            system.faults.append(f"kill -9 {name}")

    await _with_fault(system, "kill", fault)


async def test_restart_redis(system: System) -> None:
    async def fault() -> None:
        system.stack.redis.restart()
        system.faults.append("restart redis")

    await _with_fault(system, "redis", fault)


async def test_restart_postgres(system: System) -> None:
    async def fault() -> None:
        system.stack.postgres.restart()
        system.faults.append("restart postgres")

    await _with_fault(system, "postgres", fault)


async def test_sandbox_errors_and_timeouts(system: System) -> None:
    async def fault() -> None:
        await system.sandbox.fault("/messages$", times=3, status=500, body="<html>Internal error</html>")
        await system.sandbox.fault(
            "/messages$", times=2, hang_seconds=1.5
        )  # longer than GRAPH_TIMEOUT_SECONDS
        await system.sandbox.fault("/messages$", times=2, error={"code": 2, "message": "Temporary"})
        system.faults.append("Send API: 3 x 500, 2 x timeout, 2 x code 2")

    await _with_fault(system, "meta", fault)


async def test_a_reply_posted_while_redis_is_down_is_answered_and_sent_once_it_is_back(
    system: System,
) -> None:
    supervisor = asyncio.create_task(_supervise(system))
    try:
        await system.stream(1, rate=10, prefix="down")
        async with httpx.AsyncClient(base_url=system.stack.url("messaging"), timeout=10) as client:
            conversations = f"/api/v1/accounts/{system.account_id}/conversations"

            async def listed() -> list[dict[str, object]]:
                answer = await client.get(conversations, headers=system.headers)
                return answer.json()["data"]["payload"] if answer.status_code == 200 else []

            [conversation] = await eventually(listed)
            system.stack.redis.stop()
            system.faults.append("stop redis")
            try:
                answer = await client.post(
                    f"{conversations}/{conversation['id']}/messages",
                    json={"content": "written while Redis was down"},
                    headers=system.headers,
                )
            finally:
                system.stack.redis.start()
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "progress"
        system.replies.append("written while Redis was down")
        report = await system.settled()
    finally:
        supervisor.cancel()
    assert report["lost"] == 0 and report["duplicated"] == 0
