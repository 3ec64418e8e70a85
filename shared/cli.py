"""`inboxctl`: the operator's command line (also `python -m shared.cli`)."""

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from alembic import command
from alembic.config import Config
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox import cli as sandbox_cli
from services.messaging.outbound import cli as replies_cli
from services.token_refresh import cli as tokens_cli
from shared import app_config
from shared.access import PLATFORM_APP_OWNER, USER_OWNER, issue_token
from shared.db import create_engine, create_sessionmaker
from shared.errors import NotFound
from shared.logging import configure_logging
from shared.models import DeadLetter, PlatformApp, User
from shared.queue import JOBS, create_redis, enqueue
from shared.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

app = typer.Typer(help="Operate an Instagram Inbox installation.", no_args_is_help=True, add_completion=False)
platform_app = typer.Typer(help="Platform apps (tokens for /platform/api/v1).", no_args_is_help=True)
super_admin = typer.Typer(help="Super admin users.", no_args_is_help=True)
config = typer.Typer(help="Installation configuration (wins over the environment).", no_args_is_help=True)
app.add_typer(platform_app, name="platform-app")
app.add_typer(super_admin, name="super-admin")
app.add_typer(config, name="config")
app.add_typer(sandbox_cli.app, name="sandbox")
app.add_typer(tokens_cli.app, name="tokens")
app.add_typer(replies_cli.app, name="replies")
dead_letters = typer.Typer(
    help="Jobs that failed for good, parked for inspection and replay.", no_args_is_help=True
)
app.add_typer(dead_letters, name="dead-letters")


def run_in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one database session and commit it."""

    async def main() -> T:
        engine = create_engine(get_settings(), pool_size=2)
        try:
            async with create_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(main())


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    if url:
        cfg.attributes["url"] = url
    return cfg


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="target revision")] = "heads") -> None:
    """Apply database migrations."""
    command.upgrade(alembic_config(), revision)
    typer.echo(f"database migrated to {revision}")


@platform_app.command("create")
def create_platform_app(name: str) -> None:
    """Create a platform app; prints its token alone on the last line."""

    async def work(session: AsyncSession) -> str:
        record = PlatformApp(name=name)
        session.add(record)
        await session.flush()
        return await issue_token(session, owner_type=PLATFORM_APP_OWNER, owner_id=record.id)

    token = run_in_session(work)
    typer.echo(f"platform app {name!r} created; its token (shown once):")
    typer.echo(token)


@super_admin.command("create")
def create_super_admin(
    email: str, name: Annotated[str, typer.Option(help="display name")] = "Super Admin"
) -> None:
    """Create (or promote) a super admin user; prints a new access token alone on the last line."""

    async def work(session: AsyncSession) -> str:
        user = await session.scalar(select(User).where(User.email == email.lower()))
        if user is None:
            user = User(name=name, email=email.lower())
            session.add(user)
        user.super_admin = True
        await session.flush()
        return await issue_token(session, owner_type=USER_OWNER, owner_id=user.id)

    token = run_in_session(work)
    typer.echo(f"super admin {email} ready; access token (shown once):")
    typer.echo(token)


@config.command("set")
def config_set(key: str, value: str) -> None:
    """Save an Instagram app setting (secrets are encrypted at rest)."""

    async def work(session: AsyncSession) -> None:
        await app_config.save_value(session, key=key.upper(), raw=value)

    run_or_exit(lambda: run_in_session(work))
    typer.echo(
        f"{key.upper()} saved; services pick it up within {get_settings().APP_CONFIG_CACHE_SECONDS:g} s"
    )


@config.command("get")
def config_get(key: str) -> None:
    """Show an effective setting (secrets masked)."""

    async def work(session: AsyncSession) -> Any:
        return (await app_config.effective_values(session, get_settings()))[key.upper()]

    if key.upper() not in app_config.INSTAGRAM_KEYS:
        raise typer.BadParameter(f"unknown key; known keys: {', '.join(app_config.INSTAGRAM_KEYS)}")
    typer.echo(app_config.mask(key.upper(), run_in_session(work)))


@dead_letters.command("list")
def list_dead_letters(limit: Annotated[int, typer.Option(help="how many, newest first")] = 50) -> None:
    """Show parked jobs: id, when, job, key, replayed, error."""

    async def work(session: AsyncSession) -> list[DeadLetter]:
        return list(await session.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)))

    for letter in run_in_session(work):
        replayed = f"replayed {letter.replayed_at:%Y-%m-%d %H:%M}" if letter.replayed_at else "not replayed"
        when = f"{letter.created_at:%Y-%m-%d %H:%M:%S}"
        typer.echo(f"{letter.id}\t{when}\t{letter.job_name}\t{letter.job_key}\t{replayed}")
        typer.echo(f"\t{letter.error[:300]}")


@dead_letters.command("replay")
def replay_dead_letter(letter_id: int) -> None:
    """Enqueue a parked job again, with its original arguments."""

    async def work(session: AsyncSession) -> str:
        letter = await session.get(DeadLetter, letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}")
        redis = await create_redis(get_settings())
        try:
            key = f"{letter.job_key}:replay-{letter.id}-{int(time.time())}"
            await enqueue(redis, JOBS[letter.job_name], key=key, **letter.kwargs)
        finally:
            await redis.aclose()
        letter.replayed_at = datetime.now(UTC)
        return f"{letter.job_name} {letter.job_key} enqueued again"

    typer.echo(run_or_exit(lambda: run_in_session(work)))


@app.command()
def worker(
    settings: Annotated[
        str, typer.Argument(help="the worker's settings class, e.g. services.messaging.worker.WorkerSettings")
    ],
) -> None:
    """Run an arq worker (until SIGTERM: running jobs finish or go back to the queue)."""
    from shared.worker import create_worker

    create_worker(settings).run()


def run_or_exit(action: Callable[[], T]) -> T:
    from shared.errors import AppError

    try:
        return action()
    except AppError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from error


def main() -> None:
    configure_logging(get_settings().LOG_LEVEL, stream=sys.stderr)  # stdout is the command's answer
    app()


if __name__ == "__main__":
    main()
