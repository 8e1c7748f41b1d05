"""Seeds: demo data on the first deploy (IS_FIRST_DEPLOY / RUN_SEEDS override).

Seeds are written for the schema at head; on a database that is not there (e.g. a first
deploy with RUN_MIGRATIONS=false) they are skipped with a warning instead of failing.
"""

from __future__ import annotations

from ..database import migrations as mig
from . import step


@step("seed")
def seed(ctx):
    from ..schema.seeds import seed_demo

    with ctx.access.engine().begin() as conn:
        current, head = mig.current(conn), mig.head()
        if current != head:
            ctx.emit("warning", f"seeds skipped: the database is at {current or 'base'}, seeds need {head}")
            return f"skipped (database at {current or 'base'}, not {head})"
        ctx.state.db_changed = True
        counts = seed_demo(conn)
    total = sum(counts.values())
    if not total:
        return "data present, nothing seeded"
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v)
