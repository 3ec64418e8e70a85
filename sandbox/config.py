"""How the sandbox behaves; every field can be changed at run time through `PATCH /_sandbox/config`."""

import os
from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass
class SandboxConfig:
    app_id: str = "990000000000001"
    app_secret: str = "sandbox-app-secret"
    webhook_url: str | None = None  # where signed webhooks go (the webhooks service)
    webhook_secret: str | None = None  # defaults to app_secret
    human_agent_enabled: bool = True  # the app has Meta's Human Agent feature
    send_rate_limit_per_second: int = 100  # Send API, text, per business account (Meta: 100/s)
    media_send_rate_limit_per_second: int = 10  # Send API, audio and video
    refresh_min_age_seconds: int = 86_400  # Meta refuses to refresh tokens younger than 24 h
    long_lived_seconds: int = 5_184_000  # 60 days
    short_lived_seconds: int = 3_600
    token_response_shape: Literal["flat", "wrapped"] = "flat"
    echo_delay_seconds: float = 0.0
    webhook_retries: int = 3
    webhook_timeout_seconds: float = 5.0

    @property
    def signing_secret(self) -> str:
        return self.webhook_secret or self.app_secret

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown sandbox settings: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            setattr(self, name, value)

    @classmethod
    def from_env(cls) -> "SandboxConfig":
        config = cls()
        for field in fields(cls):
            raw = os.environ.get(f"SANDBOX_{field.name.upper()}")
            if raw is None:
                continue
            current = getattr(config, field.name)
            if isinstance(current, bool):
                value: Any = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
            setattr(config, field.name, value)
        return config
