"""Seeds: demo data on the first deploy (IS_FIRST_DEPLOY / RUN_SEEDS override)."""

from __future__ import annotations

from . import step


@step("seed")
def seed(ctx, **_):
    from ..schema.seeds import seed_demo

    with ctx.access.engine().begin() as conn:
        counts = seed_demo(conn)
    total = sum(counts.values())
    if not total:
        return "data present, nothing seeded"
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v)
