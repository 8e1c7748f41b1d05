"""add image support: pets.photo_url and the attachments table (files kept in object storage)

TypeORM migration (guide #6):
    timestamp: 1749000005000
    class:     AddImageSupport1749000005000
    folder:    database/migrations  (file 1749000005000-AddImageSupport.ts)

A pet gets a profile photo; x-rays, lab results and photos of a visit become attachments
of the pet, optionally of an appointment and of a medical record. The database keeps
only the metadata and the object-storage key (unique), never the bytes.

Revision ID: 0006
Revises: 0005
Create Date: 2025-06-04 01:20:05
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pets", sa.Column("photo_url", sa.String(500), nullable=True))
    op.create_table(
        "attachments",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("pet_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("appointment_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("medical_record_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("uploaded_by_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
        sa.ForeignKeyConstraint(["pet_id"], ["pets.id"], name="fk_attachments_pet_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name="fk_attachments_appointment_id", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["medical_record_id"], ["medical_records.id"], name="fk_attachments_medical_record_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"], ["users.id"], name="fk_attachments_uploaded_by_id", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("storage_key", name="uq_attachments_storage_key"),
        sa.CheckConstraint("size_bytes >= 0", name="ck_attachments_size_bytes"),
    )
    op.create_index("ix_attachments_pet_id", "attachments", ["pet_id"])
    op.create_index("ix_attachments_appointment_id", "attachments", ["appointment_id"])
    op.create_index("ix_attachments_medical_record_id", "attachments", ["medical_record_id"])


def downgrade() -> None:
    op.drop_index("ix_attachments_medical_record_id", table_name="attachments")
    op.drop_index("ix_attachments_appointment_id", table_name="attachments")
    op.drop_index("ix_attachments_pet_id", table_name="attachments")
    op.drop_table("attachments")
    op.drop_column("pets", "photo_url")
