"""The real system as separate processes, on private Postgres and Redis servers we can break.

Benchmarks measure these processes from outside; fault tests kill and restart them, and the
servers, while signed webhooks are in flight. Postgres refuses to run as root, so its commands
run as the `postgres` user when we are root.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from alembic import command as alembic

from shared.cli import alembic_config
from tools.procfile import read_procfile

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return shutil.which(name) or next(iter(candidates), None)


def require(name: str, *, package: str) -> str:
    """The path of a server binary, installing its Debian package when missing and we are root."""
    found = _find(name)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing Debian package {package} (for {name})", flush=True)
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
            subprocess.run(step, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = _find(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found. Install it (Debian: apt-get install {package}) or point the "
            "environment at a running server."
        )
    return found


def _pg_bin(name: str) -> str:
    return require(name, package="postgresql")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout} s")
        time.sleep(0.05)


@dataclass
class PrivatePostgres:
    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/inbox"

    def _run(self, *command: str) -> None:
        subprocess.run(_as_postgres(list(command)), check=True, capture_output=True)

    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> None:
        if self.running():
            return
        data = self.directory / "data"
        if not data.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres", "postgres")
            self._run(_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.directory / "log"),
            "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.directory / "data"), "-w", "-m", mode, "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str = "inbox") -> None:
        """Create the database unless it exists."""
        psql = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAc"]
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], capture_output=True
        )
        if exists.stdout.strip() != b"1":
            self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)


@dataclass
class PrivateRedis:
    """Redis with the append-only persistence docker-compose.yml configures, run as a daemon."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.running():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                require("redis-server", package="redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.directory / "redis.pid"),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            check=True,
            capture_output=True,
        )
        wait_for(self.running, "redis")

    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.running():
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"SHUTDOWN\r\n")
                sock.recv(16)
        wait_for(lambda: not self.running(), "redis shutdown")

    def restart(self) -> None:
        self.stop()
        self.start()


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
