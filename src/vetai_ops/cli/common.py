"""What every task of the face shares: the help texts, the error decorator, the event sink,
and the operator's confirmation prompts. The tasks parse flags, call one function of the
use-case layer (``vetai_ops.ops``) and render what it returns."""

from __future__ import annotations

import functools
import sys
import traceback

from invoke import Exit

from ..errors import OpsError
from ..secrets import redact
from . import render
from .render import esc

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
H_TRUST = ("accept a backup whose manifest is not signed with this env's key (refused on protected envs; "
           "see README, Security)")


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


def sink(verbose: bool) -> render.ConsoleSink:
    """The run's events, rendered on stderr."""
    return render.ConsoleSink(render.err, verbose=verbose)


def _type_env_name(env_name: str) -> bool:
    render.err.print(f"[bold]Type the environment name ({esc(env_name)}) to continue:[/] ", end="")
    try:
        return input().strip() == env_name
    except EOFError:
        return False


def _confirm_run(env_name: str, plan: dict) -> bool:
    """Ask to type the env name. The plan itself was already shown by the run's plan event."""
    if (plan.get("rehearsal") or {}).get("result"):  # asked after the rehearsal: what it measured
        render.rehearsal_lines(plan, render.err)
    sel = plan.get("selection") or {}
    if sel.get("text"):  # a rollback: say once more which backup, and what it undoes
        render.err.print("restore " + sel["text"]
                         + "".join("; undoes " + ev.get("text", "") for ev in sel.get("undid") or []), markup=False)
    return _type_env_name(env_name)


def _confirm_adopt(env_name: str, report: dict) -> bool:
    accepted = [f"{d['kind']}:{d['name']}" for d in report.get("drift") or [] if d.get("accepted")]
    render.err.print(f"[bold]adopt[/] {esc(report['database'])} on {esc(env_name)}: TypeORM {esc(report.get('typeorm_last'))} "
                     f"({esc(report.get('typeorm_applied'))} migrations) = Alembic revision {esc(report.get('revision'))}; "
                     + (f"the live schema matches it but for the accepted differences: {esc(', '.join(accepted))}"
                        if accepted else "the live schema matches it")
                     + ". This writes alembic_version (alembic stamp).")
    return _type_env_name(env_name)


def confirm(adopt: bool = False):
    """The prompt a protected env's run asks through, or ``None`` with no terminal to ask on
    (the confirm step then refuses unless --yes: :func:`vetai_ops.policy.refuse_unconfirmed`)."""
    if not sys.stdin.isatty():
        return None
    return _confirm_adopt if adopt else _confirm_run
