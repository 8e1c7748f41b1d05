"""Post-checks: revision == target, live schema == models (Alembic compare_metadata),
data integrity (FK orphans, row counts vs the pre-deploy snapshot), HTTP health on
every app host (fetched ON the host, so localhost-only endpoints work)."""

from __future__ import annotations

from sqlalchemy import text

from ..database import migrations as mig
from ..errors import OpsError
from ..targets.health import check_hosts, http_check  # noqa: F401  (http_check: fab and tests use it from here)
from ..database.introspect import public_tables, row_count
from . import step

ORPHANS_SQL = """
select con.conname, cl.relname as child, pcl.relname as parent,
       (select string_agg(quote_ident(a.attname), ',' order by k.ord) from unnest(con.conkey) with ordinality k(att, ord)
          join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.att) as cols,
       (select string_agg(quote_ident(a.attname), ',' order by k.ord) from unnest(con.confkey) with ordinality k(att, ord)
          join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.att) as pcols
from pg_constraint con join pg_class cl on cl.oid = con.conrelid join pg_class pcl on pcl.oid = con.confrelid
join pg_namespace n on n.oid = cl.relnamespace
where con.contype = 'f' and n.nspname = 'public' and (not con.convalidated)
"""


def health_by_host(ctx, targets=None) -> dict[str, list[tuple[str, str]]]:
    """The health checks on ``targets`` (default: every app host), all at once (up to
    ``services.forks``), one event per host and a summary; host -> its (url, detail) failures."""
    return check_hosts(ctx.app_targets if targets is None else targets, ctx.env.checks,
                       forks=ctx.env.services.forks, emit=ctx.emit)


def health(ctx, targets=None) -> list[str]:
    """Every failure as one line: ``<url> on <host>: <detail>``."""
    return [f"{u} on {h}: {d}" for h, fails in health_by_host(ctx, targets).items() for u, d in fails]


@step("health")
def health_step(ctx, **_):
    fails = health(ctx)
    if fails:
        raise OpsError("health checks failed: " + "; ".join(fails))
    return f"{len(ctx.env.checks.http) * len(ctx.app_targets)} endpoints ok"


@step("postcheck")
def postcheck(ctx, schema: bool = True, http: bool | str = True, rows: bool = True, **_):
    expect = ctx.state.get("expect_rev", ctx.state.get("to_rev"))
    problems = []
    with ctx.access.engine().connect() as conn:
        cur = mig.current(conn)
        if cur != expect:
            problems.append(f"database is at revision {cur}, expected {expect}")
        head = mig.head()
        if schema and cur == head:
            diff = mig.describe_diff(mig.schema_diff(conn))
            if diff:
                problems.append("live schema differs from the models: " + "; ".join(diff[:10]))
        for r in conn.execute(text(ORPHANS_SQL)).mappings():
            problems.append(f"foreign key {r['conname']} on {r['child']} is not validated")
        before = ctx.state.get("row_counts_before") or {}
        if rows and before and not ctx.state.get("recovering"):
            tol = ctx.env.checks.row_count_tolerance
            present = set(public_tables(conn))
            for table, n in before.items():
                if table not in present:
                    continue
                now = row_count(conn, table)
                if now < n * (1 - tol):
                    problems.append(f"table {table} lost rows: {n} before, {now} after")
    still_failing = []
    if http:
        by_host = health_by_host(ctx)
        fails = [f"health {u} on {h}: {d}" for h, fs in by_host.items() for u, d in fs]
        tolerated = ctx.env.services.max_fail
        if fails and http != "warn" and len([h for h, fs in by_host.items() if fs]) <= tolerated:
            # services.max_fail: up to that many hosts may be down without failing the deploy
            ctx.emit("warning", f"health fails on {len([h for h, fs in by_host.items() if fs])} host(s), "
                                f"within services.max_fail ({tolerated}): " + "; ".join(fails))
            fails = []
        if http == "warn":  # after a restore: the DB is back; an app that stays down is reported, not "unrecovered"
            still_failing = fails
        else:
            problems += fails
    if problems:
        raise OpsError("post-check failed: " + "; ".join(problems))
    summary = f"revision {cur or 'base'}" + (", schema matches models" if schema and cur == head else "")
    if still_failing:
        ctx.emit("warning", "after the restore, health checks still fail: " + "; ".join(still_failing))
        summary += "; HEALTH STILL FAILING: " + "; ".join(still_failing)
    return summary
