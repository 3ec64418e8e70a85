"""The real system as separate processes on private Postgres and Redis, for breaking things.

Timeouts are short so that a killed worker's jobs run again within seconds (arq re-runs a job
whose worker vanished once its in-progress mark expires: job timeout + 10 s).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sandbox import events
from sandbox.client import SandboxAdmin
from shared.models import Message
from tools.stack import Stack, running_stack, seed_connected_account

ACME = "17841400000000001"
CUSTOMERS = ["1190000000000001", "1190000000000002", "1190000000000003"]
PROCESSES = ("sandbox", "webhooks", "messaging", "inbound_worker", "outbound_worker")
FAULT_ENV = {
    "JOB_TIMEOUT_SECONDS": "2",
    "RETRY_BASE_SECONDS": "0.05",
    "GRAPH_TIMEOUT_SECONDS": "1",
    "SANDBOX_WEBHOOK_RETRIES": "8",
    "LOG_LEVEL": "WARNING",
    # A reply stored while Redis was away is sent by the recovery sweep within seconds.
    "REPLY_RECOVERY_INTERVAL_SECONDS": "2",
    "REPLY_RECOVERY_GRACE_SECONDS": "2",
}


@dataclass
class System:
    stack: Stack
    engine: AsyncEngine
    sandbox: SandboxAdmin
    account_id: int
    headers: dict[str, str]
    acked: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    async def stream(self, count: int, *, rate: float, prefix: str) -> None:
        """Signed DMs at `rate` per second, each redelivered until acknowledged, as Meta does."""
        async with httpx.AsyncClient(base_url=self.stack.url("webhooks"), timeout=5) as client:

            async def deliver(index: int) -> None:
                mid = f"{prefix}-{index}"
                item = events.text(CUSTOMERS[index % len(CUSTOMERS)], ACME, text=f"event {mid}", mid=mid)
                body = events.encode(events.envelope(events.entry(ACME, item)))
                headers = {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": events.sign(body, "sandbox-app-secret"),
                }
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if (
                            await client.post("/webhooks/instagram", content=body, headers=headers)
                        ).status_code == 200:
                            self.acked.append(mid)
                            return
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2)

            tasks = []
            for index in range(count):
                tasks.append(asyncio.create_task(deliver(index)))
                await asyncio.sleep(1 / rate)
            await asyncio.gather(*tasks)

    async def reply(self, text: str) -> None:
        """An agent's reply through the API, retried while the API cannot answer."""
        async with httpx.AsyncClient(base_url=self.stack.url("messaging"), timeout=5) as client:
            for _ in range(300):
                try:
                    listed = await client.get(
                        f"/api/v1/accounts/{self.account_id}/conversations", headers=self.headers
                    )
                    conversations = listed.json()["data"]["payload"] if listed.status_code == 200 else []
                    if conversations:
                        url = f"/api/v1/accounts/{self.account_id}/conversations/{conversations[0]['id']}/messages"
                        if (
                            await client.post(url, json={"content": text}, headers=self.headers)
                        ).status_code == 200:
                            self.replies.append(text)
                            return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            raise AssertionError(f"the API never accepted the reply {text!r}")

    async def settled(self, timeout: float = 60) -> dict[str, int]:
        """Wait until every acknowledged event is stored and every reply is sent; then check once-ness."""
        deadline = time.monotonic() + timeout
        while True:
            stored, sent, pending = await self._counts()
            if stored == len(set(self.acked)) and sent == len(self.replies) and pending == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled: stored {stored}/{len(set(self.acked))}, sent {sent}/{len(self.replies)}, pending {pending}; "
                    f"replies not sent: {await self._unsent()}"
                )
            await asyncio.sleep(0.25)
        sent_texts = [s["body"]["message"]["text"] for s in await self.sandbox.sent()]
        duplicated = [t for t in set(sent_texts) if sent_texts.count(t) > 1]
        assert not duplicated, f"replies sent more than once: {duplicated}"
        assert sorted(t for t in sent_texts if t in self.replies) == sorted(self.replies)
        report = {
            "events": len(set(self.acked)),
            "replies": len(self.replies),
            "faults": len(self.faults),
            "lost": len(set(self.acked)) - stored,
            "duplicated": len(duplicated),
        }
        print(f"\nfault report {self.faults}: {report}")
        return report

    async def _unsent(self) -> list[tuple[object, ...]]:
        """(content, status, content_attributes) of every reply not sent, to say why."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(Message.content, Message.status, Message.content_attributes).where(
                    Message.message_type == 1, Message.status != "sent"
                )
            )
            return [tuple(row) for row in rows]

    async def _counts(self) -> tuple[int, int, int]:
        async with self.engine.connect() as connection:
            stored = await connection.scalar(
                select(func.count()).select_from(Message).where(Message.source_id.in_(set(self.acked)))
            )
            sent = await connection.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.message_type == 1, Message.status == "sent", Message.content.in_(self.replies))
            )
            pending = await connection.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.message_type == 1, Message.status == "progress")
            )
        return int(stored or 0), int(sent or 0), int(pending or 0)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(webhooks_workers=1, extra_env=FAULT_ENV) as stack:
        for name in PROCESSES:
            stack.start(name)
        yield stack


@pytest.fixture
async def system(stack: Stack) -> AsyncIterator[System]:
    """A fresh account with a connected inbox and an administrator, in the stack's database."""
    sandbox = SandboxAdmin(stack.url("sandbox"))
    await sandbox.reset()
    for customer in CUSTOMERS:
        await sandbox.last_message(customer)  # the messaging window is open
    account_id, api_token = await seed_connected_account(stack.postgres.url, await sandbox.token())
    engine = create_async_engine(stack.postgres.url, pool_pre_ping=True)
    system = System(stack, engine, sandbox, account_id, {"api_access_token": api_token})
    yield system
    await sandbox.aclose()
    await engine.dispose()
