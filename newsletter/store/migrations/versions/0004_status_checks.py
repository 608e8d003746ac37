"""status checks: every status column holds one of its enum's values

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 17:00:00

The allowed values are the enums' of newsletter/states.py as they were then,
written out here: a later change to an enum needs a migration of its own that
drops and recreates the constraint, and tests/test_status_checks.py fails until
the database's constraints and the enums name the same statuses.

On SQLite a CHECK constraint cannot be added to a table, so alembic's batch
mode recreates each table (copy, drop, rename). ``Store.migrate`` turns
foreign keys off on SQLite for that (dropping ``editions`` would otherwise
cascade to every delivery) and checks them before it commits.
"""

from alembic import op

from newsletter.states import check_values

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: (table, column, the values allowed): written out, not read from the enums, so
#: that a value added to an enum later needs a migration of its own
#: (tests/test_status_checks.py compares the database's constraints with the enums)
CHECKS: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "editions",
        "status",
        (
            "compiled",
            "sending",
            "paused",
            "sent",
            "partially_failed",
            "cancelled",
            "skipped",
        ),
    ),
    (
        "batches",
        "status",
        (
            "claimed",
            "accepted",
            "failed",
            "requeued",
            "unknown",
            "cancelled",
            "resolved",
        ),
    ),
    (
        "deliveries",
        "status",
        (
            "queued",
            "claimed",
            "failed",
            "unresolved",
            "cancelled",
            "left",
            "accepted",
            "deferred",
            "delivered",
            "dropped",
            "bounced",
            "unsubscribed",
            "complained",
        ),
    ),
    (
        "subscribers",
        "status",
        (
            "active",
            "pending",
            "suppressed",
            "unsubscribed",
            "bounced",
            "complained",
            "forgotten",
        ),
    ),
    (
        "subscriptions",
        "status",
        (
            "active",
            "pending",
            "unsubscribed",
        ),
    ),
    (
        "events",
        "type",
        (
            "queued",
            "delivered",
            "deferred",
            "bounced",
            "dropped",
            "complained",
            "unsubscribed",
            "opened",
            "clicked",
            "unknown",
        ),
    ),
]


def name(table: str, column: str) -> str:
    return f"ck_{table}_{column}"


def upgrade() -> None:
    for table, column, states in CHECKS:
        with op.batch_alter_table(table, recreate="auto") as batch_op:
            batch_op.create_check_constraint(name(table, column), check_values(column, states))


def downgrade() -> None:
    for table, column, _ in reversed(CHECKS):
        with op.batch_alter_table(table, recreate="auto") as batch_op:
            batch_op.drop_constraint(name(table, column), type_="check")
