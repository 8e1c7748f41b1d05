"""The invoke face: parse args, confirm, render progress and tables. No logic lives here
beyond glue; everything runs through the pipeline and the rooms below it."""

from __future__ import annotations

import functools
import sys
import traceback

from invoke import Collection, Exit, task

from ..errors import OpsError
from ..secrets import redact
from . import render
from .render import esc
from ..units import human_bytes

H_ENV = "environment from the inventory (default: the inventory's default_env, shipped as 'local')"
H_JSON = "print machine-readable JSON on stdout"
H_YES = "do not ask for confirmation (required on protected envs without a terminal)"
H_VERBOSE = "show details (steps as they start, tracebacks of unexpected errors)"
H_ACCEPT_DRIFT = ("accept named schema drift, recorded with who/when in the target DB (repeatable, comma-separated): "
                  "kind:name as the refusal lists it, e.g. --accept-drift=index:pets.ix_pets_hotfix, or 'all'")
H_TO = ("which backup: an id (20261202T053059Z) or a unique prefix of one (20261202T05; digit-only values are "
        "always ids, never times); 'latest'; a time with dashes, '2026-12-02T05:40:00Z', '2026-12-02T05:40+01:00', "
        "'2026-12-02 05:40', '2026-12-02' (no zone = UTC): the newest backup taken at or before it; a relative "
        "time, --to=-2h, -30m, -1d, -90s; or 'pre-deploy': the backup the last deploy (not already undone) took "
        "before it migrated")
H_BOUND = "a time (2026-12-02T05:40:00Z, '2026-12-02 05:40', 2026-12-02; no zone = UTC), -2h/-1d, or a whole backup id; inclusive"


def ops(fn):
    """Turn OpsError into one clear message (what, where, fix) and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        # invoke's Program turns bytecode caching off for the whole process (to keep a tasks.pyc
        # out of the project); this package's modules are imported lazily during the run, so every
        # run compiled them from source again (50-170 ms). The interpreter's own -B /
        # PYTHONDONTWRITEBYTECODE is kept.
        sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)
        verbose = kwargs.get("verbose", False)
        try:
            return fn(c, *args, **kwargs)
        except OpsError as e:
            report = e.details.get("report") or getattr(e, "report", None)
            if kwargs.get("json_") and report:
                render.print_json({"ok": False, "error": redact(e.message), "hint": e.hint, "report": report})
            render.err.print(f"[red bold]error:[/] {esc(redact(e.message))}")
            if e.hint:
                render.err.print(f"[yellow]fix:[/] {esc(redact(e.hint))}")
            if verbose:
                render.err.print(redact(traceback.format_exc()), markup=False)
            raise Exit(code=e.exit_code)
        except KeyboardInterrupt:
            render.err.print("[red]interrupted[/]")
            raise Exit(code=130)
        except Exit:
            raise
        except Exception as e:  # unexpected: short message, traceback with --verbose
            render.err.print(f"[red bold]unexpected error:[/] {esc(redact(type(e).__name__ + ': ' + str(e)))}")
            if verbose:
                render.err.print(redact(traceback.format_exc()), markup=False)
            else:
                render.err.print("[dim]re-run with --verbose for the traceback[/]")
            raise Exit(code=1)

    return wrapper


def _confirm(env_name: str, plan: dict) -> bool:
    """Ask to type the env name. The plan itself was already shown by the run's plan event."""
    if not sys.stdin.isatty():
        return False
    if (plan.get("rehearsal") or {}).get("result"):  # asked after the rehearsal: what it measured
        render.rehearsal_lines(plan, render.err)
    sel = plan.get("selection") or {}
    if sel.get("text"):  # a rollback: say once more which backup, and what it undoes
        render.err.print("restore " + sel["text"]
                         + "".join("; undoes " + ev.get("text", "") for ev in sel.get("undid") or []), markup=False)
    render.err.print(f"[bold]Type the environment name ({esc(env_name)}) to continue:[/] ", end="")
    try:
        return input().strip() == env_name
    except EOFError:
        return False


