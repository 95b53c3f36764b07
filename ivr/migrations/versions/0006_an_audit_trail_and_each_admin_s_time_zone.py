"""An audit trail of what admins change; each admin's time zone for the console.

Safe while the previous release still runs: a new table it never reads, and a nullable column.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("changes", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("at", "actor", "action", "target"):
        op.create_index(op.f(f"ix_audit_log_{column}"), "audit_log", [column])
    with op.batch_alter_table("admins") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Going back drops the trail: take a copy first if you need it (see the README).
    with op.batch_alter_table("admins") as batch:
        batch.drop_column("time_zone")
    op.drop_table("audit_log")
