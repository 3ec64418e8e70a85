"""Find or start the Postgres and Redis the project needs, and say where they are.

    python -m tools.devstack ensure      # writes .run/env (sourceable) and prints it

Order of preference for each server: the URL in the environment (DATABASE_URL / REDIS_URL)
when it answers; the usual local port (5432 with user `postgres`, 6379); otherwise a
throwaway server under `.run/` (Postgres on 55432, Redis on 56379), started from binaries on
PATH or Debian's packages (installed when missing and we are root). Throwaway servers keep
running between commands; `python -m tools.devstack stop` (`make clean`) stops them.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tools.stack import PrivatePostgres, PrivateRedis

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run"
LOCAL_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/inbox"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
THROWAWAY_POSTGRES_PORT = 55432
THROWAWAY_REDIS_PORT = 56379


def _answers(url: str) -> bool:
    parts = urlsplit(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _postgres_accepts(url: str) -> bool:
    """The server answers and lets us in (psql when available, else a TCP check)."""
    if not _answers(url):
        return False
    parts = urlsplit(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        result = subprocess.run(
            [
                "psql",
                "-h",
                parts.hostname or "127.0.0.1",
                "-p",
                str(parts.port or 5432),
                "-U",
                parts.username or "postgres",
                "-d",
                "postgres",
                "-tAc",
                "SELECT 1",
            ],
            capture_output=True,
            timeout=5,
            env={**os.environ, "PGPASSWORD": parts.password or ""},
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return True
    return result.returncode == 0


def _ensure_database(url: str) -> None:
    parts = urlsplit(url.replace("postgresql+asyncpg", "postgresql"))
    name = parts.path.lstrip("/") or "inbox"
    psql = [
        "psql",
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
    ]
    env = {**os.environ, "PGPASSWORD": parts.password or ""}
    try:
        found = subprocess.run(
            [*psql, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            capture_output=True,
            env=env,
            timeout=10,
        )
        if found.stdout.strip() != b"1":
            subprocess.run(
                [*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{name}"'], capture_output=True, env=env
            )
    except FileNotFoundError:
        pass  # no psql: the migration will say clearly if the database is missing


def database_url() -> str:
    configured = os.environ.get("DATABASE_URL")
    for url in filter(
        None, (configured, None if os.environ.get("DEVSTACK_NO_DEFAULTS") else LOCAL_DATABASE_URL)
    ):
        if _postgres_accepts(url):
            _ensure_database(url)
            return url
    postgres = PrivatePostgres(RUN / "postgres", port=THROWAWAY_POSTGRES_PORT)
    print(f"starting a throwaway Postgres under .run/ on port {postgres.port}", file=sys.stderr)
    postgres.start()
    postgres.create_database()
    return postgres.url


def redis_url() -> str:
    configured = os.environ.get("REDIS_URL")
    for url in filter(
        None, (configured, None if os.environ.get("DEVSTACK_NO_DEFAULTS") else LOCAL_REDIS_URL)
    ):
        if _answers(url):
            return url
    redis = PrivateRedis(RUN / "redis", port=THROWAWAY_REDIS_PORT)
    print(f"starting a throwaway Redis under .run/ on port {redis.port}", file=sys.stderr)
    redis.start()
    return redis.url


def ensure() -> None:
    RUN.mkdir(exist_ok=True)
    RUN.chmod(0o755)
    lines = [f"export DATABASE_URL={database_url()}", f"export REDIS_URL={redis_url()}"]
    (RUN / "env").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def stop() -> None:
    postgres = PrivatePostgres(RUN / "postgres", port=THROWAWAY_POSTGRES_PORT)
    if (RUN / "postgres" / "data").exists() and postgres.running():
        postgres.stop()
    redis = PrivateRedis(RUN / "redis", port=THROWAWAY_REDIS_PORT)
    if (RUN / "redis").exists() and redis.running():
        redis.stop()


if __name__ == "__main__":
    {"ensure": ensure, "stop": stop}[sys.argv[1] if len(sys.argv) > 1 else "ensure"]()
