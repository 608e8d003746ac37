"""SQLite: datetimes written by the bulk paths in SQLAlchemy's text form

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 20:20:00

The store's fast bulk writes (webhook events, their delivery updates, the
freeze) handed datetimes to sqlite3 as objects, which stored them in its own
text form (``2026-11-30 02:00:00+00:00``, the microseconds left out when zero)
instead of SQLAlchemy's (``2026-11-30 02:00:00.000000``). Reads parsed both,
but SQLite compares the text, and the two forms sort by accident, not by time.
Every such value was already in UTC, so the suffix is always ``+00:00``; this
rewrites them in SQLAlchemy's form. PostgreSQL stores timestamps, not text:
nothing to do there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    inspector = sa.inspect(bind)
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if not isinstance(column["type"], sa.DateTime):
                continue
            c = column["name"]
            op.execute(
                f"UPDATE {table} SET {c} = CASE WHEN length({c}) = 25 "
                f"THEN substr({c}, 1, 19) || '.000000' ELSE substr({c}, 1, 26) END "
                f"WHERE {c} LIKE '%+00:00'"
            )


def downgrade() -> None:
    # the new form is what SQLAlchemy writes and reads: nothing to undo
    pass
