"""The sandbox's in-memory Instagram: business accounts, customers, tokens, codes, messages."""

import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

SCOPES = (
    "instagram_business_basic",
    "instagram_business_manage_messages",
    "instagram_business_manage_comments",
    "instagram_business_content_publish",
    "instagram_business_manage_insights",
)
LEGACY_SCOPES = (
    "business_basic",
    "business_manage_messages",
    "business_manage_comments",
    "business_content_publish",
)
WEBHOOK_FIELDS = frozenset(
    {
        "messages",
        "message_reactions",
        "messaging_seen",
        "messaging_postbacks",
        "messaging_referral",
        "messaging_optins",
        "messaging_handover",
        "standby",
        "message_edit",
        "message_echoes",
        "comments",
        "live_comments",
        "mentions",
    }
)
HOUR, DAY = 3_600, 86_400


class GraphFault(Exception):
    """An error answered in Meta's Graph envelope."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        kind: str = "OAuthException",
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.code, self.subcode, self.message, self.kind, self.status = code, subcode, message, kind, status

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.kind, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = secrets.token_urlsafe(8)
        return {"error": error}


class OAuthFault(Exception):
    """An error of the code-exchange host, in its flat envelope."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error_type": "OAuthException", "code": 400, "error_message": self.message}


@dataclass
class Business:
    ig_id: str  # `/me.user_id`, webhook `entry.id`
    asid: int  # `/me.id` and the code exchange's `user_id` (an app-scoped id, > 2**53)
    username: str
    name: str
    profile_picture_url: str
    followers_count: int = 1523
    follows_count: int = 87
    media_count: int = 42
    account_type: str = "BUSINESS"
    subscribed_fields: list[str] = field(default_factory=list)

    def me(self) -> dict[str, Any]:
        return {
            "id": str(self.asid),
            "user_id": self.ig_id,
            "username": self.username,
            "name": self.name,
            "account_type": self.account_type,
            "profile_picture_url": self.profile_picture_url,
            "followers_count": self.followers_count,
            "follows_count": self.follows_count,
            "media_count": self.media_count,
        }


@dataclass
class Customer:
    igsid: str
    name: str | None
    username: str
    profile_pic: str | None
    follower_count: int = 0
    is_verified_user: bool = False
    is_user_follow_business: bool = True
    is_business_follow_user: bool = False

    def profile(self) -> dict[str, Any]:
        return {
            "id": self.igsid,
            "name": self.name,
            "username": self.username,
            "profile_pic": self.profile_pic,
            "follower_count": self.follower_count,
            "is_verified_user": self.is_verified_user,
            "is_user_follow_business": self.is_user_follow_business,
            "is_business_follow_user": self.is_business_follow_user,
        }


@dataclass
class Token:
    value: str
    business: str  # ig_id
    long_lived: bool
    issued_at: float
    expires_at: float
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class Code:
    value: str
    redirect_uri: str
    business: str
    scopes: tuple[str, ...]
    expires_at: float
    used: bool = False


@dataclass
class Sent:
    mid: str
    business: str
    recipient: str
    body: dict[str, Any]
    at: float
    # What the attachments' URLs answered when the message was sent (Meta downloads them then).
    fetched: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Fault:
    path_regex: str
    times: int
    method: str | None = None
    status: int | None = None
    body: Any = None
    error: dict[str, Any] | None = None
    hang_seconds: float = 0.0


def _seed_businesses() -> dict[str, Business]:
    acme = Business(
        ig_id="17841400000000001",
        asid=26001234567890123,
        username="acme_shop",
        name="Acme",
        profile_picture_url="https://scontent.cdninstagram.example/acme_shop.jpg",
    )
    return {acme.ig_id: acme}


def _seed_customers() -> dict[str, Customer]:
    cdn = "https://scontent.cdninstagram.example"
    people = [
        Customer("1190000000000001", "Jane Doe", "jane.doe", f"{cdn}/jane.jpg", 312),
        Customer("1190000000000002", "Omar Haddad", "omar.h", f"{cdn}/omar.jpg", 5120, is_verified_user=True),
        Customer("1190000000000003", None, "quiet.customer", None, 12, is_user_follow_business=False),
    ]
    return {person.igsid: person for person in people}


class World:
    """Everything the sandbox knows. One instance per app; `reset()` returns to the seed."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.businesses = _seed_businesses()
        self.customers = _seed_customers()
        self.tokens: dict[str, Token] = {}
        self.codes: dict[str, Code] = {}
        self.last_inbound: dict[tuple[str, str], float] = {}  # (business, igsid) -> customer's last message
        self.sent: list[Sent] = []
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.faults: list[Fault] = []
        self.send_times: dict[tuple[str, str], deque[float]] = {}  # (business, "text"|"media") -> call times
        self._mids = itertools.count(1)

    def new_mid(self) -> str:
        return f"aWdfZG1f{secrets.token_hex(6)}{next(self._mids):06d}"

    # -- tokens --------------------------------------------------------------------------

    def mint_token(
        self,
        business: str,
        *,
        long_lived: bool,
        scopes: tuple[str, ...] = SCOPES[:2],
        lifetime: float,
        age: float = 0,
    ) -> Token:
        now = time.time()
        prefix = "IGAAlong" if long_lived else "IGAAshort"
        token = Token(
            value=f"{prefix}{secrets.token_urlsafe(24)}",
            business=business,
            long_lived=long_lived,
            issued_at=now - age,
            expires_at=now - age + lifetime,
            scopes=scopes,
        )
        self.tokens[token.value] = token
        return token

    def token(self, value: str | None) -> Token:
        """The valid token, or Meta's 190 error."""
        token = self.tokens.get(value or "")
        if token is None or token.revoked:
            raise GraphFault(190, "Invalid OAuth access token - Cannot parse access token", subcode=467)
        if token.expires_at <= time.time():
            raise GraphFault(190, "Error validating access token: Session has expired", subcode=463)
        return token

    def business(self, ig_id: str) -> Business:
        business = self.businesses.get(ig_id)
        if business is None:
            raise GraphFault(100, f"Unsupported request: object with ID '{ig_id}' does not exist", subcode=33)
        return business

    def window_open_since(self, business: str, igsid: str) -> float | None:
        return self.last_inbound.get((business, igsid))

    def record_inbound(self, business: str, igsid: str, at: float | None = None) -> None:
        self.last_inbound[(business, igsid)] = at if at is not None else time.time()

    def take_rate_slot(self, business: str, kind: str, limit: int) -> bool:
        """Sliding one-second window per business and kind; False when the limit is reached."""
        now = time.monotonic()
        calls = self.send_times.setdefault((business, kind), deque())
        while calls and now - calls[0] >= 1.0:
            calls.popleft()
        if len(calls) >= limit:
            return False
        calls.append(now)
        return True