def _run(name: str, env: str | None, options: dict, json_: bool, verbose: bool, **kw) -> dict:
    """Run a playbook with the console's progress and, on a terminal, its confirmation
    (``kw``: run_playbook's ``playbook=`` / ``inventory=`` for built-in and per-host ones)."""
    from ..pipeline import run_playbook

    sink = render.ConsoleSink(render.err, verbose=verbose)
    confirm = _confirm if sys.stdin.isatty() else None
    return run_playbook(name, env, options=options, sink=sink, confirm=confirm, **kw)


def _load_env(env: str | None):
    from ..config import load_inventory

    inv = load_inventory()
    return inv, inv.env(env)


# ------------------------------------------------------------------ main verbs


@task(help={"env": H_ENV, "yes": H_YES, "dry_run": "show the plan and stop; nothing changes",
            "allow": "acknowledge a destructive operation of a pending revision (repeatable), e.g. --allow='drop_column pets.name', or a big table rewrite: --allow='rewrite pets'",
            "skip_backup": "skip the pre-deploy backup (refused on protected envs)",
            "no_rehearsal": "do not rehearse the pending revisions on a copy of the data first (refused on "
                            "protected envs; see deploy.rehearsal in the inventory)",
            "accept_drift": H_ACCEPT_DRIFT,
            "json": H_JSON, "verbose": H_VERBOSE}, iterable=["allow", "accept_drift"])
@ops
def deploy(c, env=None, yes=False, dry_run=False, allow=None, skip_backup=False, no_rehearsal=False, accept_drift=None,
           json_=False, verbose=False):
    """Validate -> backup -> rehearse on a copy -> migrate -> post-check; restore the backup on any failure."""
    report = _run("deploy", env, {"yes": yes, "dry_run": dry_run, "allow": allow or [], "skip_backup": skip_backup,
                                  "no_rehearsal": no_rehearsal, "accept_drift": accept_drift or []},
                  json_, verbose)
    if json_:
        render.print_json({"ok": True, "report": report})
    elif report.get("outcome") == "success":
        render.out.print(
            f"deployed {report['env']}: {report.get('from_rev') or 'base'} -> {report.get('to_rev') or 'base'}"
            + (f"; backup {report['backup_id']} at {report.get('backup_url')}" if report.get("backup_id") else ""),
            markup=False,
        )


