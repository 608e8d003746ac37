"""digest_runs: the last run's outcome per digest

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 16:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_runs",
        sa.Column("digest", sa.String(length=200), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("period", sa.String(length=64), nullable=False),
        sa.Column("edition_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("idle_periods", sa.Integer(), nullable=False),
        sa.Column("idle_period", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("digest_runs")
