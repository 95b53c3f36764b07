"""The schema `init-db` created before migrations existed.

A database made by that `init-db` has these tables already: `flask --app ivr db upgrade`
recognises it and stamps this revision instead of running it (ivr.schema.BASELINE_TABLES).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("line_number", sa.String(length=20), nullable=True),
        sa.Column("hold_music_url", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("line_number"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("room_id", "phone"),
    )
    op.create_index(op.f("ix_participants_phone"), "participants", ["phone"])
    op.create_index(op.f("ix_participants_room_id"), "participants", ["room_id"])
    for guard in ("number_guards", "sign_in_guards"):
        op.create_table(
            guard,
            sa.Column("phone", sa.String(length=20), nullable=False),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("locked_until", sa.DateTime(), nullable=True),
            sa.PrimaryKeyConstraint("phone"),
        )
    op.create_table(
        "code_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_code_sends_call_sid"), "code_sends", ["call_sid"])
    op.create_index(op.f("ix_code_sends_phone"), "code_sends", ["phone"])
    op.create_table(
        "one_time_codes",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("phone", "purpose"),
    )
    op.create_table(
        "call_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("room", sa.String(length=100), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_call_log_at"), "call_log", ["at"])
    op.create_index(op.f("ix_call_log_call_sid"), "call_log", ["call_sid"])
    op.create_index(op.f("ix_call_log_phone"), "call_log", ["phone"])
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("signed_out_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phone"),
    )
    op.create_table(
        "conference_members",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("conference_sid", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("muted", sa.Boolean(), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=False),
        sa.Column("left_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("call_sid"),
    )
    op.create_index(
        op.f("ix_conference_members_conference_sid"), "conference_members", ["conference_sid"]
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; participants go before the rooms they point at.
    for table in (
        "conference_members",
        "admins",
        "call_log",
        "one_time_codes",
        "code_sends",
        "sign_in_guards",
        "number_guards",
        "participants",
        "rooms",
    ):
        op.drop_table(table)
