"""index replies waiting to send

Revision ID: 7c2e4b9d1f30
Revises: 0001
Create Date: 2026-12-01 09:00:00.000000+00:00

Built concurrently (outside the migration's transaction), so replies can still be written while
the index is built over a large messages table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c2e4b9d1f30"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING_TO_SEND = sa.text("message_type = 1 AND status = 'progress' AND NOT private AND source_id IS NULL")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_messages_waiting_to_send",
            "messages",
            ["id"],
            postgresql_where=WAITING_TO_SEND,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_messages_waiting_to_send",
            table_name="messages",
            postgresql_concurrently=True,
        )
