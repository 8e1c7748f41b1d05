"""fix appointment columns: appointment_date + appointment_time -> scheduled_at, add duration_minutes

TypeORM migration (guide #4):
    timestamp: 1749000003000
    class:     FixAppointmentColumns1749000003000
    folder:    database/migrations  (file 1749000003000-FixAppointmentColumns.ts)

The entity has one ``scheduledAt: Date`` (timestamptz); InitialDatabaseSchema stored a
date and an 'HH:MM' string, which made "appointments of vet X between two instants"
a string comparison. The two are merged (read as UTC, the time zone the API server ran
in), then dropped; appointments get a duration (5 minutes to 8 hours, 30 by default).

Revision ID: 0004
Revises: 0003
Create Date: 2025-06-04 01:20:03
"""
from alembic import op
# Reviewed 2025-06: both columns are copied into scheduled_at (and NOT NULL is checked) before they are dropped.
# vetai-ops: allow drop_column appointments.appointment_time, drop_column appointments.appointment_date
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("appointments", sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text(
        "UPDATE appointments SET scheduled_at = (appointment_date + appointment_time::time) AT TIME ZONE 'UTC'"
    ))
    op.alter_column("appointments", "scheduled_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.drop_constraint("ck_appointments_appointment_time", "appointments", type_="check")
    op.drop_column("appointments", "appointment_time")
    op.drop_column("appointments", "appointment_date")
    op.add_column(
        "appointments",
        sa.Column("duration_minutes", sa.Integer(), server_default=sa.text("30"), nullable=False),
    )
    op.create_check_constraint(
        "ck_appointments_duration_minutes", "appointments", "duration_minutes BETWEEN 5 AND 480"
    )


def downgrade() -> None:
    # the old shape has no seconds: 10:30:45 goes back as '10:30'; durations are dropped
    op.drop_constraint("ck_appointments_duration_minutes", "appointments", type_="check")
    op.drop_column("appointments", "duration_minutes")
    op.add_column("appointments", sa.Column("appointment_date", sa.Date(), nullable=True))
    op.add_column("appointments", sa.Column("appointment_time", sa.String(5), nullable=True))
    op.execute(sa.text(
        "UPDATE appointments SET appointment_date = (scheduled_at AT TIME ZONE 'UTC')::date, "
        "appointment_time = to_char(scheduled_at AT TIME ZONE 'UTC', 'HH24:MI')"
    ))
    op.alter_column("appointments", "appointment_date", existing_type=sa.Date(), nullable=False)
    op.alter_column("appointments", "appointment_time", existing_type=sa.String(5), nullable=False)
    op.create_check_constraint(
        "ck_appointments_appointment_time", "appointments", "appointment_time ~ '^[0-2][0-9]:[0-5][0-9]$'"
    )
    op.drop_column("appointments", "scheduled_at")
