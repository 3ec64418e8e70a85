from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox.client import JANE, SandboxAdmin
from services.messaging.worker import OutboundWorkerSettings, WorkerSettings
from shared.models import Inbox, Message
from tests.conftest import Factory
from tests.support import run_worker


@dataclass
class Chat:
    """A customer's DM received for real (sandbox → webhooks service → inbound worker)."""

    account_id: int
    inbox: Inbox
    headers: dict[str, str]
    display_id: int
    api: httpx.AsyncClient
    sandbox: SandboxAdmin
    db: AsyncSession

    @property
    def messages_url(self) -> str:
        return f"/api/v1/accounts/{self.account_id}/conversations/{self.display_id}/messages"

    async def reply(self, content: str | None = "Yes, it ships today.", **body: Any) -> dict[str, Any]:
        answer = await self.api.post(
            self.messages_url, json={"content": content, **body}, headers=self.headers
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def send_all(self) -> None:
        await run_worker(OutboundWorkerSettings)
        self.db.expire_all()

    async def message(self, message_id: int) -> Message:
        found = await self.db.scalar(
            select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
        )
        assert found is not None
        return found


@pytest.fixture
async def chat(
    factory: Factory,
    sandbox: SandboxAdmin,
    webhooks_server: str,
    messaging_client: httpx.AsyncClient,
    db: AsyncSession,
) -> Chat:
    account = await factory.account()
    inbox = await factory.inbox(account, access_token=await sandbox.token())
    await sandbox.dm("Hi, is this in stock?", customer=JANE)
    await run_worker(WorkerSettings)
    listed = await messaging_client.get(
        f"/api/v1/accounts/{account.id}/conversations", headers=await factory.headers(account)
    )
    display_id = listed.json()["data"]["payload"][0]["id"]
    return Chat(account.id, inbox, await factory.headers(account), display_id, messaging_client, sandbox, db)
