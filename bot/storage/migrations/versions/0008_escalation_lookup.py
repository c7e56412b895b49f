"""escalation lookups: a conversation's open escalation, the latest claims

Every message that escalates looks up its conversation's open escalation, and every queue position
(told to each citizen waiting) reads the 20 latest claims for the expected wait; without these
indexes both were scans of every escalation ever opened, slower with each one (a crisis opens
thousands).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_escalations_conversation', 'escalations', ['conversation_id', 'status'])
    op.create_index('ix_escalations_claimed', 'escalations', ['claimed_at'])


def downgrade() -> None:
    op.drop_index('ix_escalations_claimed', table_name='escalations')
    op.drop_index('ix_escalations_conversation', table_name='escalations')
