"""vaccinations: vaccine history and next due date per pet

TypeORM: CreateVaccinations1750000000000

Revision ID: 0011
Revises: 0010
Create Date: 2025-06-14 00:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vaccinations",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("pet_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("veterinarian_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("vaccine_name", sa.String(120), nullable=False),
        sa.Column("batch_number", sa.String(60), nullable=True),
        sa.Column("administered_on", sa.Date(), nullable=False),
        sa.Column("next_due_on", sa.Date(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vaccinations"),
        sa.ForeignKeyConstraint(["pet_id"], ["pets.id"], name="fk_vaccinations_pet_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["veterinarian_id"], ["veterinarians.id"], name="fk_vaccinations_veterinarian_id", ondelete="SET NULL"
        ),
        sa.CheckConstraint(
            "next_due_on IS NULL OR next_due_on > administered_on", name="ck_vaccinations_next_due_after_administered"
        ),
    )
    op.create_index("ix_vaccinations_pet_id", "vaccinations", ["pet_id"])
    # reminder job: "which vaccines fall due next week"
    op.create_index("ix_vaccinations_next_due_on", "vaccinations", ["next_due_on"])


def downgrade() -> None:
    op.drop_index("ix_vaccinations_next_due_on", table_name="vaccinations")
    op.drop_index("ix_vaccinations_pet_id", table_name="vaccinations")
    op.drop_table("vaccinations")
