from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox import events
from sandbox.client import SandboxAdmin
from services.messaging.worker import WorkerSettings
from shared.models import Account, Conversation, Inbox, Message
from tests.conftest import SANDBOX_APP_SECRET, Factory
from tests.support import run_worker

ACME, JANE, OMAR = "17841400000000001", "1190000000000001", "1190000000000002"


@dataclass
class Connected:
    account: Account
    inbox: Inbox
    token: str
    webhooks: httpx.AsyncClient
    db: AsyncSession

    async def deliver(self, *items: dict[str, Any], business: str = ACME) -> None:
        """A signed delivery of these events to the webhooks service (acknowledged with 200)."""
        body = events.encode(events.envelope(events.entry(business, *items)))
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": events.sign(body, SANDBOX_APP_SECRET),
        }
        answer = await self.webhooks.post("/webhooks/instagram", content=body, headers=headers)
        assert answer.status_code == 200, answer.text

    async def process(self) -> None:
        await run_worker(WorkerSettings)
        self.db.expire_all()

    async def messages(self) -> list[Message]:
        return list(await self.db.scalars(select(Message).order_by(Message.created_at, Message.id)))

    async def conversations(self) -> list[Conversation]:
        return list(await self.db.scalars(select(Conversation).order_by(Conversation.display_id)))


@pytest.fixture
async def connected(
    factory: Factory, sandbox: SandboxAdmin, webhooks_client: httpx.AsyncClient, db: AsyncSession
) -> Connected:
    account = await factory.account()
    token = await sandbox.token()
    inbox = await factory.inbox(account, access_token=token)
    return Connected(account, inbox, token, webhooks_client, db)
