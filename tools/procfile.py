"""The Procfile, read as the source of truth for which processes make up the system."""

import re
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def read_procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """Process name → shell command, in file order."""
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def expand(command: str, env: Mapping[str, str]) -> list[str]:
    """The command's words with `${VAR:-default}` and `$VAR` filled in as the shell would."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        found = env.get(name)
        return found if found else (match.group(2) or "")

    return _VARIABLE.sub(value, command).split()


def http_port(command: str, env: Mapping[str, str]) -> int | None:
    """The port a uvicorn process listens on; None for a worker."""
    words = expand(command, env)
    if not words or words[0] != "uvicorn":
        return None
    return int(words[words.index("--port") + 1]) if "--port" in words else 8000
