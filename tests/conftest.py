"""Test environment: a fresh database and Redis database per run, the Meta sandbox over real HTTP.

The environment is fixed here, before any module reads settings: each run (and each xdist
worker) gets its own Postgres database, migrated once with Alembic, and its own Redis
database; after every test all rows are deleted and Redis is flushed.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis as sync_redis
from sqlalchemy import delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from tests.support import free_port, serve_in_thread

RUN_ID = f"{uuid.uuid4().hex[:10]}{os.environ.get('PYTEST_XDIST_WORKER', '')}"
SERVER_URL = make_url(os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
TEST_DATABASE = f"inbox_test_{RUN_ID}"
DATABASE_URL = SERVER_URL.set(database=TEST_DATABASE).render_as_string(hide_password=False)
ADMIN_URL = SERVER_URL.set(database="postgres").render_as_string(hide_password=False)
REDIS_SERVER = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
REDIS_LOCK = f"instagram-inbox:test-db-lock:{RUN_ID}"


def _claim_redis_database() -> int:
    """A Redis database index no concurrent test run is using (1–15; 0 is left to development)."""
    client = sync_redis.Redis.from_url(f"{REDIS_SERVER}/0")
    try:
        for index in range(1, 16):
            if client.set(f"instagram-inbox:test-db:{index}", RUN_ID, nx=True, ex=6 * 3600):
                return index
    finally:
        client.close()
    raise RuntimeError("all Redis databases 1-15 are claimed by other test runs")


REDIS_DB = _claim_redis_database()
SANDBOX_PORT = free_port()
WEBHOOKS_PORT = free_port()
SANDBOX_APP_ID = "990000000000001"
SANDBOX_APP_SECRET = "sandbox-app-secret"
VERIFY_TOKEN = "test-verify-token"

os.environ.update(
    APP_ENV="test",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=f"{REDIS_SERVER}/{REDIS_DB}",
    SECRET_KEY="test-secret-key-for-this-run",
    FRONTEND_URL="http://frontend.test",
    INSTAGRAM_APP_ID=SANDBOX_APP_ID,
    INSTAGRAM_APP_SECRET=SANDBOX_APP_SECRET,
    INSTAGRAM_VERIFY_TOKEN=VERIFY_TOKEN,
    INSTAGRAM_WWW_BASE_URL=f"http://127.0.0.1:{SANDBOX_PORT}",
    INSTAGRAM_API_BASE_URL=f"http://127.0.0.1:{SANDBOX_PORT}",
    INSTAGRAM_GRAPH_BASE_URL=f"http://127.0.0.1:{SANDBOX_PORT}",
    APP_CONFIG_CACHE_SECONDS="0",
    RETRY_BASE_SECONDS="0.01",
    PROFILE_RETRY_SECONDS="0",
    GRAPH_TIMEOUT_SECONDS="3",
    LOG_LEVEL="WARNING",
    WEBHOOK_ALLOW_PRIVATE_ADDRESSES="true",  # test receivers listen on 127.0.0.1
    EVENT_DISPATCH_INTERVAL_SECONDS="0.02",
    EVENT_DELIVERY_TIMEOUT_SECONDS="0.5",
    STORAGE_DIR=tempfile.mkdtemp(prefix="inbox-test-storage-"),
)

from shared.access import PLATFORM_APP_OWNER, USER_OWNER, issue_token  # noqa: E402
from shared.cli import alembic_config  # noqa: E402
from shared.models import (  # noqa: E402
    Account,
    AccountUser,
    ChannelInstagram,
    Inbox,
    PlatformApp,
    Role,
    User,
    metadata,
)
from shared.settings import Settings, get_settings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
async def database() -> AsyncIterator[str]:
    from alembic import command

    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{TEST_DATABASE}"'))
    await asyncio.to_thread(command.upgrade, alembic_config(DATABASE_URL), "heads")
    yield DATABASE_URL
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)'))
    await admin.dispose()
    client = sync_redis.Redis.from_url(f"{REDIS_SERVER}/0")
    client.delete(f"instagram-inbox:test-db:{REDIS_DB}")
    client.close()


@pytest.fixture(scope="session")
def settings(database: str) -> Any:
    return get_settings()


@pytest.fixture(scope="session")
async def engine(database: str) -> AsyncIterator[Any]:
    engine = create_async_engine(DATABASE_URL, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: Any) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture(scope="session")
async def redis(database: str) -> AsyncIterator[Any]:
    from shared.app import create_redis_client

    client = create_redis_client(get_settings())
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def clean_state(engine: Any, redis: Any) -> AsyncIterator[None]:
    """Every test starts from empty tables and an empty Redis database."""
    yield
    async with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(delete(table))
    await redis.flushdb()


# -- Meta sandbox and real HTTP servers --------------------------------------------------


@pytest.fixture(scope="session")
def sandbox_url(database: str) -> Iterator[str]:
    from sandbox.config import SandboxConfig
    from sandbox.main import create_app

    config = SandboxConfig(
        app_id=SANDBOX_APP_ID,
        app_secret=SANDBOX_APP_SECRET,
        webhook_url=f"http://127.0.0.1:{WEBHOOKS_PORT}/webhooks/instagram",
    )
    with serve_in_thread(create_app(config), SANDBOX_PORT) as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[Any]:
    """The sandbox's admin client; the sandbox is reset before and after each test that uses it
    (after: its webhooks still in flight are cancelled before the Redis database is emptied)."""
    from sandbox.client import SandboxAdmin

    admin = SandboxAdmin(sandbox_url)
    await admin.reset()
    yield admin
    await admin.reset()
    await admin.aclose()


@pytest.fixture(scope="session")
def webhooks_server(database: str) -> Iterator[str]:
    """The webhooks service over real HTTP, where the sandbox delivers signed webhooks."""
    from services.webhooks.main import app

    with serve_in_thread(app, WEBHOOKS_PORT) as url:
        yield url


async def _asgi_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    from asgi_lifespan import LifespanManager

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture(scope="session")
async def auth_client(database: str) -> AsyncIterator[httpx.AsyncClient]:
    from services.auth.main import app

    async for client in _asgi_client(app):
        yield client


@pytest.fixture(scope="session")
async def messaging_client(database: str) -> AsyncIterator[httpx.AsyncClient]:
    from services.messaging.main import app

    async for client in _asgi_client(app):
        yield client


@pytest.fixture(scope="session")
async def webhooks_client(database: str) -> AsyncIterator[httpx.AsyncClient]:
    from services.webhooks.main import app

    async for client in _asgi_client(app):
        yield client


# -- an S3-compatible server (moto) over real HTTP ----------------------------------------


@contextmanager
def configured(**environment: str) -> Iterator[Settings]:
    """These environment variables for the test, and the settings they make: workers started
    now read them, as do apps built with the settings returned."""
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


@dataclass
class S3Server:
    url: str
    access_key_id: str
    secret_access_key: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def new_bucket(self) -> str:
        bucket = f"inbox-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def environment(self, bucket: str) -> dict[str, str]:
        """The settings that keep attachments in `bucket` of this server."""
        return {
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": self.url,
            "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": self.access_key_id,
            "S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "S3_KEY_PREFIX": "inbox/",
        }


@contextmanager
def s3_server_on(port: int, *, check_signatures: bool = True) -> Iterator[S3Server]:
    """moto's S3 server as a separate process. With `check_signatures`, it knows one IAM user
    allowed s3:* and refuses any request not signed with that user's keys."""
    import boto3

    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server on port {port} did not start") from None
                time.sleep(0.1)
        server = S3Server(url, "testing", "testing")
        if check_signatures:
            iam = boto3.client(
                "iam",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            iam.create_user(UserName="inbox")
            iam.put_user_policy(
                UserName="inbox",
                PolicyName="attachments",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                    }
                ),
            )
            keys = iam.create_access_key(UserName="inbox")["AccessKey"]
            server = S3Server(url, keys["AccessKeyId"], keys["SecretAccessKey"])
            httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(database: str) -> Iterator[S3Server]:
    with s3_server_on(free_port()) as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[Settings]:
    """Attachments are kept in a new bucket of the S3 server for this test."""
    with configured(**s3_server.environment(s3_server.new_bucket())) as settings:
        yield settings


