"""open inbound messages: a partial index on a user's unanswered messages

Every message looks up its user's earlier messages that are not answered yet (they are answered first).
Through (user_id, id) that walked the user's whole history, replies included, in the writer that every
message waits on: about 3 ms for a user with 20,000 messages. The partial index holds only the open
ones, a handful at most, so the lookup costs the same for a new user and for one who has written for years.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OPEN_INBOUND = sa.text("direction = 'in' AND status = 'received'")


def upgrade() -> None:
    op.create_index('ix_messages_open_inbound', 'messages', ['user_id', 'id'], sqlite_where=OPEN_INBOUND,
                    postgresql_where=OPEN_INBOUND)


def downgrade() -> None:
    op.drop_index('ix_messages_open_inbound', table_name='messages')
