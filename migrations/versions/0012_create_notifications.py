"""notifications: reminders and messages to users (email, sms, push, in-app)

TypeORM: CreateNotifications1750100000000

Revision ID: 0012
Revises: 0011
Create Date: 2025-06-15 00:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("appointment_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("channel", sa.String(20), server_default=sa.text("'in_app'"), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_notifications_user_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name="fk_notifications_appointment_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint("channel IN ('email', 'sms', 'push', 'in_app')", name="ck_notifications_channel"),
    )
    op.create_index("ix_notifications_user_id_created_at", "notifications", ["user_id", "created_at"])
    # the badge counter: unread notifications of a user
    op.create_index(
        "ix_notifications_user_id_unread", "notifications", ["user_id"],
        postgresql_where=sa.text("read_at IS NULL"),
    )
    # the sender job: due and not sent yet
    op.create_index(
        "ix_notifications_pending", "notifications", ["scheduled_for"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_index("ix_notifications_appointment_id", "notifications", ["appointment_id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_appointment_id", table_name="notifications")
    op.drop_index("ix_notifications_pending", table_name="notifications")
    op.drop_index("ix_notifications_user_id_unread", table_name="notifications")
    op.drop_index("ix_notifications_user_id_created_at", table_name="notifications")
    op.drop_table("notifications")
