"""`invoke validate`: static report of any Alembic versions dir; live checks with --env."""

from __future__ import annotations

from pathlib import Path

from .. import paths
from . import render
from .render import esc


def run_validate(env: str | None, migrations: str | None, json_out: bool, render_sql: bool) -> int:
    from ..validate import validate_history

    vdir = Path(migrations) if migrations else paths.versions_dir()
    if not vdir.is_dir():
        from ..errors import ConfigError

        raise ConfigError(f"--migrations={vdir}: not a directory", "point it at an Alembic versions/ folder")
    own = migrations is None
    pending = None
    live_errors: list[str] = []
    current = None
    protected = False
    if env:
        from ..database import migrations as mig
        from ..status import context
        from ..database.applied import changed_applied

        with context(env) as ctx:
            protected = ctx.env.protected
            with ctx.access.engine().connect() as conn:
                current = mig.current(conn)
                live_errors += changed_applied(conn)
            if current and not mig.known(current):
                live_errors.append(f"database is at revision {current}, unknown to this checkout (ahead or diverged)")
            else:
                pending = set(mig.chain(current, mig.head()))
    report = validate_history(
        vdir, pending=pending, render=render_sql and own,
        alembic_ini=paths.project_root() / "alembic.ini" if own else None,
    )
    data = report.to_json()
    data["live_errors"] = live_errors
    if env:
        data["current"] = current
        data["pending"] = sorted(pending or [])
    # with --env, a pending destructive revision that deploy would refuse is not "valid" either
    ok = report.ok and not live_errors and not (env and report.blocking)
    if protected and any(f.rule == "squawk-missing" for f in report.findings):
        live_errors.append(f"squawk is not installed: protected env {env!r} refuses SQL nobody linted "
                           "(`pip install -e .` installs squawk-cli)")
        ok = False
    data["ok"] = ok
    if json_out:
        render.print_json(data)
    else:
        c = render.out
        c.print(f"{data['revisions']} revisions in {vdir}; heads: {', '.join(data['heads']) or '-'}", markup=False)
        for e in data["errors"]:
            c.print(f"[red]error[/] {esc(e.get('code'))}: {esc(e.get('message'))}  "
                    f"[dim]{esc(e.get('file'))}:{esc(e.get('line') or '')}[/]")
        for e in live_errors:
            c.print(f"[red]error[/] {esc(e)}")
        for f in data["findings"]:
            sev = "[red]blocking[/]" if f.get("severity") == "error" else "[yellow]warning[/]"
            if f.get("acknowledged"):
                sev = "[green]acknowledged[/]"
            c.print(f"{sev} {esc(f['revision'])} {esc(f['rule'])}: {esc(f['message'])}  "
                    f"[dim]{esc(f['file'])}:{esc(f.get('line') or '')}[/]")
        if render_sql and data.get("sql"):
            render.plan_sql({"pending": list(data["sql"]), "sql": data["sql"]}, c)
        c.print("[green]valid[/]" if ok else "[red]invalid[/]")
    return 0 if ok else 2
