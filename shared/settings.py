"""Every setting of the contract, read from the environment (and `.env`)."""

from functools import lru_cache
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    APP_ENV: Literal["development", "test", "production"] = "development"
    DATABASE_URL: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/inbox"
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    FRONTEND_URL: str = "http://localhost:8001"
    SECRET_KEY: SecretStr = SecretStr(DEV_SECRET_KEY)

    INSTAGRAM_APP_ID: str = ""
    INSTAGRAM_APP_SECRET: SecretStr = SecretStr("")
    INSTAGRAM_VERIFY_TOKEN: SecretStr = SecretStr("")
    INSTAGRAM_API_VERSION: str = "v25.0"
    ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT: bool = False
    INSTAGRAM_WWW_BASE_URL: str = "https://www.instagram.com"
    INSTAGRAM_API_BASE_URL: str = "https://api.instagram.com"
    INSTAGRAM_GRAPH_BASE_URL: str = "https://graph.instagram.com"

    # Operational knobs (not part of the contract; safe defaults).
    LOG_LEVEL: str = "INFO"
    GRAPH_TIMEOUT_SECONDS: float = 10.0
    WEBHOOK_MAX_BODY_BYTES: int = 1_048_576
    # Meta may sign with the Meta app secret instead of the Instagram one; both are accepted.
    META_APP_SECRET: SecretStr = SecretStr("")
    STORAGE_DIR: str = "storage"
    # An S3-compatible bucket for attachments instead of STORAGE_DIR (empty: the local directory).
    S3_BUCKET: str = ""
    S3_ENDPOINT_URL: str = ""  # MinIO, R2, ...; empty: AWS's endpoint for S3_REGION
    S3_REGION: str = "us-east-1"
    S3_ACCESS_KEY_ID: str = ""
    S3_SECRET_ACCESS_KEY: SecretStr = SecretStr("")
    S3_KEY_PREFIX: str = ""  # prepended to every object key, e.g. "inbox/"
    PUBLIC_MEDIA_URL: str = "http://localhost:8003"
    APP_CONFIG_CACHE_SECONDS: float = 10.0
    RETRY_BASE_SECONDS: float = 2.0
    PROFILE_RETRY_SECONDS: int = 300  # an unreadable profile is tried again at most this often
    # A job running longer is cancelled; a job of a killed worker runs again this + 10 s later.
    JOB_TIMEOUT_SECONDS: int = 60
    TOKEN_REFRESH_INTERVAL_MINUTES: int = 60
    TOKEN_REFRESH_BATCH_SIZE: int = 500
    TOKEN_REFRESH_CONCURRENCY: int = 50
    TOKEN_REFRESH_METRICS_PORT: int | None = None  # serve Prometheus metrics of the sweep here
    REAUTH_ERROR_THRESHOLD: int = 3
    REAUTH_ERROR_WINDOW_SECONDS: int = 86_400
    # Meta's Send API limits per Instagram account (calls per second): text, and audio/video.
    SEND_RATE_LIMIT_PER_SECOND: int = 100
    MEDIA_SEND_RATE_LIMIT_PER_SECOND: int = 10
    # The outbound worker's sweep for replies left in `progress` without a send job (Redis failed
    # between the reply's commit and its enqueue): how often it runs (1-60 s), and how old a reply
    # must be before it is touched (younger ones may still have their enqueue in flight).
    REPLY_RECOVERY_INTERVAL_SECONDS: int = 60
    REPLY_RECOVERY_GRACE_SECONDS: int = 60
    # Account webhooks (events for API consumers).
    WEBHOOK_ALLOW_PRIVATE_ADDRESSES: bool = False
    EVENT_DISPATCH_INTERVAL_SECONDS: float = 0.2
    EVENT_DELIVERY_TIMEOUT_SECONDS: float = 5.0
    EVENT_DELIVERY_MAX_TRIES: int = 12
    WEBHOOK_DISABLE_AFTER_SECONDS: int = 86_400

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> "Settings":
        if self.APP_ENV == "production" and self.SECRET_KEY.get_secret_value() in ("", DEV_SECRET_KEY):
            raise ValueError("SECRET_KEY must be set to a real secret when APP_ENV=production")
        return self

    @model_validator(mode="after")
    def _require_s3_credentials(self) -> "Settings":
        if self.S3_BUCKET and not (self.S3_ACCESS_KEY_ID and self.S3_SECRET_ACCESS_KEY.get_secret_value()):
            raise ValueError("S3_BUCKET is set: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are required too")
        if self.S3_BUCKET and not self.S3_REGION:
            raise ValueError("S3_BUCKET is set: S3_REGION is required too (us-east-1 when unsure)")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
