"""Pre-deploy gate, as steps: static validation of the history, the applied-file
checksums (Flyway-style), live preflight, and the plan a deploy will follow."""

from __future__ import annotations

import re
import time

from sqlalchemy import text

from .. import policy
from ..database import migrations as mig
from ..database.probes import derive_probes
from ..database.probes_live import data_loss, measure_impacts, run_probes
from ..validate.locks import over_limit, statement_impacts
from ..errors import GateRefused, TargetError
from ..paths import project_root, versions_dir
from ..config import env_flag
from ..database.applied import changed_applied
from ..plan import DeployPlan
from . import step

SET_BY_MIGRATE = {"squawk:require-lock-timeout", "squawk:require-statement-timeout", "squawk:require-timeout-settings"}

@step("validate")
def validate(ctx, render: bool = True):
    """Static checks + where the DB stands. Refuses (GateRefused) and changes nothing."""
    from ..validate import FAILING_RULES, validate_history
    from ..validate.ack import file_acknowledgements

    access = ctx.access
    with access.engine().connect() as conn:
        current = mig.current(conn)
        changed = changed_applied(conn)
    ctx.state.db_touched = True
    head = mig.head()
    if current is not None and not mig.known(current):
        raise GateRefused(
            f"the database of env {ctx.env.name!r} is at revision {current}, which this checkout does not know "
            "(ahead of the code, or a diverged branch)",
            "deploy from the checkout that produced it, or inspect with `invoke migrations.history`",
        )
    target = ctx.options.get("target") or head
    if not mig.is_ancestor(current, target):
        raise GateRefused(f"the database is at {current}, which is not an ancestor of {target}: the histories diverged")
    pending = mig.chain(current, target)
    ctx.state.run_migrations = env_flag("RUN_MIGRATIONS") is not False
    if not ctx.state.run_migrations:
        pending = []
    report = validate_history(
        versions_dir(),
        pending=set(pending),
        acknowledged=set(ctx.options.get("allow") or []),
        render=render and bool(pending),
        alembic_ini=project_root() / "alembic.ini",
    )
    problems = [f"{e.revision or '?'} ({e.file}): {e.message}" for e in report.errors]
    problems += changed
    if problems:
        raise GateRefused(
            "migration history failed validation: " + "; ".join(problems),
            "fix the files (never edit an applied revision: add a new one); `invoke validate` shows details",
        )
    if any(f.rule == "squawk-missing" for f in report.findings):
        policy.refuse_unlinted(ctx.env)  # a protected env never deploys SQL nobody linted
        ctx.emit("warning", "squawk is not installed: the pending SQL was not linted (pip install squawk-cli)")
    failing = [f for f in report.blocking if f.rule in FAILING_RULES]
    if failing:  # PostgreSQL would refuse these after the backup: nothing to acknowledge, fix the file
        raise GateRefused(
            "pending revisions would fail: " + "; ".join(f"{f.revision}: {f.message} ({f.file}:{f.line})"
                                                         for f in failing),
            "fix the revision as the message says, then deploy again",
        )
    blocking = report.blocking
    if blocking:
        checks = ctx.env.checks  # what a DROP COLUMN would discard, counted on the live data
        loss = data_loss(access.engine(), getattr(report, "sql", {}) or {}, sample_rows=checks.probe_sample_rows,
                         timeout=checks.probe_timeout, lock_timeout=ctx.env.database.lock_timeout)
        ops = "; ".join(f"{f.revision}: {f.operation or f.rule}"
                        + (f", {loss[(f.revision, f.operation)]}" if (f.revision, f.operation) in loss else "")
                        + f" ({f.file}:{f.line})" for f in blocking)
        raise GateRefused(
            f"pending revisions contain destructive operations: {ops}",
            "if intended, add `# vetai-ops: allow <operation>` to the revision file, or pass "
            + " ".join(f"--allow='{f.operation or f.rule}'" for f in blocking),
        )
    ack = [f for f in report.findings if f.acknowledged and f.destructive and f.revision in pending]
    # the migrate step sets lock_timeout / statement_timeout itself: squawk's advice is already followed
    report.findings = [f for f in report.findings if f.rule not in SET_BY_MIGRATE]
    st = ctx.state
    st.from_rev, st.to_rev, st.pending = current, (target if pending else current), pending
    st.findings = [f.__dict__ if hasattr(f, "__dict__") else f for f in report.findings if f.revision in pending]
    st.validated_hashes = {r: report.revisions[r].sha256 for r in pending if r in report.revisions}
    st.acknowledged_destructive = bool(ack)
    st.sql = getattr(report, "sql", {}) or {}
    # the revision files' `# vetai-ops: allow ...` lines, for the live checks (rewrite acks)
    st.ack_tokens = {r: sorted(file_acknowledgements(report.revisions[r].file.read_text(errors="replace")))
                     for r in pending if r in report.revisions}
    if ack:  # only a proven backup lets a destructive change run: playbooks whose backup is optional take one
        st.backup_first = True
    st.first_deploy = (env_flag("IS_FIRST_DEPLOY") is True) or (env_flag("IS_FIRST_DEPLOY") is None and current is None)
    seeds = env_flag("RUN_SEEDS")
    if seeds is not None:
        st.first_deploy = seeds
    return f"{len(report.revisions)} revisions, head {head}; db at {current or 'base'}; {len(pending)} pending"


