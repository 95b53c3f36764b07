"""Participants choose how they get codes (sms, whatsapp, app); authenticator app enrolments.

Safe while the previous release still runs: the new columns have a server default or are
nullable, the new table is one it never reads, and every participant starts on sms, as today.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("participants") as batch:
        batch.add_column(
            sa.Column("code_by", sa.String(length=16), server_default="sms", nullable=False)
        )
        batch.add_column(sa.Column("app_secret", sa.Text(), nullable=True))
        batch.add_column(sa.Column("app_last_step", sa.BigInteger(), nullable=True))
    op.create_table(
        "enrolments",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("app_secret", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["participant_id"], ["participants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(op.f("ix_enrolments_participant_id"), "enrolments", ["participant_id"])


def downgrade() -> None:
    # Going back to a release without authenticator apps: their participants get SMS again.
    op.drop_table("enrolments")
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("app_last_step")
        batch.drop_column("app_secret")
        batch.drop_column("code_by")
