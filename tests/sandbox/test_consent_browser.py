"""A real headless Chromium presses Allow on the sandbox's consent page and lands on our callback."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox.client import SandboxAdmin
from services.auth.main import app as auth_app
from shared.models import Inbox
from tests.conftest import Factory
from tests.support import serve_in_thread

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def _ensure_chromium() -> str:
    """Debian's Chromium, installed on demand where we can (root with apt-get)."""
    if not os.path.exists(CHROMIUM) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, check=False)
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium: install Debian's chromium package to run the browser test")
    return CHROMIUM


@pytest.fixture(scope="module")
def auth_url() -> Iterator[str]:
    """The auth service over real HTTP (the browser only needs the sandbox; the test follows the redirect)."""
    from tests.support import free_port

    with serve_in_thread(auth_app, free_port()) as url:
        yield url


async def test_allow_in_a_real_browser_connects_the_account(
    auth_url: str, sandbox: SandboxAdmin, factory: Factory, db: AsyncSession
) -> None:
    from playwright.async_api import async_playwright

    executable = _ensure_chromium()
    account = await factory.account()
    headers = await factory.headers(account)
    async with httpx.AsyncClient(base_url=auth_url) as client:
        consent_url = (
            await client.post(f"/api/v1/accounts/{account.id}/instagram/authorization", headers=headers)
        ).json()["url"]

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        page = await browser.new_page()
        await page.goto(consent_url)
        assert "@acme_shop" in await page.content()
        # FRONTEND_URL (frontend.test) is not served in tests: catch the browser's request to it.
        async with page.expect_request(lambda request: "/instagram/callback" in request.url) as redirected:
            await page.click("#allow")
        callbacks = [(await redirected.value).url]
        await browser.close()

    assert callbacks, "the browser was not sent back to the redirect URI"
    callback = urlsplit(callbacks[0])
    assert callback.path == "/instagram/callback" and "code" in parse_qs(callback.query)
    async with httpx.AsyncClient(base_url=auth_url) as client:
        landed = await client.get(f"/instagram/callback?{callback.query}")
    assert landed.status_code == 302 and landed.headers["location"].endswith("/agents")
    assert await db.scalar(select(func.count()).select_from(Inbox)) == 1
