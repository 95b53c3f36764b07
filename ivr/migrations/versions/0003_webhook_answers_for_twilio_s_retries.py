"""Webhook answers kept by idempotency token, so a request Twilio sends again acts only once.

A new table: safe while the previous release still runs, which never reads it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_answers",
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("path", sa.String(length=100), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )
    op.create_index(op.f("ix_webhook_answers_at"), "webhook_answers", ["at"])


def downgrade() -> None:
    op.drop_table("webhook_answers")
