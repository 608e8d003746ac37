"""subscriptions per digest, consent, signup rate limits, forgotten addresses

Every subscriber before this revision got every digest the config named, now and later.
That is kept exactly: each gets one subscription to "*" (every digest without
a row of its own), active unless the subscriber had unsubscribed, with no
topics of its own (NULL: the subscriber's tags, as before).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_source", sa.String(length=20), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_ip", sa.String(length=64), nullable=False),
        sa.Column("consent_text", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber_id", "digest", name="uq_subscriptions_digest"),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_subscriptions_digest", ["digest", "status"], unique=False)
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.create_index("ix_rate_limits_expires", ["expires_at"], unique=False)
    op.create_table(
        "forgotten",
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_hash"),
    )
    # one statement, whatever the size of the list: "*" for everyone, as before
    op.execute(
        "INSERT INTO subscriptions (subscriber_id, digest, status, topics, created_at, "
        "updated_at, confirmed_at, unsubscribed_at, consent_source, consent_at, consent_ip, "
        "consent_text) "
        "SELECT id, '*', CASE WHEN status = 'unsubscribed' THEN 'unsubscribed' ELSE 'active' "
        "END, NULL, created_at, updated_at, created_at, "
        "CASE WHEN status = 'unsubscribed' THEN updated_at END, 'migration', created_at, '', '' "
        "FROM subscribers"
    )


def downgrade() -> None:
    op.drop_table("forgotten")
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_limits_expires")
    op.drop_table("rate_limits")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_digest")
    op.drop_table("subscriptions")
