"""appointments and medical records: cancellation fields, the medical_records table

Medical records are first attached to appointments only (pet_id follows in 0008);
attachments can now belong to a medical record.

TypeORM: UpdateAppointmentsAndMedicalRecords1749600000000

Revision ID: 0007
Revises: 0006
Create Date: 2025-06-10 00:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("appointments", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("appointments", sa.Column("cancellation_reason", sa.Text(), nullable=True))

    op.create_table(
        "medical_records",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("appointment_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("veterinarian_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("visit_date", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("chief_complaint", sa.Text(), nullable=True),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("diagnosis", sa.Text(), nullable=True),
        sa.Column("treatment", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("weight_kg", sa.Numeric(6, 2), nullable=True),
        sa.Column("temperature_c", sa.Numeric(4, 1), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_medical_records"),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name="fk_medical_records_appointment_id", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["veterinarian_id"], ["veterinarians.id"], name="fk_medical_records_veterinarian_id", ondelete="SET NULL"
        ),
        sa.CheckConstraint("temperature_c IS NULL OR temperature_c BETWEEN 30 AND 45", name="ck_medical_records_temperature_c"),
    )
    op.create_index("ix_medical_records_appointment_id", "medical_records", ["appointment_id"])

    op.add_column("attachments", sa.Column("medical_record_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_foreign_key(
        "fk_attachments_medical_record_id", "attachments", "medical_records",
        ["medical_record_id"], ["id"], ondelete="CASCADE",
    )
    # attachments was created one revision ago and is small: a plain index is fine here
    op.create_index("ix_attachments_medical_record_id", "attachments", ["medical_record_id"])


def downgrade() -> None:
    op.drop_index("ix_attachments_medical_record_id", table_name="attachments")
    op.drop_constraint("fk_attachments_medical_record_id", "attachments", type_="foreignkey")
    op.drop_column("attachments", "medical_record_id")
    op.drop_index("ix_medical_records_appointment_id", table_name="medical_records")
    op.drop_table("medical_records")
    op.drop_column("appointments", "cancellation_reason")
    op.drop_column("appointments", "cancelled_at")
