"""Find or start the Postgres and Redis the project needs; run the whole system for `make run`.

    python -m tools.devstack ensure   # find or start the servers; write .run/env (sourceable), print it
    python -m tools.devstack run      # ensure, migrate, then every Procfile process under honcho
    python -m tools.devstack stop     # stop the throwaway servers under .run/ (`make clean`)

Order of preference for each server: the URL in the environment or `.env` (DATABASE_URL /
REDIS_URL) when it answers; the usual local server (127.0.0.1:5432 as user `postgres`,
127.0.0.1:6379) unless DEVSTACK_NO_DEFAULTS=1; otherwise a throwaway server under `.run/`
(Postgres in `.run/pg` on 55432, Redis in `.run/redis` on 56379), started from binaries on PATH
or in /usr/lib/postgresql/*/bin, installing Debian's packages when missing and we are root.
Throwaway servers keep running between commands and are reused.
"""

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from tools.procfile import http_port, read_procfile
from tools.servers import PrivatePostgres, PrivateRedis, port_open

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run"
BIN = Path(sys.prefix) / "bin"  # the virtualenv's programs: inboxctl, honcho, uvicorn
LOCAL_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/inbox"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
THROWAWAY_POSTGRES_PORT = 55432
THROWAWAY_REDIS_PORT = 56379

DEV_DEFAULTS = {"SECRET_KEY": "dev-insecure-secret-key-change-me", "APP_ENV": "development"}
SANDBOX_APP_ID = "990000000000001"
SANDBOX_APP_SECRET = "sandbox-app-secret"
SANDBOX_VERIFY_TOKEN = "sandbox-verify-token"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dotenv() -> dict[str, str]:
    """The `.env` file's values (the services read it too, through pydantic-settings)."""
    from honcho.environ import parse

    path = ROOT / ".env"
    return parse(path.read_text()) if path.exists() else {}


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'local socket'}:{parts.port or ''}{parts.path}"


# Postgres ------------------------------------------------------------------------------------


async def _postgres_problem(url: str) -> str | None:
    """None when we can log in to the URL's database (created when missing); else why not."""
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    parts = urlsplit(dsn)
    if parts.hostname and not parts.hostname.startswith("/"):
        if not port_open(parts.hostname, parts.port or 5432, timeout=1):
            return "nothing listens there"
    try:
        connection = await asyncpg.connect(dsn, timeout=3)
    except asyncpg.InvalidCatalogNameError:
        name = parts.path.lstrip("/")
        try:
            connection = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=3)
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
                say(f"created database {name} at {_where(dsn)}")
            except asyncpg.DuplicateDatabaseError:
                pass
        except Exception as error:
            return f"database {name} is missing and cannot be created ({error})"
    except Exception as error:
        return str(error) or type(error).__name__
    await connection.close()
    return None


def _throwaway_postgres_directory() -> Path:
    """`.run/pg`, or a link there to /var/tmp when the `postgres` user cannot reach the checkout."""
    directory = RUN / "pg"
    if directory.exists() or os.geteuid() != 0:
        return directory
    reachable = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(RUN)]).returncode == 0
    if reachable:
        return directory
    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    target = Path("/var/tmp") / f"instagram-inbox-{digest}" / "pg"
    target.mkdir(parents=True, exist_ok=True)
    directory.symlink_to(target, target_is_directory=True)
    return directory


def database_url(env: Mapping[str, str]) -> str:
    configured = env.get("DATABASE_URL")
    if configured:
        problem = asyncio.run(_postgres_problem(configured))
        if problem is None:
            return configured
        say(f"DATABASE_URL ({_where(configured)}) is not usable: {problem}")
    if not env.get("DEVSTACK_NO_DEFAULTS") and configured != LOCAL_DATABASE_URL:
        if asyncio.run(_postgres_problem(LOCAL_DATABASE_URL)) is None:
            return LOCAL_DATABASE_URL
    postgres = PrivatePostgres(_throwaway_postgres_directory(), port=THROWAWAY_POSTGRES_PORT)
    if not postgres.running():
        say(f"starting a throwaway Postgres in .run/pg on port {postgres.port}")
        postgres.start()
    problem = asyncio.run(_postgres_problem(postgres.url))
    if problem is not None:
        raise RuntimeError(f"the throwaway Postgres on port {postgres.port} is not usable: {problem}")
    return postgres.url


# Redis ---------------------------------------------------------------------------------------


def _redis_problem(url: str) -> str | None:
    import redis

    parts = urlsplit(url)
    if parts.hostname and not port_open(parts.hostname, parts.port or 6379, timeout=1):
        return "nothing listens there"
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2) as client:
            client.ping()
    except Exception as error:
        return str(error) or type(error).__name__
    return None


def redis_url(env: Mapping[str, str]) -> str:
    configured = env.get("REDIS_URL")
    if configured:
        problem = _redis_problem(configured)
        if problem is None:
            return configured
        say(f"REDIS_URL ({_where(configured)}) is not usable: {problem}")
    if not env.get("DEVSTACK_NO_DEFAULTS") and configured != LOCAL_REDIS_URL:
        if _redis_problem(LOCAL_REDIS_URL) is None:
            return LOCAL_REDIS_URL
    redis = PrivateRedis(RUN / "redis", port=THROWAWAY_REDIS_PORT)
    if not redis.running():
        say(f"starting a throwaway Redis in .run/redis on port {redis.port}")
        redis.start()
    return redis.url


# Commands ------------------------------------------------------------------------------------


