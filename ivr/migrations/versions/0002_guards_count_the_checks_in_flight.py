"""Guards count the code checks still in flight, so a success in a burst cannot reopen it.

Safe while the previous release still runs: the column has a server default, and the old code
never reads it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GUARDS = ("number_guards", "sign_in_guards")


def upgrade() -> None:
    for table in GUARDS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("checking", sa.Integer(), server_default="0", nullable=False)
            )


def downgrade() -> None:
    for table in GUARDS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("checking")
