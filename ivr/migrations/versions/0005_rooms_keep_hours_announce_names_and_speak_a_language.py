"""Rooms keep opening hours in a time zone, announce names, and speak a language.

Safe while the previous release still runs: every new column is nullable or has a server
default that keeps today's behaviour (always open, US English), and the old code never reads
them. Announcements start on for existing rooms, as the issue asks of the option's default.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("opening_hours", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("moderators_anytime", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(
            sa.Column("announce_names", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(
            sa.Column("language", sa.String(length=16), server_default="en-US", nullable=False)
        )


def downgrade() -> None:
    # Going back to a release without hours or languages: every room is open, in English.
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("language")
        batch.drop_column("announce_names")
        batch.drop_column("moderators_anytime")
        batch.drop_column("opening_hours")
        batch.drop_column("time_zone")
