"""add missing pet columns: microchip, weight_kg, color, sterilized, birth_date, sex

TypeORM migration (guide #3):
    timestamp: 1749000002000
    class:     AddMissingPetColumns1749000002000
    folder:    database/migrations  (file 1749000002000-AddMissingPetColumns.ts)

The Pet entity already declared these fields when InitialDatabaseSchema was generated
from an older copy of it; the API failed on every pet read in production until they
were added. All are nullable or have a default, so existing pets need no backfill.

Revision ID: 0003
Revises: 0002
Create Date: 2025-06-04 01:20:02
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pets", sa.Column("microchip", sa.String(15), nullable=True))  # ISO 11784: 15 digits
    op.add_column("pets", sa.Column("weight_kg", sa.Numeric(6, 2), nullable=True))
    op.add_column("pets", sa.Column("color", sa.String(40), nullable=True))
    op.add_column("pets", sa.Column("sterilized", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.add_column("pets", sa.Column("birth_date", sa.Date(), nullable=True))
    op.add_column("pets", sa.Column("sex", sa.String(10), server_default=sa.text("'unknown'"), nullable=False))
    op.create_check_constraint("ck_pets_weight_kg_positive", "pets", "weight_kg IS NULL OR weight_kg > 0")
    op.create_check_constraint("ck_pets_sex", "pets", "sex IN ('male', 'female', 'unknown')")


def downgrade() -> None:
    op.drop_constraint("ck_pets_sex", "pets", type_="check")
    op.drop_constraint("ck_pets_weight_kg_positive", "pets", type_="check")
    for col in ("sex", "birth_date", "sterilized", "color", "weight_kg", "microchip"):
        op.drop_column("pets", col)
