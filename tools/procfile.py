"""The Procfile, read as the source of truth for which processes make up the system."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """Process name → shell command, in file order."""
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes
