"""fix appointment columns (new): cancelled_at -> timestamptz, cancellation_reason -> text

TypeORM migration (guide #9):
    timestamp: 1750036733746
    class:     FixAppointmentColumnsNew1750036733746
    folder:    migrations  (file 1750036733746-FixAppointmentColumnsNew.ts; "New" because
               FixAppointmentColumns1749000003000 already existed in database/migrations)

Fixes the two columns UpdateAppointmentsTable (0007) left wrong: ``cancelled_at`` was a
``timestamp`` without time zone, unlike every other instant in the schema (existing
values were written by the API in UTC and are read as such), and ``cancellation_reason``
a ``varchar(255)`` that cut the reasons the front desk typed; it becomes ``text``.

Revision ID: 0009
Revises: 0008
Create Date: 2025-06-16 01:18:53
"""
from alembic import op
# Reviewed 2025-06: timestamp -> timestamptz reads the stored values as UTC; varchar -> text is lossless.
# vetai-ops: allow change_column_type appointments.cancelled_at, change_column_type appointments.cancellation_reason
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column(
        "appointments", "cancelled_at",
        existing_type=sa.DateTime(timezone=False), type_=sa.DateTime(timezone=True), existing_nullable=True,
        postgresql_using="cancelled_at AT TIME ZONE 'UTC'",
    )
    op.alter_column(
        "appointments", "cancellation_reason",
        existing_type=sa.String(255), type_=sa.Text(), existing_nullable=True,
    )


def downgrade() -> None:
    # reasons longer than 255 characters are cut: the old column could not hold them
    op.alter_column(
        "appointments", "cancellation_reason",
        existing_type=sa.Text(), type_=sa.String(255), existing_nullable=True,
        postgresql_using="left(cancellation_reason, 255)",
    )
    op.alter_column(
        "appointments", "cancelled_at",
        existing_type=sa.DateTime(timezone=True), type_=sa.DateTime(timezone=False), existing_nullable=True,
        postgresql_using="cancelled_at AT TIME ZONE 'UTC'",
    )
