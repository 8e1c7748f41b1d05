"""prescriptions: medication prescribed in a medical record

TypeORM: CreatePrescriptions1749900000000

Revision ID: 0010
Revises: 0009
Create Date: 2025-06-13 00:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prescriptions",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("medical_record_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("pet_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("veterinarian_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("medication", sa.String(150), nullable=False),
        sa.Column("dosage", sa.String(100), nullable=False),
        sa.Column("frequency", sa.String(100), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("start_date", sa.Date(), server_default=sa.text("CURRENT_DATE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prescriptions"),
        sa.ForeignKeyConstraint(
            ["medical_record_id"], ["medical_records.id"], name="fk_prescriptions_medical_record_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["pet_id"], ["pets.id"], name="fk_prescriptions_pet_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["veterinarian_id"], ["veterinarians.id"], name="fk_prescriptions_veterinarian_id", ondelete="SET NULL"
        ),
        sa.CheckConstraint("duration_days IS NULL OR duration_days > 0", name="ck_prescriptions_duration_days"),
    )
    op.create_index("ix_prescriptions_medical_record_id", "prescriptions", ["medical_record_id"])
    op.create_index("ix_prescriptions_pet_id", "prescriptions", ["pet_id"])


def downgrade() -> None:
    op.drop_index("ix_prescriptions_pet_id", table_name="prescriptions")
    op.drop_index("ix_prescriptions_medical_record_id", table_name="prescriptions")
    op.drop_table("prescriptions")
