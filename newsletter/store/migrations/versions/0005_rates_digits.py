"""rates.digits: how many significant digits a stored figure is good to

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 16:50:00

A fallback to a stored figure must not show fewer significant digits than the
configured precision when some stored figure has them (issue 14), so the
precision of each figure is stored beside it. Rows stored before are NULL:
their precision is unknown and they never count as precise.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rates") as batch:
        batch.add_column(sa.Column("digits", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rates") as batch:
        batch.drop_column("digits")
