"""The deployment files describe the same system as the Procfile, the source of truth for processes."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools import devstack
from tools.procfile import expand, http_port, read_procfile

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = read_procfile()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_PROCESSES = [name for name in PROCFILE if name != "sandbox"]
NGINX = (ROOT / "deploy" / "nginx.conf").read_text()


def test_procfile_has_the_contract_processes() -> None:
    modules = {command.split()[-1 if command.startswith("inboxctl") else 1] for command in PROCFILE.values()}
    assert {
        "services.auth.main:app",
        "services.webhooks.main:app",
        "services.messaging.main:app",
        "services.messaging.worker.WorkerSettings",
        "services.messaging.worker.OutboundWorkerSettings",
        "services.token_refresh.worker.WorkerSettings",
        "sandbox.main:app",
    } <= modules
    for name, command in PROCFILE.items():
        if command.startswith("uvicorn"):
            assert "--host ${HOST:-127.0.0.1}" in command and "--no-access-log" in command, name
        else:
            assert command.startswith("inboxctl worker "), name


@pytest.mark.parametrize("name", list(PROCFILE))
def test_every_procfile_process_is_a_compose_service_with_the_same_command(name: str) -> None:
    service = SERVICES[name]
    expected = expand(PROCFILE[name], {"HOST": "0.0.0.0"})
    assert [expand(word, {})[0] for word in service["command"]] == expected
    if name == "sandbox":
        assert service["profiles"] == ["sandbox"]
    else:
        assert "profiles" not in service
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_migrate_runs_once_after_postgres_is_healthy() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["inboxctl", "migrate"]
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert migrate.get("restart", "no") == "no"


@pytest.mark.parametrize("name", ["migrate", *APP_PROCESSES])
def test_app_services_get_the_contract_environment(name: str) -> None:
    env = SERVICES[name]["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"] and env["DATABASE_URL"].startswith(
        "postgresql+asyncpg://"
    )
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}"
    for variable in ("INSTAGRAM_APP_ID", "INSTAGRAM_APP_SECRET", "INSTAGRAM_VERIFY_TOKEN", "FRONTEND_URL"):
        assert f"${{{variable}" in env[variable]


@pytest.mark.parametrize("name", [name for name in PROCFILE if http_port(PROCFILE[name], {})])
def test_http_services_have_healthchecks_on_their_port(name: str) -> None:
    test = " ".join(SERVICES[name]["healthcheck"]["test"])
    path = "/health" if name == "sandbox" else "/ready"
    assert f"http://127.0.0.1:{http_port(PROCFILE[name], {})}{path}" in test


@pytest.mark.parametrize("name", APP_PROCESSES)
def test_app_services_stop_gracefully_and_restart(name: str) -> None:
    assert SERVICES[name]["stop_grace_period"]
    assert SERVICES[name]["restart"] == "unless-stopped"


def test_servers_persist_their_data() -> None:
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][1:] == ["--appendonly", "yes", "--appendfsync", "everysec"]
    for name in ("postgres", "redis"):
        volume = SERVICES[name]["volumes"][0].split(":")[0]
        assert volume in COMPOSE["volumes"]


def test_ingress_serves_the_nginx_config_on_8080() -> None:
    ingress = SERVICES["ingress"]
    assert ingress["image"] == "nginx:1.27-alpine"
    assert any(port.endswith(":8080") for port in ingress["ports"])
    assert any(volume.startswith("./deploy/nginx.conf:") for volume in ingress["volumes"])


def _upstream(path: str) -> str:
    """Mimic nginx: an exact match, else the first matching regex, else the longest prefix."""
    hosts = dict(re.findall(r"set \$(\w+) http://([\w.-]+:\d+);", NGINX))
    locations = re.findall(r"location\s+(=|~)?\s*(\S+)\s*\{\s*proxy_pass \$(\w+);", NGINX)
    exact = [target for kind, pattern, target in locations if kind == "=" and pattern == path]
    regex = [target for kind, pattern, target in locations if kind == "~" and re.search(pattern, path)]
    prefix = [
        (len(pattern), target) for kind, pattern, target in locations if not kind and path.startswith(pattern)
    ]
    target = (exact or regex or [max(prefix)[1]])[0]
    return hosts[target]


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/instagram/callback", "auth:8001"),
        ("/platform/api/v1/accounts", "auth:8001"),
        ("/platform/api/v1/accounts/3/account_users", "auth:8001"),
        ("/api/v1/accounts/12/instagram/authorization", "auth:8001"),
        ("/api/v1/super_admin/app_config", "auth:8001"),
        ("/webhooks/instagram", "webhooks:8002"),
        ("/api/v1/accounts/12/conversations", "messaging:8003"),
        ("/api/v1/accounts/12/conversations/4/messages", "messaging:8003"),
        ("/api/v1/accounts/12/inboxes", "messaging:8003"),
    ],
)
def test_ingress_routes_each_prefix_to_its_service(path: str, upstream: str) -> None:
    assert _upstream(path) == upstream


def test_ingress_upstreams_are_the_compose_services_on_their_procfile_ports() -> None:
    for host in re.findall(r"set \$\w+ http://([\w.-]+:\d+);", NGINX):
        name, port = host.split(":")
        assert name in SERVICES
        assert http_port(PROCFILE[name], {}) == int(port)


def test_ingress_passes_request_id_and_forwarded_headers() -> None:
    for header in ("X-Request-ID", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert re.search(rf"proxy_set_header {header} \$\w+;", NGINX), header
    size = re.search(r"client_max_body_size (\d+)m;", NGINX)
    assert size and 25 <= int(size.group(1)) <= 100


def test_ci_runs_make_test() -> None:
    ci = ROOT / ".ci" / "run"
    text = ci.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "make test" in text
    assert os.access(ci, os.X_OK)


def test_makefile_has_the_contract_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("install", "run", "test", "lint", "migrate", "clean"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target


def test_procfile_ports_are_the_contract_defaults() -> None:
    ports = {name: http_port(command, {}) for name, command in PROCFILE.items()}
    assert (ports["auth"], ports["webhooks"], ports["messaging"], ports["sandbox"]) == (
        8001,
        8002,
        8003,
        8010,
    )
    assert http_port(PROCFILE["auth"], {"AUTH_PORT": "9001"}) == 9001
    assert "--workers 2" in " ".join(expand(PROCFILE["webhooks"], {}))


def test_devstack_gives_up_fast_on_a_closed_port() -> None:
    assert devstack._redis_problem("redis://127.0.0.1:1/0") == "nothing listens there"


def _compose() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_is_accepted_by_docker_compose() -> None:
    compose = _compose()
    if compose is None:
        pytest.skip(
            "neither the docker compose plugin nor docker-compose is installed; the YAML checks above still ran"
        )
    result = subprocess.run(
        [*compose, "-f", str(ROOT / "docker-compose.yml"), "--profile", "sandbox", "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SECRET_KEY": "test-secret-key"},
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", [n for n, c in PROCFILE.items() if c.startswith("inboxctl worker ")])
def test_every_worker_lets_running_jobs_finish_before_compose_kills_it(name: str) -> None:
    from arq.utils import import_string

    from shared.worker import SHUTDOWN_WAIT_SECONDS

    settings = import_string(PROCFILE[name].split()[-1])
    assert settings.__dict__["job_completion_wait"] == SHUTDOWN_WAIT_SECONDS  # set on the class itself
    grace = SERVICES[name]["stop_grace_period"]
    assert SHUTDOWN_WAIT_SECONDS < int(grace.rstrip("s"))
