"""update medical records table: chief complaint, findings, weight and temperature of the visit

TypeORM migration (guide #8):
    timestamp: 1750033552868
    class:     UpdateMedicalRecordsTable1750033552868
    folder:    migrations  (file 1750033552868-UpdateMedicalRecordsTable.ts)

The vets asked for the structured fields of a clinical note (reason for the visit,
examination findings, weight and temperature taken at the visit) and the records screen
lists a visit's records, hence the appointment_id index. Generated from ``weight: number``
and ``temperature: number`` entity fields, it wrote both as ``double precision``:
FixDatabaseColumns (0010) turns them into exact numerics with a plausible range.

Revision ID: 0008
Revises: 0007
Create Date: 2025-06-16 00:25:52
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("medical_records", sa.Column("chief_complaint", sa.Text(), nullable=True))
    op.add_column("medical_records", sa.Column("findings", sa.Text(), nullable=True))
    op.add_column("medical_records", sa.Column("weight_kg", sa.Float(), nullable=True))
    op.add_column("medical_records", sa.Column("temperature_c", sa.Float(), nullable=True))
    op.create_index("ix_medical_records_appointment_id", "medical_records", ["appointment_id"])


def downgrade() -> None:
    op.drop_index("ix_medical_records_appointment_id", table_name="medical_records")
    for col in ("temperature_c", "weight_kg", "findings", "chief_complaint"):
        op.drop_column("medical_records", col)
