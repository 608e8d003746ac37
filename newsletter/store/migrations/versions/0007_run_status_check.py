"""digest_runs.status: a CHECK constraint, the values of RunStatus

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 22:30:00

Migration 0004 put a CHECK on every status column but this one: a run's
outcome per digest had no enum. Its values now come from ``RunStatus`` in
newsletter/states.py, written out here as 0004's are.

Every value a release ever wrote is one of them. A row holding anything else
(a hand edit) would stop the constraint from being added: it becomes
``failed`` (an outcome someone should look at; the next run of that digest
replaces it) and its message keeps the old word, ``status was 'X' before
migration 0007``. The row's idle count is kept. The downgrade drops the
constraint and leaves the rewritten rows as they are.

On SQLite batch mode recreates the table to add the constraint (the table
has no foreign keys either way).
"""

from alembic import op

from newsletter.states import check_values

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NAME = "ck_digest_runs_status"

#: RunStatus's values when this migration was written (a value added later needs a
#: migration of its own: tests/test_status_checks.py compares them)
VALUES = (
    "sent",
    "resumed",
    "sending",
    "partial",
    "already-sent",
    "paused",
    "skipped",
    "missed",
    "too-few-articles",
    "no-subscribers",
    "dry-run",
    "failed",
    "stale",
)
FAILED = "failed"


def upgrade() -> None:
    known = ", ".join(f"'{s}'" for s in VALUES)
    op.execute(
        f"UPDATE digest_runs SET message = 'status was ''' || status || "
        f"''' before migration 0007' || CASE WHEN message = '' THEN '' "
        f"ELSE ': ' || message END, status = '{FAILED}' "
        f"WHERE status NOT IN ({known})"
    )
    with op.batch_alter_table("digest_runs", recreate="auto") as batch_op:
        batch_op.create_check_constraint(NAME, check_values("status", VALUES))


def downgrade() -> None:
    with op.batch_alter_table("digest_runs", recreate="auto") as batch_op:
        batch_op.drop_constraint(NAME, type_="check")
