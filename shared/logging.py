"""Structured logs: one JSON object per line, request or job id bound, secrets masked."""

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

SECRET_NAME = re.compile(r"token|secret|signature|password|authorization|code|cookie", re.IGNORECASE)
MASK = "***"


def _mask(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: MASK if SECRET_NAME.search(str(k)) else _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Blank every field (at any depth) whose name looks like a credential."""
    return {
        k: (MASK if SECRET_NAME.search(k) else _mask(v)) if k != "event" else v for k, v in event_dict.items()
    }


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    structlog.configure(
        # Drop below-level calls first, before any processor spends time on them.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # arq's command line gives its logger a plain-text handler at INFO: log its job lines once,
    # as JSON with the job id, and only at the configured level.
    arq = logging.getLogger("arq")
    arq.handlers[:] = []
    arq.propagate = True
    arq.setLevel(level)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
