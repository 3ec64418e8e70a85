"""Private Postgres and Redis servers in a directory of our own, with the standard library only.

`make run`/`make test` (tools/devstack.py) start them under `.run/` when no server is reachable;
benchmarks and fault tests (tools/stack.py) start them in a temporary directory so they can be
killed and restarted. Postgres refuses to run as root, so its commands run as the `postgres`
user when we are root.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout} s")
        time.sleep(0.05)


def _find(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return shutil.which(name) or next(iter(candidates), None)


def require(name: str, *, package: str) -> str:
    """The path of a server binary, installing its Debian package when missing and we are root."""
    found = _find(name)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing Debian package {package} (for {name}); this takes a minute", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
            subprocess.run(step, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        found = _find(name)
    if found is None:
        how = (
            f"run as root so it can be installed, or install it yourself (sudo apt-get install {package})"
            if os.geteuid() != 0
            else f"install it (Debian: apt-get install {package})"
        )
        raise RuntimeError(
            f"{name} not found and no reachable server: {how}, or point the environment "
            "(DATABASE_URL / REDIS_URL) at a running server."
        )
    return found


def _pg_bin(name: str) -> str:
    return require(name, package="postgresql")


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError as error:
        raise RuntimeError(
            "Postgres refuses to run as root and there is no `postgres` user: create one "
            "(useradd --system postgres) or run as an ordinary user."
        ) from error
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class PrivatePostgres:
    """A Postgres cluster in `directory` (data, log and unix socket), trust auth, user postgres."""

    directory: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        # The `postgres` user gets real paths: a link may live where it cannot go (a home directory).
        self.directory = self.directory.resolve()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/inbox"

    def _run(self, *command: str) -> None:
        result = subprocess.run(_as_postgres(list(command)), capture_output=True, text=True, cwd="/")
        if result.returncode != 0:
            log = self.directory / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def running(self) -> bool:
        return port_open("127.0.0.1", self.port)

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
