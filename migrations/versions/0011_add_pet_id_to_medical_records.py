"""add pet_id to medical_records (FK CASCADE), backfilled from the appointment

TypeORM migration (guide #11):
    timestamp: 1750112631639
    class:     AddPetIdToMedicalRecords1750112631639
    folder:    migrations  (file 1750112631639-AddPetIdToMedicalRecords.ts)

A record must belong to a pet even when it was written outside an appointment (walk-in,
phone consultation). Existing rows take the pet of their appointment; a record with no
appointment cannot be placed, so the NOT NULL step fails loudly rather than guessing
(the pre-deploy orphan check reports such rows first).

Revision ID: 0011
Revises: 0010
Create Date: 2025-06-16 22:23:51
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("medical_records", sa.Column("pet_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.execute(sa.text(
        "UPDATE medical_records AS mr SET pet_id = a.pet_id "
        "FROM appointments AS a WHERE a.id = mr.appointment_id AND mr.pet_id IS NULL"
    ))
    op.alter_column("medical_records", "pet_id", existing_type=postgresql.UUID(as_uuid=True), nullable=False)
    op.create_foreign_key(
        "fk_medical_records_pet_id", "medical_records", "pets", ["pet_id"], ["id"], ondelete="CASCADE",
    )
    op.create_index("ix_medical_records_pet_id_visit_date", "medical_records", ["pet_id", "visit_date"])


def downgrade() -> None:
    # records without an appointment lose their only link to a pet: the older shape had
    # no way to express them either. They are kept (appointment_id NULL), as it allowed.
    op.drop_index("ix_medical_records_pet_id_visit_date", table_name="medical_records")
    op.drop_constraint("fk_medical_records_pet_id", "medical_records", type_="foreignkey")
    op.drop_column("medical_records", "pet_id")
