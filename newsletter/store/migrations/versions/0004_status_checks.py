"""status checks: every status column holds one of its enum's values

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 17:00:00

The allowed values come from the enums of newsletter/states.py, so the CHECK
constraints and the code cannot name different statuses. A later change to an
enum needs a migration of its own that drops and recreates the constraint.

On SQLite a CHECK constraint cannot be added to a table, so alembic's batch
mode recreates each table (copy, drop, rename). ``Store.migrate`` turns
foreign keys off on SQLite for that (dropping ``editions`` would otherwise
cascade to every delivery) and checks them before it commits.
"""

from enum import StrEnum

from alembic import op

from newsletter.states import (
    BatchStatus,
    DeliveryStatus,
    EditionStatus,
    EventType,
    SubscriberStatus,
    SubscriptionStatus,
    check_values,
)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: (table, column, the enum its values come from)
CHECKS: list[tuple[str, str, type[StrEnum]]] = [
    ("editions", "status", EditionStatus),
    ("batches", "status", BatchStatus),
    ("deliveries", "status", DeliveryStatus),
    ("subscribers", "status", SubscriberStatus),
    ("subscriptions", "status", SubscriptionStatus),
    ("events", "type", EventType),
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