@step("preflight")
def preflight(ctx, long_xact_seconds: int = 300, min_free_factor: float = 1.2):
    """Live checks: server version, long transactions that would block DDL, disk room for dump + restore."""
    access = ctx.access
    with access.engine().connect() as conn:
        drift_summary = _drift_gate(ctx, conn)
        version = conn.execute(text("show server_version")).scalar_one()
        size = conn.execute(text("select pg_database_size(current_database())")).scalar_one()
        longx = conn.execute(
            text(
                "select pid, usename, state, extract(epoch from now() - xact_start)::int as secs, left(query, 80) as q"
                " from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
                " and xact_start is not null and now() - xact_start > make_interval(secs => :s)"
            ),
            {"s": long_xact_seconds},
        ).mappings().all()
        counts = _row_counts(conn) if ctx.env.checks.row_counts else {}
        from ..database.orphans import added_foreign_keys, find_orphans

        orphans = find_orphans(conn, added_foreign_keys(ctx.state.sql))
        impacts = measure_impacts(conn, statement_impacts(ctx.state.sql))
        # a failed deploy must be undoable: the rights to restore the database as it is, and room
        # for the copy, proven before the backup (exit 2 naming each missing GRANT)
        from ..database import dbprops
        from ..database.rights import object_owners, refuse_unless_recoverable

        props, owners = dbprops.capture(conn, access.db.name), object_owners(conn)
        room = refuse_unless_recoverable(conn, access.db.name, owners=owners, props=props, size=size,
                                         target=ctx.db_target, factor=min_free_factor)
    checks = ctx.env.checks
    probes = run_probes(access.engine(), derive_probes(ctx.state.sql), sample_rows=checks.probe_sample_rows,
                        timeout=checks.probe_timeout, lock_timeout=ctx.env.database.lock_timeout)
    over = over_limit(impacts, checks.max_rewrite_mb * 2**20, ctx.state.ack_tokens, ctx.options.get("allow") or [])
    st = ctx.state
    st.db_size, st.row_counts_before, st.db_props, st.object_owners = size, counts, props, owners
    st.impacts, st.probes = [i.to_json() for i in impacts], [p.to_json() for p in probes]
    for p in probes:  # the plan shows every note; one that left a statement unproven is also a warning
        if p.error:
            ctx.emit("warning", f"{p.revision}: `{p.statement[:100]}` not proven by its {p.kind} probe: {p.error}")
    if orphans:
        desc = "; ".join(f"{fk.revision}: {n} rows of {fk.table}({', '.join(fk.columns)}) have no {fk.ref_table} "
                         f"(constraint {fk.name or '?'}; find them with: {fk.query(rows=True)})"
                         for fk, n in orphans)
        raise GateRefused(f"pending foreign keys would fail on orphan rows: {desc}",
                          "fix or delete those rows (or make the revision clean them up), then deploy again")
    failed = [p for p in probes if p.failed]
    if failed:
        raise GateRefused("pending revisions would fail on the live data: " + "; ".join(p.describe() for p in failed),
                          "fix those rows (or make the revision fix them before the statement), then deploy again; "
                          "nothing changed, no backup was taken")
    if over:
        raise GateRefused(
            f"pending statements would rewrite tables over checks.max_rewrite_mb={checks.max_rewrite_mb} MiB "
            "under their lock: " + "; ".join(f"{i.revision}: {i.line()}" for i in over),
            "if intended (a maintenance window), add `# vetai-ops: allow rewrite <table>` to the revision file or "
            "pass " + " ".join(f"--allow='rewrite {i.table}'" for i in over)
            + "; or raise checks.max_rewrite_mb in the inventory")
    if longx and ctx.state.pending:
        desc = ", ".join(f"pid {r['pid']} ({r['usename']}, {r['state']}, {r['secs']}s)" for r in longx)
        raise GateRefused(
            f"long-running transactions would block the migration's DDL: {desc}",
            "wait for them or end them (SELECT pg_terminate_backend(pid)), then deploy again",
        )
    t = ctx.db_target
    _check_client_tools(ctx, version)
    tmp_free = t.free_bytes("/tmp")
    if tmp_free < size * min_free_factor:
        raise GateRefused(
            f"not enough free disk on DB host {t.name} for a restore spool: {tmp_free // 2**20} MiB free in /tmp, "
            f"database is {size // 2**20} MiB",
            "free space on the DB host before deploying",
        )
    free = ctx.store.free_bytes()
    if free is not None and free < size:
        raise GateRefused(
            f"not enough free disk for the backup in {ctx.store.location}: {free // 2**20} MiB free",
            "free space there or use S3 storage",
        )
    _reach_app_hosts(ctx)
    return f"PostgreSQL {version}, {size // 1024} KiB, no blocking transactions, recoverable ({room}); {drift_summary}"


