"""Post-checks: revision == target, live schema == the reference the history builds at
that revision (:mod:`vetai_ops.database.reference`; accepted drift passes),
data integrity (FK orphans, row counts vs the pre-deploy snapshot), HTTP health on
every app host (fetched ON the host, so localhost-only endpoints work)."""

from __future__ import annotations

from ..database import migrations as mig
from ..database.introspect import public_tables, row_count
from ..database.pg import dicts
from ..errors import OpsError
from ..targets.health import check_hosts, failures, http_check  # noqa: F401  (http_check: fab and tests use it from here)
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


def health_by_host(ctx, targets=None) -> dict[str, list[tuple[str, bool, str]]]:
    """The health checks on ``targets`` (default: every app host), all at once (up to
    ``services.forks``), one event per host and a summary; host -> [(url, ok, detail)]."""
    return check_hosts(ctx.app_targets if targets is None else targets, ctx.env.checks,
                       forks=ctx.env.services.forks, emit=ctx.emit)


def health_results(ctx) -> list[dict]:
    """Every health URL on every app host (with the env's retries, all hosts at once):
    ``{host, url, ok, detail}``."""
    return [{"host": h, "url": u, "ok": ok, "detail": d}
            for h, res in health_by_host(ctx).items() for u, ok, d in res]


def health(ctx, targets=None) -> list[str]:
    """Every failure as one line: ``<url> on <host>: <detail>``."""
    return [f"{u} on {h}: {d}" for h, res in health_by_host(ctx, targets).items() for u, d in failures(res)]


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
    expect = ctx.state.expect_rev if ctx.state.is_set("expect_rev") else ctx.state.to_rev
    problems = []
    from ..database.reference import known

    with ctx.access.connect() as conn:
        cur = mig.current(conn)
        if cur != expect:
            problems.append(f"database is at revision {cur}, expected {expect}")
        schema_note = ""
        if schema and (cur is None or known(cur)):
            schema_note, problem = _schema_vs_history(ctx, conn, cur, warn_only=schema == "warn")
            if problem:
                problems.append(problem)
        for r in dicts(conn, ORPHANS_SQL):
            problems.append(f"foreign key {r['conname']} on {r['child']} is not validated")
        before = ctx.state.row_counts_before
        if rows and before and not ctx.state.recovering:
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
        by_host = {h: failures(res) for h, res in health_by_host(ctx).items()}
        fails = [f"health {u} on {h}: {d}" for h, fs in by_host.items() for u, d in fs]
        tolerated = ctx.env.services.max_fail
        down = [h for h, fs in by_host.items() if fs]
        if fails and http != "warn" and len(down) <= tolerated:
            # services.max_fail: up to that many hosts may be down without failing the deploy
            ctx.emit("warning", f"health fails on {len(down)} host(s), within services.max_fail ({tolerated}): "
                     + "; ".join(fails))
            fails = []
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
