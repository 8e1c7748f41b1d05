"""Post-checks: revision == target, live schema == the reference the history builds at
that revision (:mod:`vetai_ops.database.reference`; accepted drift passes),
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


def health_results(ctx) -> list[dict]:
    """Every health URL on every app host (with the env's retries): ``{host, url, ok, detail}``."""
    checks = ctx.env.checks
    out = []
    for t in ctx.app_targets:
        for url in checks.http:
            ok, detail = False, ""
            for attempt in range(max(1, checks.retries)):
                ok, detail = http_check(t, url, checks.timeout)
                if ok:
                    break
                time.sleep(checks.retry_delay)
            ctx.emit("info" if ok else "warning", f"health {url} on {t.name}: {'ok' if ok else detail}")
            out.append({"host": t.name, "url": url, "ok": ok, "detail": detail})
    return out


def health(ctx) -> list[str]:
    return [f"{r['url']} on {r['host']}: {r['detail']}" for r in health_results(ctx) if not r["ok"]]


@step("health")
def health_step(ctx):
    fails = health(ctx)
    if fails:
        raise OpsError("health checks failed: " + "; ".join(fails))
    return f"{len(ctx.env.checks.http) * len(ctx.app_targets)} endpoints ok"


def _schema_vs_history(ctx, conn, rev, warn_only: bool) -> tuple[str, str | None]:
    """The live schema against the reference the history builds at ``rev``; differences
    recorded as accepted pass. Returns (summary, problem or None). ``warn_only`` (a rollback
    to an older backup, whose drift is that backup's) reports differences without failing."""
    from ..database.drift import drift_at

    try:
        diffs, _ = drift_at(ctx.access, conn, rev, emit=ctx.emit)
    except OpsError as e:
        return "", f"schema not checked: {e.message}"
    new = [d for d in diffs if not d.accepted]
    accepted = len(diffs) - len(new)
    note = f"schema matches the history at {rev or 'base'}" + (f" ({accepted} accepted difference(s))" if accepted else "")
    if not new:
        return note, None
    what = "; ".join(str(d) for d in new[:10]) + (f"; ... and {len(new) - 10} more" if len(new) > 10 else "")
    if warn_only:
        ctx.emit("warning", f"the live schema differs from the history at {rev or 'base'}: {what} "
                            "(see `invoke check`; accept with --accept-drift on the next deploy)")
        return f"schema: {len(new)} unaccepted difference(s) from the history at {rev or 'base'}", None
    return "", f"live schema differs from the history at {rev or 'base'} ({len(new)} unaccepted difference(s)): {what}"


@step("postcheck")
def postcheck(ctx, schema: bool = True, http: bool | str = True, rows: bool = True):
    expect = ctx.state.get("expect_rev", ctx.state.get("to_rev"))
    problems = []
    with ctx.access.engine().connect() as conn:
        cur = mig.current(conn)
        if cur != expect:
            problems.append(f"database is at revision {cur}, expected {expect}")
        schema_note = ""
        if schema and (cur is None or mig.known(cur)):
            schema_note, problem = _schema_vs_history(ctx, conn, cur, warn_only=schema == "warn")
            if problem:
                problems.append(problem)
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
    summary = f"revision {cur or 'base'}" + (f", {schema_note}" if schema_note else "")
    if still_failing:
        ctx.emit("warning", "after the restore, health checks still fail: " + "; ".join(still_failing))
        summary += "; HEALTH STILL FAILING: " + "; ".join(still_failing)
    return summary
