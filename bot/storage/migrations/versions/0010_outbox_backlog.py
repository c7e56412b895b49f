"""outbox backlog: a partial index on each user's unsent rows

The outbox sends each user's oldest unsent row next. It used to look for those among the 500 oldest unsent
rows: after an outage of WeChat's API, 500 rows still waiting out their backoff hid every newer row, so a
new person's emergency follow-up waited minutes behind other people's retries. The heads are now found
from this index of the backlog (rows pending or being sent), the due ones among them first by age.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BACKLOG = sa.text("status IN ('pending', 'sending')")


def upgrade() -> None:
    op.create_index('ix_outbox_backlog', 'outbox', ['user_id', 'id'], sqlite_where=BACKLOG,
                    postgresql_where=BACKLOG)


def downgrade() -> None:
    op.drop_index('ix_outbox_backlog', table_name='outbox')
