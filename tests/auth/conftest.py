from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.client import SandboxAdmin
from shared.models import Account, Role
from tests.conftest import Factory

REDIRECT_URI = "http://frontend.test/instagram/callback"


class Login:
    """Drives Business Login the way a browser would."""

    def __init__(self, auth: httpx.AsyncClient, sandbox: SandboxAdmin, sandbox_url: str) -> None:
        self.auth, self.sandbox, self.sandbox_url = auth, sandbox, sandbox_url

    async def start(self, account: Account, headers: dict[str, str]) -> dict[str, list[str]]:
        answer = await self.auth.post(
            f"/api/v1/accounts/{account.id}/instagram/authorization", headers=headers
        )
        assert answer.status_code == 200, answer.text
        return parse_qs(urlsplit(answer.json()["url"]).query)

    async def callback(self, **params: str) -> httpx.Response:
        return await self.auth.get("/instagram/callback", params=params)

    async def connect(
        self, account: Account, headers: dict[str, str], *, business: str = "17841400000000001"
    ) -> httpx.Response:
        state = (await self.start(account, headers))["state"][0]
        code = await self.sandbox.code(REDIRECT_URI, business=business)
        return await self.callback(code=code, state=state)


@pytest.fixture
async def login(
    auth_client: httpx.AsyncClient, sandbox: SandboxAdmin, sandbox_url: str
) -> AsyncIterator[Login]:
    yield Login(auth_client, sandbox, sandbox_url)


@pytest.fixture
async def admin(factory: Factory) -> tuple[Account, dict[str, str]]:
    account = await factory.account()
    return account, await factory.headers(account, role=Role.ADMINISTRATOR)
