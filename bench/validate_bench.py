"""Time the static gate on a generated 350-revision linear Alembic history.

    python bench/validate_bench.py [N]

Each generated revision looks like a real one (~40 lines: docstring, imports, metadata,
create_table / add_column / create_index / alter_column / batch ops, a real downgrade).
Target: well under 2 s for 350 revisions without rendering.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = '''"""{message}

Revision ID: {rev}
Revises: {down}
Create Date: 2025-01-01 00:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = "{rev}"
down_revision: Union[str, None] = {down_literal}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "t{i}",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()")),
        sa.Column("owner_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE")),
    )
    op.create_index(op.f("ix_t{i}_name"), "t{i}", ["name"], unique=False)
    op.add_column("users", sa.Column("flag_{i}", sa.Boolean(), nullable=True))
    op.create_index("ix_users_flag_{i}", "users", ["flag_{i}"], postgresql_concurrently=True)
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column("flag_{i}", existing_type=sa.Boolean(), comment="flag {i}")
    op.execute("UPDATE users SET flag_{i} = false WHERE flag_{i} IS NULL")


def downgrade() -> None:
    op.drop_index("ix_users_flag_{i}", table_name="users")
    op.drop_column("users", "flag_{i}")
    op.drop_index(op.f("ix_t{i}_name"), table_name="t{i}")
    op.drop_table("t{i}")
'''


def generate_history(versions: Path, n: int = 350) -> list[str]:
    """Write an ``n``-revision linear history into ``versions``; return the ids base -> head."""
    versions.mkdir(parents=True, exist_ok=True)
    ids = [f"{i:04d}{(i * 2654435761) % 16**8:08x}" for i in range(n)]
    for i, rev in enumerate(ids):
        down = ids[i - 1] if i else None
        (versions / f"{rev}_step_{i}.py").write_text(TEMPLATE.format(
            message=f"step {i}", rev=rev, down=down or "", down_literal=repr(down), i=i))
    return ids


def main(n: int = 350) -> float:
    """Generate, validate, print the timing; return the elapsed seconds."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vetai_ops.validate import validate_history

    with tempfile.TemporaryDirectory() as tmp:
        versions = Path(tmp) / "versions"
        generate_history(versions, n)
        start = time.perf_counter()
        report = validate_history(versions, pending=None)
        elapsed = time.perf_counter() - start
    print(f"{n} revisions: {elapsed:.3f} s, heads={report.heads}, errors={len(report.errors)}, "
          f"findings={len(report.findings)}")
    return elapsed


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 350)