# -- factories ---------------------------------------------------------------------------


class Factory:
    """Rows for tests, committed for real."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def account(self, name: str = "Acme Support") -> Account:
        account = Account(name=name)
        self.db.add(account)
        await self.db.commit()
        return account

    async def user(
        self, account: Account | None = None, *, role: Role = Role.ADMINISTRATOR
    ) -> tuple[User, str]:
        """A user (member of `account` with `role`) and their api_access_token."""
        user = User(name="Agent Smith", email=f"agent-{uuid.uuid4().hex[:8]}@example.com")
        self.db.add(user)
        await self.db.flush()
        if account is not None:
            self.db.add(AccountUser(account_id=account.id, user_id=user.id, role=role.value))
        token = await issue_token(self.db, owner_type=USER_OWNER, owner_id=user.id)
        await self.db.commit()
        return user, token

    async def headers(self, account: Account, *, role: Role = Role.ADMINISTRATOR) -> dict[str, str]:
        _, token = await self.user(account, role=role)
        return {"api_access_token": token}

    async def platform_token(self) -> str:
        app = PlatformApp(name="provisioner")
        self.db.add(app)
        await self.db.flush()
        token = await issue_token(self.db, owner_type=PLATFORM_APP_OWNER, owner_id=app.id)
        await self.db.commit()
        return token

    async def inbox(
        self,
        account: Account,
        *,
        instagram_id: str = "17841400000000001",
        access_token: str = "IGAA-test-token",
        expires_in: timedelta = timedelta(days=59),
        token_age: timedelta = timedelta(days=1),
        username: str = "acme_shop",
    ) -> Inbox:
        """A connected Instagram inbox, as Business Login would leave it."""
        now = datetime.now(UTC)
        channel = ChannelInstagram(
            account_id=account.id,
            instagram_id=instagram_id,
            username=username,
            access_token=access_token,
            expires_at=now + expires_in,
            token_updated_at=now - token_age,
            webhooks_subscribed_at=now,
        )
        self.db.add(channel)
        await self.db.flush()
        inbox = Inbox(account_id=account.id, name=username, channel_id=channel.id)
        self.db.add(inbox)
        await self.db.commit()
        return inbox


@pytest.fixture
def factory(db: AsyncSession) -> Factory:
    return Factory(db)
