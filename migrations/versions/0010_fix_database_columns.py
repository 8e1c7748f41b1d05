"""fix database columns: clients.phone varchar(30), medical_records weight/temperature as exact numerics

TypeORM migration (guide #10):
    timestamp: 1750038234648
    class:     FixDatabaseColumns1750038234648
    folder:    migrations  (file 1750038234648-FixDatabaseColumns.ts)

Columns left wrong by earlier migrations, across tables:

- clients.phone: InitialDatabaseSchema gave it the same varchar(15) that
  FixUserPhoneColumn (0002) fixed for users only; widened to 30, '' becomes NULL;
- medical_records.weight_kg / temperature_c: UpdateMedicalRecordsTable (0008) wrote
  them as double precision (37.999999...); they become numeric(6,2) / numeric(4,1),
  like pets.weight_kg, and a temperature must be plausible (30-45 °C).

Revision ID: 0010
Revises: 0009
Create Date: 2025-06-16 01:43:54
"""
from alembic import op
# Reviewed 2025-06: widening is lossless; float -> numeric rounds to the precision the vets record.
# vetai-ops: allow change_column_type clients.phone
# vetai-ops: allow change_column_type medical_records.weight_kg, change_column_type medical_records.temperature_c
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("clients", "phone", existing_type=sa.String(15), type_=sa.String(30), existing_nullable=True)
    op.execute(sa.text("UPDATE clients SET phone = NULL WHERE btrim(phone) = ''"))
    op.alter_column(
        "medical_records", "weight_kg",
        existing_type=sa.Float(), type_=sa.Numeric(6, 2), existing_nullable=True,
    )
    op.alter_column(
        "medical_records", "temperature_c",
        existing_type=sa.Float(), type_=sa.Numeric(4, 1), existing_nullable=True,
    )
    op.create_check_constraint(
        "ck_medical_records_temperature_c", "medical_records", "temperature_c IS NULL OR temperature_c BETWEEN 30 AND 45"
    )


def downgrade() -> None:
    op.drop_constraint("ck_medical_records_temperature_c", "medical_records", type_="check")
    op.alter_column(
        "medical_records", "temperature_c",
        existing_type=sa.Numeric(4, 1), type_=sa.Float(), existing_nullable=True,
    )
    op.alter_column(
        "medical_records", "weight_kg",
        existing_type=sa.Numeric(6, 2), type_=sa.Float(), existing_nullable=True,
    )
    # numbers longer than the old 15 characters are cut; NULL stays NULL (the column was nullable)
    op.alter_column(
        "clients", "phone",
        existing_type=sa.String(30), type_=sa.String(15), existing_nullable=True,
        postgresql_using="left(phone, 15)",
    )
