"""Messaging workers. One arq worker reads one queue, so each queue has its own settings class
(and its own Procfile line). Every field is assigned here: arq ignores inherited attributes."""

from services.messaging.inbound import jobs as inbound
from services.messaging.outbound import jobs as outbound
from shared import worker
from shared.queue import Queue, redis_settings_from
from shared.settings import get_settings


class WorkerSettings:
    """Inbound: Meta webhook events become contacts, conversations and messages."""

    functions = inbound.FUNCTIONS
    batches = inbound.BATCHES
    queue_name = Queue.INBOUND.value
    redis_settings = redis_settings_from(get_settings())
    on_startup = inbound.startup
    on_shutdown = worker.shutdown
    on_job_start = worker.bind_job_logging
    max_jobs = 400  # two batches of customers' messages at a time
    poll_delay = worker.POLL_DELAY_SECONDS
    job_completion_wait = worker.SHUTDOWN_WAIT_SECONDS
    keep_result = 3600
    max_tries = 10


class OutboundWorkerSettings:
    """Outbound: agent replies go out through the Instagram Send API; a sweep every minute
    (REPLY_RECOVERY_INTERVAL_SECONDS) enqueues replies left in progress without a send job."""

    functions = outbound.FUNCTIONS
    cron_jobs = outbound.CRON_JOBS
    queue_name = Queue.OUTBOUND.value
    redis_settings = redis_settings_from(get_settings())
    on_startup = worker.startup
    on_shutdown = worker.shutdown
    on_job_start = worker.bind_job_logging
    max_jobs = worker.MAX_JOBS
    poll_delay = worker.POLL_DELAY_SECONDS
    job_completion_wait = worker.SHUTDOWN_WAIT_SECONDS
    keep_result = 3600
    max_tries = 10