def ensure(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL of reachable servers, also written to .run/env."""
    env = {**dotenv(), **os.environ} if env is None else env
    RUN.mkdir(exist_ok=True)
    RUN.chmod(0o755)  # the `postgres` user must be able to reach .run/pg
    urls = {"DATABASE_URL": database_url(env), "REDIS_URL": redis_url(env)}
    (RUN / "env").write_text("".join(f"export {name}={value}\n" for name, value in urls.items()))
    return urls


def stop() -> None:
    """Stop every throwaway server under .run/ (whatever port it was given)."""
    if not RUN.exists():
        return
    for directory in sorted(RUN.iterdir()):
        if (directory / "data" / "postmaster.pid").exists():
            say(f"stopping the throwaway Postgres in .run/{directory.name}")
            try:
                PrivatePostgres(directory, port=THROWAWAY_POSTGRES_PORT).stop()
            except RuntimeError as error:  # already gone (a stale pid file): nothing to stop
                say(f"  {error}".splitlines()[0])
        if directory.is_symlink() and directory.resolve().parent.name.startswith("instagram-inbox-"):
            shutil.rmtree(directory.resolve().parent, ignore_errors=True)
    redis = PrivateRedis(RUN / "redis", port=THROWAWAY_REDIS_PORT)
    if redis.running():
        say("stopping the throwaway Redis in .run/redis")
        redis.stop()


def _healthy(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=1) as response:
            return bool(response.status == 200)
    except Exception:
        return False


def _announce(honcho: subprocess.Popen[bytes], ports: dict[str, int], host: str, sandbox: bool) -> None:
    """Once the HTTP processes answer /health, say where they listen and what to try."""
    pending = dict(ports)
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline and honcho.poll() is None:
        pending = {name: port for name, port in pending.items() if not _healthy(host, port)}
        time.sleep(0.3)
    if honcho.poll() is not None:
        return
    lines = ["", "=" * 78, "Listening:"]
    for name, port in ports.items():
        late = "  (not answering /health yet: see its log lines)" if name in pending else ""
        lines.append(f"  {name:<10} http://{host}:{port}{late}")
    if sandbox:
        lines.append((ROOT / "tools" / "walkthrough.txt").read_text().rstrip())
    else:
        lines.append(
            f"\n  Real Instagram app configured: Meta must reach {{public origin}}/webhooks/instagram "
            f"(webhooks, :{ports.get('webhooks')})\n  and redirect to $FRONTEND_URL/instagram/callback."
        )
    lines += ["  Ctrl-C stops everything.", "=" * 78, ""]
    print("\n".join(lines), flush=True)


def run() -> int:
    """`make run`: servers, migrations, then every Procfile process in the foreground."""
    env = {**dotenv(), **os.environ}
    env.update(ensure(env))
    host = env.get("HOST") or "127.0.0.1"
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    procfile = read_procfile()
    ports = {name: port for name, command in procfile.items() if (port := http_port(command, env))}
    defaults = {**DEV_DEFAULTS, "FRONTEND_URL": f"http://localhost:{ports.get('auth', 8001)}"}
    for name, value in defaults.items():
        env[name] = env.get(name) or value
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"

    sandbox = not env.get("INSTAGRAM_APP_ID")
    if sandbox:
        sandbox_url = f"http://127.0.0.1:{ports.get('sandbox', 8010)}"
        env.update(
            INSTAGRAM_APP_ID=SANDBOX_APP_ID,
            INSTAGRAM_APP_SECRET=SANDBOX_APP_SECRET,
            INSTAGRAM_VERIFY_TOKEN=SANDBOX_VERIFY_TOKEN,
            INSTAGRAM_WWW_BASE_URL=sandbox_url,
            INSTAGRAM_API_BASE_URL=sandbox_url,
            INSTAGRAM_GRAPH_BASE_URL=sandbox_url,
            SANDBOX_APP_ID=SANDBOX_APP_ID,
            SANDBOX_APP_SECRET=SANDBOX_APP_SECRET,
            SANDBOX_WEBHOOK_URL=f"http://127.0.0.1:{ports.get('webhooks', 8002)}/webhooks/instagram",
        )
        say(f"No Instagram app configured (INSTAGRAM_APP_ID): using the Meta sandbox at {sandbox_url}.")
    else:
        procfile.pop("sandbox", None)
        ports.pop("sandbox", None)
    say(f"Postgres {_where(env['DATABASE_URL'])}, Redis {_where(env['REDIS_URL'])}")

    busy = [f"{name} ({port})" for name, port in ports.items() if port_open(local, port, timeout=0.3)]
    if busy:
        say(f"Ports already in use: {', '.join(busy)}. Is another `make run` still going?")
        return 1
    if subprocess.run([str(BIN / "inboxctl"), "migrate"], env=env, cwd=ROOT).returncode != 0:
        say("Migrations failed (see above); nothing started.")
        return 1

    # honcho gets our environment, not its own reading of .env (merged above with the real
    # environment first, as pydantic-settings does).
    command = [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-e", os.devnull, *procfile]
    honcho = subprocess.Popen(command, env=env, cwd=ROOT)

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGINT:  # Ctrl-C reaches honcho directly, as the terminal's process group
            honcho.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    threading.Thread(target=_announce, args=(honcho, ports, local, sandbox), daemon=True).start()
    return honcho.wait()


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "ensure"
    try:
        if command == "ensure":
            print("".join(f"export {name}={value}\n" for name, value in ensure().items()), end="")
        elif command == "run":
            sys.exit(run())
        elif command == "stop":
            stop()
        else:
            sys.exit(f"usage: python -m tools.devstack [ensure|run|stop], not {command!r}")
    except RuntimeError as error:
        sys.exit(f"devstack: {error}")


if __name__ == "__main__":
    main()