@task(help={"env": H_ENV, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backup(c, env=None, json_=False, verbose=False):
    """pg_dump streamed through sha256 into the store; the manifest is written last."""
    report = _run("backup", env, {}, json_, verbose)
    if json_:
        render.print_json({"ok": True, "id": report.get("backup_id"), "url": report.get("backup_url"), "report": report})
    else:
        render.out.print(f"backup {report.get('backup_id')} -> {report.get('backup_url')}", markup=False)


H_TRUST = ("accept a backup whose manifest is not signed with this env's key (refused on protected envs; "
           "see README, Security)")


@task(help={"to": H_TO + " (see backups.list)", "env": H_ENV, "yes": H_YES, "trust_unsigned": H_TRUST, "json": H_JSON,
            "verbose": H_VERBOSE})
@ops
def rollback(c, to=None, env=None, yes=False, trust_unsigned=False, json_=False, verbose=False):
    """Restore a backup safely: verify, restore into a new DB, check, swap, post-check.

    --to takes an id or prefix, latest, a time (2026-12-02T05:40:00Z, '2026-12-02 05:40'; no zone = UTC),
    --to=-2h, or pre-deploy (undo the last deploy)."""
    report = _run("rollback", env, {"to": to, "yes": yes, "trust_unsigned": trust_unsigned}, json_, verbose)
    if json_:
        render.print_json({"ok": True, "report": report})
    else:
        sel = report.get("selection") or {}
        render.out.print(f"rolled back to {report.get('restored_id')} (revision {report.get('to_rev') or 'base'})"
                         + "".join(f"; undid {ev.get('text')}" for ev in sel.get("undid") or []), markup=False)


@task(help={"env": H_ENV, "json": H_JSON, "allow": "acknowledge a destructive operation (repeatable)",
            "accept_drift": H_ACCEPT_DRIFT + " (shown, not recorded: plan changes nothing)", "verbose": H_VERBOSE},
      iterable=["allow", "accept_drift"])
@ops
def plan(c, env=None, allow=None, accept_drift=None, json_=False, verbose=False):
    """What a deploy would do: steps, hosts, pending revisions with SQL and findings. Changes nothing."""
    report = _run("deploy", env, {"dry_run": True, "allow": allow or [], "accept_drift": accept_drift or []},
                  json_, verbose)
    if json_:
        render.print_json(report)  # report["plan"]: hosts, from/to, pending, sql, findings
        return
    render.plan_sql(report.get("plan") or {})


@task(help={"env": H_ENV, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def status(c, env=None, json_=False, verbose=False):
    """Current vs head revision, pending migrations, last backup and its age, last deploy."""
    from ..status import collect_status

    s = collect_status(env)
    if json_:
        render.print_json(s)
        return
    rows = [["env", s["env"]], ["database", s["database_url"]], ["server", s.get("server_version")],
            ["current", s["current"] or "base"], ["head", s["head"]],
            ["pending", ", ".join(s["pending"]) or "none"],
            ["last backup", f"{s['last_backup']['id']} ({s['last_backup']['age']})" if s.get("last_backup") else "none"],
            ["last deploy", f"{s['last_deploy']['finished_at']} {s['last_deploy']['outcome']}" if s.get("last_deploy") else "none"]]
    render.table(f"status of {s['env']}", ["", ""], rows)


@task(help={"env": H_ENV, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def check(c, env=None, json_=False, verbose=False):
    """Read-only: current vs head, drift (accepted or not), schema vs models, FK orphans, health. Exit 1 unless all hold."""
    from ..ops.check import collect_check

    res = collect_check(env, sink=render.ConsoleSink(render.err, verbose=verbose))
    if json_:
        render.print_json(res)
    else:
        drift = res["drift"]
        new = [d for d in drift if not d["accepted"]]
        rows = [["revision", "ok" if res["current"] == res["head"] else "FAIL",
                 f"{res['current'] or 'base'} (head {res['head']}; pending: {', '.join(res['pending']) or 'none'})"],
                ["drift", "FAIL" if new else "ok",
                 f"{len(new)} unaccepted, {len(drift) - len(new)} accepted"],
                ["models", ("FAIL" if res["models"]["differences"] else "ok") if res["models"]["checked"] else "-",
                 f"{len(res['models']['differences'])} difference(s)" if res["models"]["checked"] else res["models"]["reason"]],
                ["orphans", "FAIL" if res["orphans"] else "ok",
                 f"{sum(o['orphans'] for o in res['orphans'])} orphan row(s) over {res['foreign_keys_checked']} foreign keys"],
                ["health", "FAIL" if any(not h["ok"] for h in res["health"]) else "ok",
                 f"{sum(h['ok'] for h in res['health'])}/{len(res['health'])} endpoints ok"]]
        render.table(f"check of {res['env']} ({res['database']})", ["check", "result", "detail"],
                     rows)  # table cells are plain text
        if drift:
            render.table("schema drift", ["kind", "name", "accepted", "detail"],
                         [[d["kind"], d["name"], "yes" if d["accepted"] else "NO", d["detail"]]
                          for d in drift])
        for p in res["problems"]:
            render.err.print(f"[red]problem:[/] {esc(p)}")
        render.out.print("all checks hold" if res["ok"] else f"{len(res['problems'])} problem(s)")
    if not res["ok"]:
        raise Exit(code=1)


@task(help={"env": "also run live checks of this env (applied-file checksums, ancestry)",
            "migrations": "an Alembic versions directory to validate (default: this project's)",
            "json": H_JSON, "sql": "render pending SQL (Alembic offline) and lint it with squawk", "verbose": H_VERBOSE})
@ops
def validate(c, env=None, migrations=None, json_=False, sql=False, verbose=False):
    """Static checks of the migration history (any Alembic versions dir); live checks with --env."""
    from .validate_cmd import run_validate

    code = run_validate(env=env, migrations=migrations, json_out=json_, render_sql=sql)
    if code:
        raise Exit(code=code)


@task(help={"env": H_ENV, "json": H_JSON, "limit": "how many runs to show", "verbose": H_VERBOSE})
@ops
def history(c, env=None, json_=False, limit=20, verbose=False):
    """The deploy journal: who, when, from -> to, backup used, outcome, durations."""
    from ..status import collect_history

    rows = collect_history(env, int(limit))
    if json_:
        render.print_json(rows)
        return
    render.table("deploy history", ["finished", "action", "operator", "from", "to", "backup", "outcome"],
                 [[r.get("finished_at"), r.get("action"), r.get("operator"), r.get("from_revision"), r.get("to_revision"),
                   r.get("backup_id"), r.get("outcome")] for r in rows])


# ------------------------------------------------------------------ backups.*


@task(name="list", help={"env": H_ENV, "before": "only backups taken at or before: " + H_BOUND,
                         "after": "only backups taken at or after: " + H_BOUND, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backups_list(c, env=None, before=None, after=None, json_=False, verbose=False):
    """Complete backups (with a manifest), newest first; --before/--after narrow them by time."""
    from ..status import list_backups

    items = list_backups(env, before=before, after=after)
    if json_:
        render.print_json(items)
        return
    render.table("backups", ["id", "revision", "size", "sha256", "reason", "age", "signed", "verified"],
                 [[b["id"], b["revision"] or "base", human_bytes(b['size']), b["sha256"][:12], b["reason"], b["age"],
                   "yes" if b["signed"] else {"unsigned": "no", "no-key": "no key"}.get(b["trust"], "BAD"),
                   "yes" if b["verified"] else ""] for b in items])


@task(name="verify", help={"to": H_TO + " (default: latest)", "env": H_ENV, "trust_unsigned": H_TRUST,
                          "sign": "sign an unsigned backup with this env's manifest key, only if the restore drill passes",
                          "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backups_verify(c, to="latest", env=None, trust_unsigned=False, sign=False, json_=False, verbose=False):
    """Restore a backup into a scratch DB, check revision/tables/rows, drop it, record the result."""
    from ..ops.verify import verify_backup

    res = verify_backup(env, to, sink=render.ConsoleSink(render.err, verbose=verbose), trust_unsigned=trust_unsigned,
                        sign=sign)
    if json_:
        render.print_json(res)
        return
    v = res["verification"]
    if (res.get("selection") or {}).get("form") not in (None, "id", "latest"):
        render.out.print("--to=" + str(res["selection"]["asked"]) + ": " + res["selection"]["text"], markup=False)
    if v["rows"]:
        render.table(f"backup {res['id']} verified in {v['duration_s']:.1f}s (revision {v['revision'] or 'base'})",
                     ["table", "rows"], [[t, n] for t, n in sorted(v["rows"].items())])
    render.out.print(f"[green]ok[/]: {len(v['tables'])} tables, {sum(v['rows'].values())} rows; "
                     + ("recorded in the signed manifest" if res.get("signed") else
                        "the manifest is not signed, so this result does not count (backups.verify --sign signs it)"))


@task(name="prune", help={"keep_last": "always keep the newest N backups (>= 1; default 10)",
                         "keep_days": "always keep backups younger than D days (default 30)",
                         "env": H_ENV, "yes": "really delete on a protected env (otherwise a dry run there)",
                         "dry_run": "only show what would be removed", "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backups_prune(c, keep_last=10, keep_days=30, env=None, yes=False, dry_run=False, json_=False, verbose=False):
    """Retention: keep the newest N and the last D days (never the newest verified); remove the rest."""
    from ..ops.prune import prune

    res = prune(env, keep_last, keep_days, yes=yes, dry_run=dry_run, sink=render.ConsoleSink(render.err, verbose=verbose))
    if json_:
        render.print_json(res)
        return
    verb = "would remove" if res["dry_run"] else "removed"
    if res["removed"]:
        render.table(f"{verb} ({res['env']}, keep last {res['keep_last']}, keep {res['keep_days']:g} days)",
                     ["kind", "name", "age", "reason"],
                     [[r["kind"], r["name"], r["age"], r["reason"]] for r in res["removed"]])
    render.out.print(f"{len(res['removed'])} to remove, {len(res['kept'])} kept"
                     + (f"; dry run ({res['dry_run_reason']}): nothing was deleted"
                        + ("; add --yes to delete" if res["dry_run_reason"] != "--dry-run" else "") if res["dry_run"] else ""),
                     markup=False)


# ------------------------------------------------------------------ adopt


def _confirm_adopt(env_name: str, report: dict) -> bool:
    if not sys.stdin.isatty():
        return False
    accepted = [f"{d['kind']}:{d['name']}" for d in report.get("drift") or [] if d.get("accepted")]
    render.err.print(f"[bold]adopt[/] {esc(report['database'])} on {esc(env_name)}: TypeORM {esc(report.get('typeorm_last'))} "
                     f"({esc(report.get('typeorm_applied'))} migrations) = Alembic revision {esc(report.get('revision'))}; "
                     + (f"the live schema matches it but for the accepted differences: {esc(', '.join(accepted))}"
                        if accepted else "the live schema matches it")
                     + ". This writes alembic_version (alembic stamp).")
    render.err.print(f"[bold]Type the environment name ({esc(env_name)}) to continue:[/] ", end="")
    try:
        return input().strip() == env_name
    except EOFError:
        return False


@task(help={"env": H_ENV, "yes": H_YES, "json": H_JSON, "verbose": H_VERBOSE,
            "table": "TypeORM's migrations table, when the backend sets migrationsTableName (default: migrations)",
            "accept_drift": "accept the schema differences found (bare flag: every one listed; or name them, "
                            "comma-separated, as kind:name): recorded with who/when, then stamped"},
      optional=["accept_drift"])
@ops
def adopt(c, env=None, yes=False, json_=False, verbose=False, table=None, accept_drift=None):
    """Take over a TypeORM-built DB: map its migrations table, check the schema, alembic stamp."""
    from ..ops.adopt import adopt as do_adopt

    res = do_adopt(env, yes=yes, table=table, sink=render.ConsoleSink(render.err, verbose=verbose),
                   confirm=_confirm_adopt if sys.stdin.isatty() else None, accept_drift=accept_drift)
    if json_:
        render.print_json(res)
        return
    pend = res.get("pending") or []
    render.out.print(f"adopted {res['database']} at revision {res['stamped']} (TypeORM {res['typeorm_last']}); "
                     + (f"{len(pend)} pending: run `invoke deploy --env={res['env']}`" if pend else "up to date with head"),
                     markup=False)


# ------------------------------------------------------------------ migrations.*


@task(name="new", help={"message": "what the revision does (becomes the docstring and the file name)",
                        "verbose": H_VERBOSE})
@ops
def migrations_new(c, message=None, verbose=False):
    """Create a new revision file with the next readable id (0014 after 0013)."""
    from ..ops.revisions import new_revision

    r = new_revision(message)
    render.out.print(f"created {r['id']} (after {r['down_revision']}): {r['file']}", markup=False)


@task(name="history", help={"env": "also mark which revisions this env has applied", "json": H_JSON,
                            "verbose": H_VERBOSE})
@ops
def migrations_history(c, env=None, json_=False, verbose=False):
    """The Alembic history, newest first: id, parent, message, file."""
    from ..ops.revisions import history as hist

    rows = hist(env)
    if json_:
        render.print_json(rows)
        return
    cols = ["id", "parent", "message", "file"] + (["applied"] if env else [])
    render.table("migrations", cols,
                 [[r["id"] + (" (head)" if r["head"] else ""), r["down_revision"], r["message"].split(":")[0][:60], r["file"]]
                  + ([("current" if r["current"] else "yes") if r["applied"] else ""] if env else []) for r in rows])


def _backup_first(env: str | None, backup: bool) -> bool:
    _, e = _load_env(env)
    return bool(backup or e.protected)


@task(name="upgrade", help={"env": H_ENV, "to": "revision to upgrade to (default: head)", "yes": H_YES,
                           "dry_run": "show the plan and stop", "backup": "take a backup first even on an unprotected env",
                           "allow": "acknowledge a destructive operation (repeatable)",
                           "accept_drift": H_ACCEPT_DRIFT, "json": H_JSON,
                           "verbose": H_VERBOSE}, iterable=["allow", "accept_drift"])
@ops
def migrations_upgrade(c, env=None, to="head", yes=False, dry_run=False, backup=False, allow=None, accept_drift=None,
                       json_=False, verbose=False):
    """Alembic upgrade to --to, with the lock, validation, confirmation, and a backup first on protected envs."""
    from ..ops.revisions import resolve_target, upgrade_playbook

    target = resolve_target(to)
    opts = {"target": target, "yes": yes, "dry_run": dry_run, "allow": allow or [],
            "accept_drift": accept_drift or [], "backup_first": _backup_first(env, backup)}
    report = _run("migrations.upgrade", env, opts, json_, verbose, playbook=upgrade_playbook())
    if json_:
        render.print_json({"ok": True, "report": report})


@task(name="downgrade", help={"env": H_ENV, "to": "revision to go down to (required; 'base' for an empty schema)",
                             "yes": "required on protected envs (a downgrade can drop data)",
                             "dry_run": "show the plan and stop", "backup": "take a backup first even on an unprotected env",
                             "json": H_JSON, "verbose": H_VERBOSE})
@ops
def migrations_downgrade(c, env=None, to=None, yes=False, dry_run=False, backup=False, json_=False, verbose=False):
    """Alembic downgrade to --to: lock, a backup first on protected envs, refused there without --yes."""
    from ..ops.revisions import downgrade_playbook

    opts = {"to": to, "yes": yes, "dry_run": dry_run, "backup_first": _backup_first(env, backup)}
    report = _run("migrations.downgrade", env, opts, json_, verbose, playbook=downgrade_playbook())
    if json_:
        render.print_json({"ok": True, "report": report})


# ------------------------------------------------------------------ sandbox.*


H_SANDBOX_ENV = "an environment with a sandbox: section (default: local)"


@task(name="up", help={"env": H_SANDBOX_ENV, "verbose": H_VERBOSE})
@ops
def sandbox_up(c, env="local", verbose=False):
    """Start the embedded PostgreSQL of a sandbox env (initialising it on first use)."""
    from ..database.sandbox import ensure_sandbox

    _, e = _load_env(env)
    if e.sandbox is None:
        raise OpsError(f"env {e.name!r} has no sandbox", "use an env with a 'sandbox:' section, e.g. local")
    cl = ensure_sandbox(e)
    render.out.print(f"sandbox running: {cl.url(e.database.name, e.database.user).replace('+psycopg', '')} "
                     f"(PostgreSQL {'.'.join(map(str, cl.version))})", markup=False)


@task(name="down", help={"env": H_SANDBOX_ENV, "destroy": "also delete the sandbox's data directory",
                         "verbose": H_VERBOSE})
@ops
def sandbox_down(c, env="local", destroy=False, verbose=False):
    """Stop the embedded PostgreSQL (and with --destroy remove its data)."""
    from ..database.sandbox import stop_sandbox

    _, e = _load_env(env)
    if e.sandbox is None:
        raise OpsError(f"env {e.name!r} has no sandbox")
    cl = stop_sandbox(e, destroy=destroy)
    render.out.print(("destroyed " if destroy else "stopped ") + str(cl.root), markup=False)


def build_collection() -> Collection:
    ns = Collection()
    for t in (deploy, backup, rollback, plan, status, check, validate, history):
        ns.add_task(t)
    backups = Collection("backups")
    backups.add_task(backups_list, name="list")
    backups.add_task(backups_verify, name="verify")
    backups.add_task(backups_prune, name="prune")
    ns.add_collection(backups)
    ns.add_task(adopt)
    migrations = Collection("migrations")
    for name, t in (("new", migrations_new), ("history", migrations_history), ("upgrade", migrations_upgrade),
                    ("downgrade", migrations_downgrade)):
        migrations.add_task(t, name=name)
    ns.add_collection(migrations)
    sandbox = Collection("sandbox")
    sandbox.add_task(sandbox_up, name="up")
    sandbox.add_task(sandbox_down, name="down")
    ns.add_collection(sandbox)
    return ns
