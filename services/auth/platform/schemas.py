from datetime import datetime

from pydantic import BaseModel, EmailStr, Field, field_serializer

from shared.models import Role


class AccountCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)


class AccountRead(BaseModel):
    id: int
    name: str
    created_at: datetime

    @field_serializer("created_at")
    def _unix(self, value: datetime) -> int:
        return int(value.timestamp())


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    email: EmailStr
    password: str = Field(min_length=8, max_length=255)


class UserRead(BaseModel):
    id: int
    name: str
    email: str
    access_token: str = Field(description="shown once; only its digest is stored")


class AccountUserCreate(BaseModel):
    user_id: int
    role: Role = Role.AGENT


class AccountUserRead(BaseModel):
    account_id: int
    user_id: int
    role: Role