def _drift_gate(ctx, conn) -> str:
    """The live schema against the reference at the database's revision (the history, cached):
    refuse, naming each, unless every difference is accepted (recorded, or named with
    ``accept_drift`` now; those are recorded by the ``accept_drift`` step, before the backup)."""
    from ..database.drift import accept_hint, describe, drift_at, parse_tokens, select

    rev = ctx.state.from_rev if ctx.state.is_set("from_rev") else mig.current(conn)
    diffs, _ = drift_at(ctx.access, conn, rev, emit=ctx.emit)
    new = [d for d in diffs if not d.accepted]
    chosen, unused = select(new, parse_tokens(ctx.options.get("accept_drift")))
    for t in unused:
        ctx.emit("warning", f"--accept-drift={t} names no unaccepted difference of the live schema (ignored)")
    refused = [d for d in new if d not in chosen]
    ctx.state.drift, ctx.state.drift_accepting = [d.to_dict() for d in diffs], chosen
    if refused:
        raise GateRefused(
            f"the live schema of {ctx.access.db.name} differs from what the history builds at revision "
            f"{rev or 'base'}; {len(refused)} unaccepted difference(s), nothing changed:{describe(refused)}",
            ("this database has no Alembic revision: if the backend's TypeORM built it, run `invoke adopt` first; "
             if rev is None else "") + accept_hint(refused),
            report={"drift": [d.to_dict() for d in diffs], "revision": rev},
        )
    accepted = len(diffs) - len(chosen)
    return (f"schema matches the history at {rev or 'base'}"
            + (f" ({accepted} accepted difference(s))" if accepted else "")
            + (f"; accepting {len(chosen)} now: {', '.join(d.id for d in chosen)}" if chosen else ""))


def _reach_app_hosts(ctx) -> None:
    """Reach every app host now, all at once: an unreachable one refuses the deploy before
    the backup (not halfway through the restarts), and the connections opened here are the
    ones the restart and the health checks reuse."""
    from ..errors import short_error
    from ..targets.fleet import each_host

    bad = [f"{o.host}: {short_error(o.error)}" for o in each_host(
        ctx.app_targets, lambda t: t.run(["true"], timeout=60), forks=ctx.env.services.forks) if not o.ok]
    if bad:
        raise GateRefused(f"app host(s) not reachable: {'; '.join(bad)}; nothing changed",
                          "check those hosts (up, sshd, host key), or remove them from hosts.app")


def tool_major(version_text: str) -> int | None:
    """15 from 'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)' or '15.18 (Debian ...)'."""
    m = re.search(r"(?:PostgreSQL\)\s*|^)(\d+)(?:\.\d+)?", version_text.strip())
    return int(m.group(1)) if m else None


def _check_client_tools(ctx, server_version: str) -> None:
    """pg_dump / pg_restore must exist on the DB host and be at least the server's major
    version (pg_dump refuses newer servers), or the backup / a restore fails mid-run."""
    access, t = ctx.access, ctx.db_target
    server = tool_major(server_version)
    for tool in ("pg_dump", "pg_restore"):
        try:
            r = t.run([access.bin(tool), "--version"], check=False)
            have, why = (tool_major(r.text) if r.returncode == 0 else None), (r.stderr or r.text).strip()[-200:]
            if have is not None and tool == "pg_dump":
                ctx.state.pg_dump_version = r.text.strip()  # the backup records it: asked once
        except TargetError as e:  # not installed / not on PATH
            have, why = None, e.message
        if have is None:
            raise GateRefused(
                f"{tool} is not usable on DB host {t.name} ({access.bin(tool)}: {why or 'no version'}); nothing changed",
                "install the PostgreSQL client tools there, or set database.bin_dir in the inventory")
        if server and have < server:
            raise GateRefused(
                f"{tool} {have} on DB host {t.name} cannot handle the PostgreSQL {server} server; nothing changed",
                f"install postgresql-client-{server} there, or point database.bin_dir at version {server}'s tools")


