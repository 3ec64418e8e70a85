"""Meta's errors, mapped once into a small tree. Callers branch on the type, never on numbers.

GraphError(code, subcode, message, http_status)
├── GraphTransientError     1, 2, 5xx, network, is_transient   → retry with backoff
│   ├── GraphRateLimitError 4, 17, 32, 341, 613, 80002         → retry after Meta's hint
│   └── GraphOutcomeUnknown timeout after sending; 1/1357046   → reconcile, never resend
├── GraphTokenError         190                                → flag re-authorization
├── GraphPermissionError    10, 200–299                        → fail with the reason
└── GraphRequestError       100, any other 4xx                 → fail: a bug or bad data
"""

import json
from typing import Any

RATE_LIMIT_CODES = frozenset({4, 17, 32, 341, 613, 80002})


class GraphError(Exception):
    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [
            f"code={self.code}" if self.code is not None else "",
            f"subcode={self.subcode}" if self.subcode else "",
        ]
        detail = " ".join(p for p in parts if p)
        return f"{self.message} ({detail})" if detail else self.message


class GraphTransientError(GraphError):
    pass


class GraphRateLimitError(GraphTransientError):
    pass


class GraphOutcomeUnknown(GraphTransientError):
    """The request may have taken effect (Meta answered late or ambiguously): reconcile, never resend."""


class GraphTokenError(GraphError):
    pass


class GraphPermissionError(GraphError):
    pass


class GraphRequestError(GraphError):
    pass


def kind_for(code: int | None, subcode: int | None, *, http_status: int, transient: bool) -> type[GraphError]:
    if code == 190:
        return GraphTokenError
    if (code, subcode) == (1, 1357046):  # Meta reports an error, yet the message was sent
        return GraphOutcomeUnknown
    if code in RATE_LIMIT_CODES:
        return GraphRateLimitError
    if code == 10 or (code is not None and 200 <= code < 300):
        return GraphPermissionError
    if code in (1, 2) or transient or http_status >= 500 or http_status == 429:
        return GraphTransientError
    return GraphRequestError


def _retry_after(headers: Any) -> float | None:
    """Meta's hint, in seconds: `estimated_time_to_regain_access` (minutes) or Retry-After."""
    usage = headers.get("x-business-use-case-usage")
    if usage:
        try:
            minutes = max(
                item.get("estimated_time_to_regain_access", 0)
                for items in json.loads(usage).values()
                for item in items
            )
            if minutes:
                return float(minutes) * 60
        except (ValueError, TypeError, AttributeError):
            pass
    retry_after = headers.get("retry-after")
    if retry_after and retry_after.isdigit():
        return float(retry_after)
    return None


def error_from_response(http_status: int, body: bytes, headers: Any) -> GraphError:
    """Map a failed response (Graph envelope, the OAuth host's flat envelope, or anything else)."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    code: int | None = None
    subcode: int | None = None
    transient = False
    message = f"Instagram answered HTTP {http_status}"
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        message = str(error.get("error_user_msg") or error.get("message") or message)
        transient = error.get("is_transient") is True
    elif isinstance(payload, dict) and "error_message" in payload:  # api.instagram.com OAuth envelope
        code = _int(payload.get("code"))
        message = str(payload["error_message"])
    kind = kind_for(code, subcode, http_status=http_status, transient=transient)
    return kind(
        message, code=code, subcode=subcode, http_status=http_status, retry_after=_retry_after(headers)
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
