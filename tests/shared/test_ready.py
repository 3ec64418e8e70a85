import httpx

from shared.app import create_app
from shared.settings import Settings, get_settings
from tests.conftest import _asgi_client
from tests.support import free_port


async def test_health_and_ready_when_everything_is_up(messaging_client: httpx.AsyncClient) -> None:
    assert (await messaging_client.get("/health")).json() == {"status": "ok"}
    ready = await messaging_client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}


async def test_ready_is_503_with_the_reason_when_redis_is_unreachable() -> None:
    settings = Settings(**{**get_settings().model_dump(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    async for client in _asgi_client(create_app("no redis", settings=settings)):
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["postgres"] == "ok"
        assert ready.json()["redis"].startswith("unavailable: ConnectionError")
        assert (await client.get("/health")).status_code == 200


async def test_ready_is_503_when_postgres_is_unreachable() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = Settings(**{**get_settings().model_dump(), "DATABASE_URL": url})
    async for client in _asgi_client(create_app("no postgres", settings=settings)):
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["redis"] == "ok"
        assert ready.json()["postgres"].startswith("unavailable:")
