"""Prometheus metrics of the token sweep (served by the worker when TOKEN_REFRESH_METRICS_PORT is set)."""

from prometheus_client import Counter, Gauge

REFRESHED = Counter("instagram_tokens_refreshed_total", "Long-lived tokens refreshed")
FAILED = Counter(
    "instagram_token_refresh_failures_total", "Refreshes that failed transiently (retried later)"
)
FLAGGED = Counter("instagram_tokens_flagged_total", "Channels flagged for re-authorization by the sweep")
SOONEST_EXPIRY_DAYS = Gauge(
    "instagram_token_soonest_expiry_days", "Days until the soonest unflagged token expires"
)
