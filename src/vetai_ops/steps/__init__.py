"""Pipeline steps, one module each. A step is ``fn(ctx, **options) -> summary str | None``.

Steps report through ``ctx.emit``; they never print, never know whether a host is local
or SSH, and never know whether the store is S3 or a folder.

A step's options are its keyword parameters after ``ctx`` (no ``**kwargs``): a playbook
is checked against them when loaded (:func:`check_playbook`), so a mistyped option or
step name is refused before anything runs instead of in the middle of a recovery.

No step module imports another (tests/test_rooms.py): what two steps share is a primitive
in database/, store/, targets/ or :mod:`vetai_ops.transfer`, or, when it is glue over the
run's state, a function here (:func:`run_alembic`, :func:`route`).
"""

from __future__ import annotations

import contextlib
import inspect
import re
from pathlib import Path
from typing import Callable

from ..errors import PlaybookError

_REGISTRY: dict[str, Callable] = {}

# The conditions a playbook's ``when:`` may name (optionally ``not <name>``): a step sets the
# field of that name of the run's state (vetai_ops.runstate.RunState), or the face passes
# the option of that name.
CONDITIONS = {
    "run_migrations": "validate: revisions are pending (RUN_MIGRATIONS=false turns it off)",
    "first_deploy": "validate: the database has no revision yet (IS_FIRST_DEPLOY / RUN_SEEDS override it)",
    "backup_first": "--backup or a protected env, or validate: a destructive revision was acknowledged",
    "downgrade_recovery": "recovery_plan (on_failure): downgrade_on_failure is set and every applied revision "
                          "reverts without data loss",
}


def step(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


# which module defines each built-in step: a run imports only the modules of its playbook's
# steps (a backup needs neither Alembic's command machinery nor pglast). Read from the step
# modules' own ``@step("name")`` lines (their text, not an import), so that a new step needs
# no second registration; a name found nowhere loads every module, as before.
_STEP_LINE = re.compile(r"""^@step\(["']([A-Za-z_][A-Za-z0-9_]*)["']\)""", re.M)
_modules: dict[str, str] | None = None


def step_modules() -> dict[str, str]:
    """step name -> module name (in this package), from the modules' ``@step`` lines."""
    global _modules
    if _modules is None:
        found: dict[str, str] = {}
        for path in sorted(Path(__file__).parent.glob("*.py")):
            if path.stem != "__init__":
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    for name in _STEP_LINE.findall(path.read_text()):
                        found.setdefault(name, path.stem)
        _modules = found
    return _modules


def _ensure(names) -> None:
    """Import the modules that define ``names``; every module when one of them is not a
    known step (so that an unknown name is refused with the full list of steps)."""
    import importlib

    modules = step_modules()
    for name in names:
        if name not in _REGISTRY and name in modules:
            importlib.import_module(f"{__name__}.{modules[name]}")
    if any(name not in _REGISTRY for name in names):
        _load()


def get_step(name: str) -> Callable:
    _ensure([name])
    if name not in _REGISTRY:
        raise PlaybookError(f"unknown step {name!r} in playbook", f"use one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def step_options(name: str) -> list[str]:
    """The options step ``name`` accepts: its keyword parameters after ``ctx``."""
    params = list(inspect.signature(get_step(name)).parameters.values())[1:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def playbook_problems(pb) -> list[str]:
    """Every problem of playbook ``pb`` as ``<key path>: <what>``: unknown steps (in
    ``steps:`` and ``on_failure:``), options the step does not take, unknown ``when:``
    conditions, an ``on_failure_after`` that is not one of its steps."""
    out = []
    for section in ("steps", "on_failure"):
        for i, spec in enumerate(getattr(pb, section)):
            at = f"{section}[{i}]"
            try:
                get_step(spec.step)  # imports what the run would import anyway
            except PlaybookError:
                _load()  # every step, to list them
                out.append(f"{at}.step: unknown step {spec.step!r} (steps: {', '.join(sorted(_REGISTRY))})")
                continue
            accepted = step_options(spec.step)
            for opt in spec.options:
                if opt not in accepted:
                    takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
                    out.append(f"{at}.options.{opt}: step {spec.step!r} has no option {opt!r} ({takes})")
            if spec.when is not None:
                cond = spec.when.strip()
                cond = cond[4:].strip() if cond.startswith("not ") else cond
                if cond not in CONDITIONS:
                    out.append(f"{at}.when: unknown condition {spec.when!r} "
                               f"(conditions: {', '.join(sorted(CONDITIONS))}, each optionally 'not ...')")
    if pb.on_failure_after and pb.on_failure_after not in {s.step for s in pb.steps}:
        out.append(f"on_failure_after: {pb.on_failure_after!r} is not a step of this playbook")
    return out


def check_playbook(pb) -> None:
    """Refuse (exit 2) a playbook that could not run as written, naming the file and the key."""
    problems = playbook_problems(pb)
    if problems:
        where = pb.path or f"playbook {pb.name!r}"
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise PlaybookError(f"{where}: {problems[0]}{more}", "fix the playbook; nothing was run")


# ---------------------------------------------------------------- shared by steps


def route(ctx):
    """The run's DB host, catalog, database access, backup settings and callbacks, for the
    transfer primitives (:class:`vetai_ops.transfer.restore.Route`): they never see ``ctx``."""
    from ..transfer.restore import Route

    b = ctx.env.backup
    return Route(target=ctx.db_target, catalog=ctx.catalog, access=ctx.access, stall_timeout=b.stall_timeout,
                 restore_jobs=b.restore_jobs, emit=ctx.emit, progress=ctx.progress,
                 locked=ctx.state.lock is not None)


def run_alembic(ctx, direction: str, target: str | None, files: dict | None = None) -> list[dict]:
    """Alembic upgrade/downgrade to ``target`` (:class:`~vetai_ops.database.applied.RevisionRun`:
    the env's timeouts, one transaction per revision, ``vetai_ops_applied`` kept in step); each
    revision's timing is journaled, and what was applied is in the run's state even on failure."""
    from ..database import writestats
    from ..database.applied import RevisionRun

    run = RevisionRun(files)
    db = ctx.env.database

    def started():
        ctx.state.db_changed = True  # from here a failure can leave revisions applied: on_failure restores

    def applied(t):
        verb = "" if t["upgrade"] else "reverted "
        ctx.emit("revision_applied", f"{verb}{t['revision']} {t['duration_s']:.2f}s", revision=t["revision"],
                 duration_s=t["duration_s"])

    ctx.state.db_touched = True
    try:
        return run.run(ctx.access.engine(), direction, target, lock_timeout=db.lock_timeout,
                       statement_timeout=db.statement_timeout, on_start=started, on_applied=applied)
    finally:
        ctx.state.revisions = run.timings
        # the rows the revisions themselves wrote are not the app's: a restore's report leaves them out
        writestats.add_into(ctx.state.own_writes, run.own_writes)


def _load() -> None:
    from . import adopt, backup, checks, confirm, downgrade, drift, fence, lock, migrate, rehearse, restart, restore, seed, validate, verify  # noqa: F401
