import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.cli import alembic_config
from shared.models import metadata
from tests.conftest import ADMIN_URL, SERVER_URL


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    name = f"inbox_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield SERVER_URL.set(database=name).render_as_string(hide_password=False)
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


async def _drift(url: str) -> list[object]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )
    await engine.dispose()
    return diff


async def test_upgrade_matches_models_and_downgrade_removes_everything(empty_database: str) -> None:
    config = alembic_config(empty_database)
    await asyncio.to_thread(command.upgrade, config, "heads")
    assert await _tables(empty_database) == set(metadata.tables)
    assert await _drift(empty_database) == []

    await asyncio.to_thread(command.downgrade, config, "base")
    assert await _tables(empty_database) == set()

    await asyncio.to_thread(command.upgrade, config, "heads")
    assert await _tables(empty_database) == set(metadata.tables)
