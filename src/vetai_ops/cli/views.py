"""The read-only verbs: status, check, validate, history. Tables and JSON of what the
use-case layer returns (``vetai_ops.ops.status``, ``.check``, ``.validate``)."""

from __future__ import annotations

from invoke import Exit, task

from . import render
from .common import H_ENV, H_JSON, H_VERBOSE, ops, sink
from .render import esc


@task(help={"env": H_ENV, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def status(c, env=None, json_=False, verbose=False):
    """Current vs head revision, pending migrations, last backup and its age, last deploy."""
    from ..ops.status import collect_status

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


def _check_table(res: dict) -> None:
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


@task(help={"env": H_ENV, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def check(c, env=None, json_=False, verbose=False):
    """Read-only: current vs head, drift (accepted or not), schema vs models, FK orphans, health. Exit 1 unless all hold."""
    from ..ops.check import collect_check

    res = collect_check(env, sink=sink(verbose))
    if json_:
        render.print_json(res)
    else:
        _check_table(res)
    if not res["ok"]:
        raise Exit(code=1)


def _validation_lines(data: dict, versions_dir, render_sql: bool) -> None:
    c = render.out
    c.print(f"{data['revisions']} revisions in {versions_dir}; heads: {', '.join(data['heads']) or '-'}", markup=False)
    for e in data["errors"]:
        c.print(f"[red]error[/] {esc(e.get('code'))}: {esc(e.get('message'))}  "
                f"[dim]{esc(e.get('file'))}:{esc(e.get('line') or '')}[/]")
    for e in data["live_errors"]:
        c.print(f"[red]error[/] {esc(e)}")
    for f in data["findings"]:
        sev = "[red]blocking[/]" if f.get("severity") == "error" else "[yellow]warning[/]"
        if f.get("acknowledged"):
            sev = "[green]acknowledged[/]"
        c.print(f"{sev} {esc(f['revision'])} {esc(f['rule'])}: {esc(f['message'])}  "
                f"[dim]{esc(f['file'])}:{esc(f.get('line') or '')}[/]")
    if render_sql and data.get("sql"):
        render.plan_sql({"pending": list(data["sql"]), "sql": data["sql"]}, c)
    c.print("[green]valid[/]" if data["ok"] else "[red]invalid[/]")


@task(help={"env": "also run live checks of this env (applied-file checksums, ancestry)",
            "migrations": "an Alembic versions directory to validate (default: this project's)",
            "json": H_JSON, "sql": "render pending SQL (Alembic offline) and lint it with squawk", "verbose": H_VERBOSE})
@ops
def validate(c, env=None, migrations=None, json_=False, sql=False, verbose=False):
    """Static checks of the migration history (any Alembic versions dir); live checks with --env."""
    from ..ops.validate import validate as run_validation

    v = run_validation(env, migrations, render_sql=sql)
    if json_:
        render.print_json(v.data)
    else:
        _validation_lines(v.data, v.versions_dir, sql)
    if not v.ok:
        raise Exit(code=2)


@task(help={"env": H_ENV, "json": H_JSON, "limit": "how many runs to show", "verbose": H_VERBOSE})
@ops
def history(c, env=None, json_=False, limit=20, verbose=False):
    """The deploy journal: who, when, from -> to, backup used, outcome, durations."""
    from ..ops.status import collect_history

    rows = collect_history(env, int(limit))
    if json_:
        render.print_json(rows)
        return
    render.table("deploy history", ["finished", "action", "operator", "from", "to", "backup", "outcome"],
                 [[r.get("finished_at"), r.get("action"), r.get("operator"), r.get("from_revision"), r.get("to_revision"),
                   r.get("backup_id"), r.get("outcome")] for r in rows])
