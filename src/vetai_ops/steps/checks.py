"""Post-checks: revision == target, live schema == models (Alembic compare_metadata),
data integrity (FK orphans, row counts vs the pre-deploy snapshot), HTTP health on
every app host (fetched ON the host, so localhost-only endpoints work)."""

from __future__ import annotations

import time

from sqlalchemy import text

from ..database import migrations as mig
from ..errors import OpsError
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


def http_check(target, url: str, timeout: float) -> tuple[bool, str]:
    """GET url on the host itself (python3 there, else curl); returns (ok, detail)."""
    code = (
        "import sys,urllib.request\n"
        "try:\n"
        "    r=urllib.request.urlopen(sys.argv[1],timeout=float(sys.argv[2]))\n"
        "    print(r.status)\n"
        "except Exception as e:\n"
        "    print(getattr(e,'code',0) or 0, type(e).__name__, str(e)[:200]); sys.exit(1)\n"
    )
    res = target.run(["python3", "-c", code, url, str(timeout)], check=False, timeout=timeout + 10)
    if res.returncode == 127:  # no python3 on that host: curl
        # `--`: a URL is never read as a curl option
        res = target.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout), "--", url],
                         check=False, timeout=timeout + 10)
        out = (res.text.strip() or res.stderr.strip())
        return res.returncode == 0 and out.startswith("2"), out
    out = res.text.strip() or res.stderr.strip()
    return res.returncode == 0 and out.startswith("2"), out


def health(ctx) -> list[str]:
    checks = ctx.env.checks
    fails = []
    for t in ctx.app_targets:
        for url in checks.http:
            ok, detail = False, ""
            for attempt in range(max(1, checks.retries)):
                ok, detail = http_check(t, url, checks.timeout)
                if ok:
                    break
                time.sleep(checks.retry_delay)
            ctx.emit("info" if ok else "warning", f"health {url} on {t.name}: {'ok' if ok else detail}")
            if not ok:
                fails.append(f"{url} on {t.name}: {detail}")
    return fails


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
        fails = [f"health {f}" for f in health(ctx)]
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
