import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import crypto
from shared.models import AccessToken
from tests.conftest import Factory


async def test_channel_token_is_encrypted_at_rest(db: AsyncSession, factory: Factory) -> None:
    account = await factory.account()
    await factory.inbox(account, access_token="IGAA-very-secret-token")

    stored = await db.scalar(text("SELECT access_token FROM channel_instagram"))

    assert stored is not None and "IGAA-very-secret-token" not in stored
    assert crypto.decrypt(stored) == "IGAA-very-secret-token"


async def test_api_tokens_are_stored_only_as_digests(db: AsyncSession, factory: Factory) -> None:
    account = await factory.account()
    _, token = await factory.user(account)

    digests = list(await db.scalars(text("SELECT token_digest FROM access_tokens")))

    assert token not in digests
    assert crypto.digest(token) in digests
    assert AccessToken.__table__.c.token_digest.unique


def test_ciphertext_from_another_key_is_refused() -> None:
    foreign = crypto._fernet("another-secret-key").encrypt(b"token").decode()
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(foreign)


def test_signed_values_expire_and_detect_tampering() -> None:
    signed = crypto.sign({"account_id": 7}, salt="test")
    assert crypto.unsign(signed, salt="test", max_age_seconds=60) == {"account_id": 7}
    with pytest.raises(crypto.SignatureInvalid) as invalid:
        crypto.unsign(signed[:-2] + "xx", salt="test", max_age_seconds=60)
    assert invalid.value.reason == "invalid"
    with pytest.raises(crypto.SignatureInvalid) as expired:
        crypto.unsign(signed, salt="test", max_age_seconds=-1)
    assert expired.value.reason == "expired"


def test_passwords_are_salted_and_verifiable() -> None:
    first, second = crypto.hash_password("correct horse"), crypto.hash_password("correct horse")
    assert first != second
    assert crypto.verify_password("correct horse", first)
    assert not crypto.verify_password("wrong horse", first)
