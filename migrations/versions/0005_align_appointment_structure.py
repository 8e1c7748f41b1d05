"""align appointment structure: veterinarian optional, FK ON DELETE SET NULL, lookup indexes

TypeORM migration (guide #5):
    timestamp: 1749000004000
    class:     AlignAppointmentStructure1749000004000
    folder:    database/migrations  (file 1749000004000-AlignAppointmentStructure.ts)

Aligns the table with the entity's ``@ManyToOne(() => Veterinarian, {nullable: true,
onDelete: 'SET NULL'})``: a veterinarian leaving the clinic must not block the deletion
nor erase the pet's appointment history; the appointment stays, unassigned. Adds the
indexes the agenda screens query by (pet, vet + time, time).

Revision ID: 0005
Revises: 0004
Create Date: 2025-06-04 01:20:04
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("appointments", "veterinarian_id", existing_type=postgresql.UUID(as_uuid=True), nullable=True)
    op.drop_constraint("fk_appointments_veterinarian_id", "appointments", type_="foreignkey")
    op.create_foreign_key(
        "fk_appointments_veterinarian_id", "appointments", "veterinarians",
        ["veterinarian_id"], ["id"], ondelete="SET NULL",
    )
    op.create_index("ix_appointments_pet_id", "appointments", ["pet_id"])
    op.create_index("ix_appointments_veterinarian_id_scheduled_at", "appointments", ["veterinarian_id", "scheduled_at"])
    op.create_index("ix_appointments_scheduled_at", "appointments", ["scheduled_at"])


def downgrade() -> None:
    op.drop_index("ix_appointments_scheduled_at", table_name="appointments")
    op.drop_index("ix_appointments_veterinarian_id_scheduled_at", table_name="appointments")
    op.drop_index("ix_appointments_pet_id", table_name="appointments")
    op.drop_constraint("fk_appointments_veterinarian_id", "appointments", type_="foreignkey")
    op.create_foreign_key(
        "fk_appointments_veterinarian_id", "appointments", "veterinarians", ["veterinarian_id"], ["id"],
    )
    # fails (NOT NULL violation) if appointments lost their vet since: there is no vet to
    # put back, so the operator must decide (restore the backup instead of downgrading)
    op.alter_column("appointments", "veterinarian_id", existing_type=postgresql.UUID(as_uuid=True), nullable=False)
