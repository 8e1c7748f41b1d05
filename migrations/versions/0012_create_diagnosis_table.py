"""create diagnosis table: ai_diagnoses (model output per pet, optionally per appointment)

TypeORM migration (guide #12):
    timestamp: 1750120000000
    class:     CreateDiagnosisTable1750120000000
    folder:    migrations  (file 1750120000000-CreateDiagnosisTable.ts)

The AI assistant's diagnoses: which model (and version) saw which symptoms of which pet,
its confidence (0-1) and its structured result; a vet marks it reviewed. Requested-by
and appointment are kept when they exist, SET NULL when they go.

Revision ID: 0012
Revises: 0011
Create Date: 2025-06-17 00:26:40
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
        "ai_diagnoses",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("pet_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("appointment_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("requested_by_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=True),
        sa.Column("symptoms", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Numeric(5, 4), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("reviewed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ai_diagnoses"),
        sa.ForeignKeyConstraint(["pet_id"], ["pets.id"], name="fk_ai_diagnoses_pet_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name="fk_ai_diagnoses_appointment_id", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name="fk_ai_diagnoses_requested_by_id", ondelete="SET NULL"
        ),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="ck_ai_diagnoses_confidence"),
    )
    op.create_index("ix_ai_diagnoses_pet_id_created_at", "ai_diagnoses", ["pet_id", "created_at"])
    op.create_index("ix_ai_diagnoses_appointment_id", "ai_diagnoses", ["appointment_id"])


def downgrade() -> None:
    op.drop_index("ix_ai_diagnoses_appointment_id", table_name="ai_diagnoses")
    op.drop_index("ix_ai_diagnoses_pet_id_created_at", table_name="ai_diagnoses")
    op.drop_table("ai_diagnoses")
