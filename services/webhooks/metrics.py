"""Prometheus metrics of webhook ingestion, served at /metrics.

With several uvicorn workers, set PROMETHEUS_MULTIPROC_DIR (an empty directory) so /metrics
adds up every worker's counters.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

RECEIVED = Counter("instagram_webhook_deliveries_received_total", "Webhook POSTs received from Meta")
REJECTED = Counter(
    "instagram_webhook_deliveries_rejected_total", "Webhook POSTs refused, by reason", ["reason"]
)
ENQUEUED = Counter("instagram_webhook_events_enqueued_total", "Events enqueued for the inbound worker")
DUPLICATES = Counter("instagram_webhook_events_duplicate_total", "Events already queued or just processed")
ENQUEUE_ROUND_TRIPS = Counter(
    "instagram_webhook_enqueue_round_trips_total", "Redis round trips that enqueued deliveries' events"
)
ACK_SECONDS = Histogram(
    "instagram_webhook_ack_seconds",
    "Time from receiving a delivery to answering it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
