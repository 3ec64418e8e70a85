"""The deployment files describe the same system as the Procfile."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.procfile import read_procfile

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _module(command: str) -> str:
    return next(
        word
        for word in command.split()
        if "." in word and ":" not in word.split(".")[0] and word[0].isalpha()
    )


@pytest.mark.parametrize("name", list(read_procfile()))
def test_every_procfile_process_is_a_compose_service_with_the_same_entry_point(name: str) -> None:
    command = read_procfile()[name]
    service = SERVICES[name]
    assert service["command"][:2] == command.split()[:2]  # the same program and module path
    if name == "sandbox":
        assert service["profiles"] == ["sandbox"]
    else:
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_http_services_have_readiness_healthchecks() -> None:
    for name in ("auth", "webhooks", "messaging"):
        assert "/ready" in " ".join(SERVICES[name]["healthcheck"]["test"])


def test_redis_persists_like_the_fault_tests_assume() -> None:
    assert "--appendonly" in SERVICES["redis"]["command"]


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/instagram/callback", "auth"),
        ("/platform/api/v1/accounts", "auth"),
        ("/api/v1/accounts/12/instagram/authorization", "auth"),
        ("/api/v1/super_admin/app_config", "auth"),
        ("/webhooks/instagram", "webhooks"),
        ("/api/v1/accounts/12/conversations", "messaging"),
        ("/api/v1/profile", "messaging"),
    ],
)
def test_ingress_routes_each_prefix_to_its_service(path: str, upstream: str) -> None:
    """Mimic nginx: the first matching regex location wins, else the longest prefix."""
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    locations = re.findall(r"location\s+(~|=)?\s*(\S+)\s*\{\s*proxy_pass http://(\w+);", config)
    regexes = [(pattern, target) for kind, pattern, target in locations if kind == "~"]
    prefixes = [(pattern, target) for kind, pattern, target in locations if not kind]
    chosen = next((target for pattern, target in regexes if re.search(pattern, path)), None)
    if chosen is None:
        chosen = max((p for p in prefixes if path.startswith(p[0])), key=lambda p: len(p[0]))[1]
    assert chosen == upstream


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_compose_file_is_accepted_by_docker_compose() -> None:
    compose = None
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        compose = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        compose = ["docker-compose"]
    if compose is None:
        pytest.skip("no docker compose plugin on this machine; the YAML checks above still ran")
    result = subprocess.run(
        [*compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"SECRET_KEY": "x", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert result.returncode == 0, result.stderr