def _row_counts(conn) -> dict[str, int]:
    from ..database.introspect import row_counts

    return row_counts(conn, exclude=("deploy_history",))


@step("plan")
def plan(ctx, rehearse: bool = True):
    """What the run will do; the face renders it; --dry-run stops right after confirm.

    Also decides whether the deploy rehearses (validate/datadep.py) and predicts its times
    from this env's history (store/estimates.py); refuses, before the backup, ``--no-rehearsal``
    on a protected env, ``deploy.rehearsal: always`` with ``--skip-backup``, and a deploy whose
    predicted rollback exceeds ``deploy.max_rollback_s``."""
    from ..database.history import read as read_history
    from ..store.estimates import estimates
    from ..validate.datadep import data_dependent, decide

    manifests = ctx.catalog.list()
    last = manifests[:1]
    est = None
    if last and last[0].duration_s:
        est = round(last[0].duration_s * 1.5, 1)
    st = ctx.state
    pending = st.pending
    cfg = ctx.env.deploy
    if ctx.options.get("no_rehearsal"):
        policy.refuse_no_rehearsal(ctx.env)
    if cfg.rehearsal == "always" and ctx.options.get("skip_backup") and pending:
        raise GateRefused(f"deploy.rehearsal is always for env {ctx.env.name!r}, and --skip-backup leaves no backup "
                          "to rehearse on; nothing changed", "deploy without --skip-backup")
    decision = decide(cfg.rehearsal, protected=ctx.env.protected, pending=pending,
                      first_deploy=st.from_rev is None, no_flag=bool(ctx.options.get("no_rehearsal")),
                      skip_backup=bool(ctx.options.get("skip_backup")),
                      reasons=data_dependent(pending, st.findings, st.sql))
    if not rehearse:  # a playbook without a rehearse step (migrations.upgrade)
        decision.will, decision.why = False, f"{ctx.action} does not rehearse (invoke deploy does)"
    st.rehearsal = decision.to_json()
    try:
        history = read_history(ctx.access.connect, limit=200)
    except Exception as e:  # noqa: BLE001 - estimates only: never stops a deploy
        ctx.emit("warning", f"could not read deploy_history for the estimates: {str(e).splitlines()[0][:200]}")
        history = []
    st.history_rows = history
    estimated, by_rev = estimates(manifests, history, pending, st.db_size)
    p = st.plan = DeployPlan.of(
        ctx.env, from_rev=st.from_rev, to_rev=st.to_rev, backup_store=ctx.store.location, pending=pending,
        sql=st.sql, findings=st.findings, drift=st.drift, accepting_drift=[d.id for d in st.drift_accepting],
        impacts=st.impacts, probes=st.probes, first_deploy_seeds=bool(st.first_deploy), estimated_restore_s=est,
        rehearsal=decision.to_json(), estimates=estimated, migrate_by_revision=by_rev,
        max_rollback_s=cfg.max_rollback_s, created=time.time())
    ctx.emit("plan", "", **{k: v for k, v in p.to_json().items() if k != "created"})
    rto, predicted = cfg.max_rollback_s, estimated["rollback_s"]
    if rto is not None and pending:
        if predicted is not None and predicted > rto:
            raise GateRefused(
                f"a rollback of env {ctx.env.name!r} is predicted to take {predicted:.0f}s (past restores here, "
                f"scaled to the database's {st.db_size or 0} bytes now), over deploy.max_rollback_s="
                f"{rto:g}s; refused before the backup, nothing changed",
                "deploy in a window where a longer recovery is acceptable (raise deploy.max_rollback_s for it), "
                "or make the database smaller / the restore faster (backup.restore_jobs)")
        if predicted is None:
            ctx.emit("warning", f"deploy.max_rollback_s={rto:g}s is not enforced: env {ctx.env.name!r} has no "
                                "restore in its history to predict a rollback from (`invoke backups.verify` makes one)")
    return f"{p.from_rev or 'base'} -> {p.to_rev or 'base'} ({len(p.pending)} revisions)"
