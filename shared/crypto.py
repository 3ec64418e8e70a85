"""Secrets at rest and signed values, all keyed from SECRET_KEY.

Tokens are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from
SECRET_KEY with HKDF; API tokens are stored only as SHA-256 digests; OAuth `state` is signed
and time-limited with itsdangerous.
"""

import base64
import hashlib
import secrets
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

from shared.settings import get_settings


class DecryptionError(Exception):
    """The stored value was encrypted under another SECRET_KEY or was tampered with."""


@lru_cache
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"instagram-inbox/at-rest").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _current_fernet() -> Fernet:
    return _fernet(get_settings().SECRET_KEY.get_secret_value())


def encrypt(plaintext: str) -> str:
    return _current_fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _current_fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as error:
        raise DecryptionError("stored secret cannot be decrypted with the current SECRET_KEY") from error


class EncryptedText(TypeDecorator[str]):
    """A text column whose value is encrypted before it reaches the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else decrypt(value)


def new_token() -> str:
    """A random, URL-safe API token (shown once, stored as a digest)."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${derived.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, salt, expected = stored.split("$")
    derived = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1)
    return secrets.compare_digest(derived.hex(), expected)


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().SECRET_KEY.get_secret_value(), salt=salt)


class SignatureInvalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(value: Any, *, salt: str) -> str:
    return _serializer(salt).dumps(value)


def unsign(signed: str, *, salt: str, max_age_seconds: int) -> Any:
    """The signed value, or SignatureInvalid("expired" | "invalid")."""
    try:
        return _serializer(salt).loads(signed, max_age=max_age_seconds)
    except SignatureExpired as error:
        raise SignatureInvalid("expired") from error
    except BadSignature as error:
        raise SignatureInvalid("invalid") from error
