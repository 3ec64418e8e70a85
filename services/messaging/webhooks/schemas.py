from datetime import datetime

from pydantic import BaseModel, Field, field_serializer

from shared.events import Event


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2048, description="http(s) URL without credentials")
    subscriptions: list[Event] = Field(min_length=1, description="event names to deliver")
    inbox_id: int | None = Field(default=None, description="only events of this inbox")


class WebhookUpdate(BaseModel):
    url: str | None = Field(default=None, max_length=2048)
    subscriptions: list[Event] | None = Field(default=None, min_length=1)
    inbox_id: int | None = None
    enabled: bool | None = Field(
        default=None, description="true re-enables a webhook disabled after failures"
    )


class WebhookRead(BaseModel):
    id: int
    account_id: int
    url: str
    subscriptions: list[str]
    inbox_id: int | None
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime

    @field_serializer("failing_since", "created_at")
    def _unix(self, value: datetime | None) -> int | None:
        return None if value is None else int(value.timestamp())


class WebhookCreated(WebhookRead):
    secret: str = Field(description="signing secret; shown only in this response")


class DeliveryRead(BaseModel):
    id: int
    event_id: int
    event: str
    attempt: int
    status_code: int | None
    latency_ms: int | None
    error: str | None
    delivered: bool
    created_at: datetime

    @field_serializer("created_at")
    def _unix(self, value: datetime) -> int:
        return int(value.timestamp())
