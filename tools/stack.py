"""The real system as separate processes, on private Postgres and Redis servers we can break.

Benchmarks measure these processes from outside; fault tests kill and restart them, and the
servers (tools/servers.py), while signed webhooks are in flight.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from alembic import command as alembic

from shared.cli import alembic_config
from tools.procfile import read_procfile
from tools.servers import PrivatePostgres, PrivateRedis, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Service:
    """One Procfile process, run as a subprocess with its own log file."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    health_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        if self.health_url:
            wait_for(self._healthy, self.name)

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
        try:
            return httpx.get(self.health_url or "", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a crashed container."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


SANDBOX_APP_ID = "990000000000001"
SANDBOX_APP_SECRET = "sandbox-app-secret"


@dataclass
class Stack:
    directory: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    ports: dict[str, int]
    env: dict[str, str]
    services: dict[str, Service] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(
        self, name: str, *, copy: str | None = None, extra_env: dict[str, str] | None = None
    ) -> Service:
        """Start a Procfile process (a second copy of a worker under another name with `copy`)."""
        command = read_procfile()[copy or name]
        health = f"{self.url(name)}/health" if name in self.ports else None
        service = Service(
            name=name,
            command=["bash", "-c", f"exec {command}"],
            env={**self.env, **(extra_env or {})},
            log=self.directory / f"{name}.log",
            health_url=health,
        )
        service.start()
        self.services[name] = service
        return service

    def stop(self, name: str) -> None:
        self.services.pop(name).stop()


@contextmanager
def running_stack(*, webhooks_workers: int = 2, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Private Postgres and Redis, migrated; start the processes you need with `stack.start(name)`."""
    directory = Path(tempfile.mkdtemp(prefix="inbox-bench-"))
    directory.chmod(0o755)
    postgres, redis = PrivatePostgres(directory / "postgres"), PrivateRedis(directory / "redis")
    postgres.start()
    postgres.create_database()
    redis.start()
    ports = {name: free_port() for name in ("auth", "webhooks", "messaging", "sandbox")}
    sandbox = f"http://127.0.0.1:{ports['sandbox']}"
    env = {
        **os.environ,
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "AUTH_PORT": str(ports["auth"]),
        "WEBHOOKS_PORT": str(ports["webhooks"]),
        "MESSAGING_PORT": str(ports["messaging"]),
        "SANDBOX_PORT": str(ports["sandbox"]),
        "WEBHOOKS_WORKERS": str(webhooks_workers),
        "INSTAGRAM_APP_ID": SANDBOX_APP_ID,
        "INSTAGRAM_APP_SECRET": SANDBOX_APP_SECRET,
        "INSTAGRAM_VERIFY_TOKEN": "bench-verify-token",
        "INSTAGRAM_WWW_BASE_URL": sandbox,
        "INSTAGRAM_API_BASE_URL": sandbox,
        "INSTAGRAM_GRAPH_BASE_URL": sandbox,
        "SANDBOX_APP_ID": SANDBOX_APP_ID,
        "SANDBOX_APP_SECRET": SANDBOX_APP_SECRET,
        "SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{ports['webhooks']}/webhooks/instagram",
        "STORAGE_DIR": str(directory / "storage"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    alembic.upgrade(alembic_config(postgres.url), "heads")
    stack = Stack(directory, postgres, redis, ports, env)
    try:
        yield stack
    finally:
        for name in list(stack.services):
            stack.stop(name)
        redis.stop()
        postgres.stop()


async def seed_connected_account(
    database_url: str, token: str, *, instagram_id: str = "17841400000000001"
) -> tuple[int, str]:
    """An account whose inbox is connected to the sandbox business, and an administrator's API token.

    Any earlier channel of that Instagram account is removed first (one account, one inbox).
    """
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import delete
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from shared.access import USER_OWNER, issue_token
    from shared.models import Account, AccountUser, ChannelInstagram, Inbox, User

    engine = create_async_engine(database_url)
    now = datetime.now(UTC)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.execute(delete(ChannelInstagram).where(ChannelInstagram.instagram_id == instagram_id))
        account, user = (
            Account(name="seeded"),
            User(name="Agent", email=f"agent-{time.time_ns()}@example.com"),
        )
        session.add_all([account, user])
        await session.flush()
        session.add(AccountUser(account_id=account.id, user_id=user.id, role="administrator"))
        api_token = await issue_token(session, owner_type=USER_OWNER, owner_id=user.id)
        channel = ChannelInstagram(
            account_id=account.id,
            instagram_id=instagram_id,
            username="acme_shop",
            access_token=token,
            expires_at=now + timedelta(days=59),
            token_updated_at=now,
            webhooks_subscribed_at=now,
        )
        session.add(channel)
        await session.flush()
        session.add(Inbox(account_id=account.id, name="acme_shop", channel_id=channel.id))
        await session.commit()
    await engine.dispose()
    return account.id, api_token
