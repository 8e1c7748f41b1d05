"""Runs a playbook: ordered steps, a journal, the env lock, and on_failure handlers.

A run is a :class:`~vetai_ops.pipeline.context.RunContext` (env, targets, store, DB access,
options, and the steps' :class:`~vetai_ops.runstate.RunState`) passed to each step function
registered in :mod:`vetai_ops.steps`; signals are :mod:`vetai_ops.pipeline.signals`. Steps report through
``ctx.emit``; the face renders. A failure in or after the step named by the playbook's
``on_failure_after`` (``backup``) runs ``on_failure`` (restore that backup, restart,
post-check again) and ends in :class:`DeployFailed` carrying a report.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .. import __version__
from ..config import Inventory, Playbook, StepSpec, load_inventory, load_playbook
from ..errors import DeployFailed, Interrupted, OpsError, StopPipeline, short_error
from ..events import EventSink, NullSink
from ..database.history import record as record_history
from ..secrets import redact, redact_data
from .context import RunContext, run_context  # noqa: F401 - the face makes its contexts here
from .signals import SignalGuard


# ------------------------------------------------------------------- runner


def _when(spec: StepSpec, ctx: RunContext) -> bool:
    cond = spec.when
    if not cond:
        return True
    neg = cond.startswith("not ")
    name = cond[4:] if neg else cond
    val = ctx.state.condition(name)  # a step decided it, else the option of that name
    val = bool(ctx.options.get(name, False) if val is None else val)
    return not val if neg else val


def _run_step(ctx: RunContext, spec: StepSpec, phase: str, records: list) -> dict:
    """Run one step; its record is in ``records`` from the start, so a failed step is reported too."""
    from ..steps import get_step

    fn = get_step(spec.step)
    rec = {"step": spec.label, "phase": phase, "status": "running"}
    records.append(rec)
    if not _when(spec, ctx):
        ctx.emit("step_skipped", f"skipped ({spec.when} is false)", step=spec.label)
        rec.update(status="skipped", duration_s=0.0)
        return rec
    ctx.state.current_step = spec.label
    t0 = time.monotonic()
    ctx.emit("step_started", "", step=spec.label)
    try:
        summary = fn(ctx, **spec.options)
    except StopPipeline as e:
        rec.update(status="ok", duration_s=round(time.monotonic() - t0, 3), summary=str(e))
        ctx.emit("step_finished", str(e), step=spec.label, duration_s=rec["duration_s"])
        raise
    except BaseException as e:
        msg = redact(short_error(e))
        rec.update(status="failed", duration_s=round(time.monotonic() - t0, 3), error=msg)
        _detail(ctx, rec)
        ctx.emit("step_failed", msg, step=spec.label, duration_s=rec["duration_s"])
        raise
    rec.update(status="ok", duration_s=round(time.monotonic() - t0, 3))
    _detail(ctx, rec)
    if summary:
        rec["summary"] = summary
    ctx.emit("step_finished", summary or "", step=spec.label, duration_s=rec["duration_s"])
    return rec


def _detail(ctx: RunContext, rec: dict) -> None:
    """A step's measurements for the journal (``ctx.state.step_detail``, e.g. the rehearsal's
    per-revision durations): kept in its record, and so in deploy_history's ``steps``."""
    detail, ctx.state.step_detail = ctx.state.step_detail, None
    if detail:
        rec["detail"] = redact_data(detail)


def run_playbook(
    name: str,
    env_name: str | None = None,
    *,
    options: dict | None = None,
    sink: EventSink | None = None,
    confirm: Callable[[str, dict], bool] | None = None,
    inventory: Inventory | None = None,
    playbook: Playbook | None = None,
    targets: dict[str, Any] | None = None,
) -> dict:
    """Run playbook ``name`` on an env. Returns the run report; raises OpsError on failure.
    ``targets``: host -> a target made by the caller (:meth:`RunContext.use_target`)."""
    pb = playbook or load_playbook(name)
    from ..steps import check_playbook

    check_playbook(pb)  # a bad playbook is refused (exit 2) before any lock, backup or journal line
    inv = inventory or load_inventory()
    env = inv.env(env_name)
    ctx = RunContext(inv, env, pb.name, dict(options or {}), sink or NullSink(), confirm)
    for host, target in (targets or {}).items():
        ctx.use_target(host, target)
    report: dict[str, Any] = {
        "run_id": ctx.run_id,
        "action": pb.name,
        "env": env.name,
        "operator": ctx.operator,
        "steps": [],
        "outcome": "running",
    }
    ctx.emit("run_started", f"{pb.name} on {env.name}", step=None, playbook=pb.path, run_id=ctx.run_id)
    armed = False  # on_failure armed once the on_failure_after step really made a backup
    failure: BaseException | None = None
    with SignalGuard() as guard:
        try:
            try:
                for spec in pb.steps:
                    rec = _run_step(ctx, spec, "main", report["steps"])
                    if (pb.on_failure_after and spec.step == pb.on_failure_after and rec["status"] == "ok"
                            and ctx.state.backup is not None):
                        armed = True
                report["outcome"] = "success"
            except StopPipeline as e:
                report["outcome"] = "stopped"
                report["message"] = str(e)
            except BaseException as e:  # noqa: BLE001 - we re-raise below after on_failure
                failure = e
                report["outcome"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
                report["error"] = (redact(short_error(e)) if not isinstance(e, KeyboardInterrupt)
                                   else f"interrupted ({guard.received or 'SIGINT'})")
                report["failed_step"] = ctx.state.current_step
                report["db_changed"] = ctx.state.db_changed
                # restore only what this run changed: a failure before any write (verify, a refused
                # migrate, a restart with nothing applied) leaves the live DB and its newer writes alone
                if armed and report["db_changed"] and pb.on_failure:
                    ctx.state.failed_step = report["failed_step"]
                    with guard.shielded():
                        _on_failure(ctx, pb, report)
        finally:
            _finish(ctx, report)
    if failure is not None:
        if isinstance(failure, KeyboardInterrupt):
            raise _interrupted(pb, env, report)
        if armed or report["db_changed"]:
            raise DeployFailed(
                f"{pb.name} on {env.name} failed at {report.get('failed_step')}: {report['error']}; "
                + _recovery_summary(report),
                "see the report above and logs/migration.log",
                report=report,
                # nothing changed (a refusal or a failed verification after the backup): keep its code
                exit_code=1 if report["db_changed"] else getattr(failure, "exit_code", 1),
            )
        if isinstance(failure, OpsError):
            failure.details.setdefault("report", report)
            raise failure
        raise failure
    return report


def _interrupted(pb, env, report) -> Interrupted:
    e = Interrupted(f"{pb.name} on {env.name} interrupted during {report.get('failed_step')}; " + _recovery_summary(report))
    e.details["report"] = report
    return e


def _recovery_summary(report: dict) -> str:
    rec = report.get("recovery")
    swapped = report.get("restore_summary")
    if not rec and swapped:
        # the restore ran as a main step (a rollback) and failed after its swap: it is done
        return (f"the live database is backup {report.get('restored_id')}; the one it replaced is kept as "
                f"{swapped['previous_db']} (to go back: ALTER DATABASE ... RENAME, or `invoke rollback` to another backup)"
                + _writes_summary(report))
    if not rec:
        if report.get("db_changed"):
            return ("no backup was taken by this run, so nothing was restored: the database may be partly "
                    f"changed; check `invoke status --env={report.get('env')}`")
        return "the database was not changed by this run; nothing to restore"
    if rec.get("status") == "ok":
        return (f"recovered: {', '.join(rec.get('done', []))}; backup {report.get('backup_id')} at {report.get('backup_url')}"
                + _writes_summary(report))
    return (
        f"RECOVERY FAILED at {rec.get('failed_step')}: {rec.get('error')}; restore by hand with "
        f"`invoke rollback --to={report.get('backup_id')} --env={report.get('env')}` (backup at {report.get('backup_url')})"
    )


def _writes_summary(report: dict) -> str:
    """What the restore set aside: the app's writes since the backup, and where they are."""
    if report.get("recovered_by") == "downgrade":
        return "; downgraded instead of restoring the backup (downgrade_on_failure): the app's writes since the backup are kept"
    if not report.get("kept_as"):
        return ""
    from ..database.writestats import describe

    w = report.get("writes_since_backup")
    if w == {}:
        return f"; no writes since the backup were discarded (the replaced database is kept as {report['kept_as']})"
    return (f"; WRITES SINCE THE BACKUP discarded by the restore: {describe(w)}"
            + (f" ({'; '.join(report.get('writes_notes') or [])})" if w is None else "")
            + f"; they are kept in database {report['kept_as']}")


def _on_failure(ctx: RunContext, pb: Playbook, report: dict) -> None:
    rec: dict[str, Any] = {"status": "running", "done": [], "steps": []}
    report["recovery"] = rec
    ctx.state.recovering = True
    ctx.emit("warning", f"{report.get('failed_step')} failed; running on_failure", step=None)
    for spec in pb.on_failure:
        try:
            r = _run_step(ctx, spec, "on_failure", rec["steps"])
            if r["status"] == "ok" and (r.get("summary") or spec.step != "recovery_plan"):  # a choice not made: not "done"
                rec["done"].append(spec.label + (f" {r['summary']}" if r.get("summary") else ""))
        except BaseException as e:  # noqa: BLE001
            rec.update(status="failed", failed_step=spec.label, error=redact(short_error(e)))
            return
    rec["status"] = "ok"


def _finish(ctx: RunContext, report: dict) -> None:
    hooks, ctx.state.on_finish = ctx.state.on_finish, []
    for fn in hooks:  # e.g. lift the write fence: on every exit path, first
        try:
            fn(ctx)
        except Exception as e:  # noqa: BLE001 - never hides the run's own outcome
            ctx.emit("warning", f"{getattr(fn, '__name__', 'cleanup')} failed: {redact(short_error(e))}")
    report["finished"] = time.time()
    report["started"] = ctx.started
    report["duration_s"] = round(report["finished"] - ctx.started, 3)
    report.update(ctx.state.report())
    ctx.emit("run_finished", report["outcome"], step=None, outcome=report["outcome"], duration_s=report["duration_s"])
    # journal: the target DB's deploy_history (best effort: never hides the real outcome);
    # a dry run (`invoke plan`) writes nothing into the database, only the local log
    if ctx.state.db_touched and not ctx.options.get("dry_run"):
        try:
            record_history(
                ctx.access.connect,
                {
                    "run_id": ctx.run_id,
                    "action": report["action"],
                    "env": ctx.env.name,
                    "operator": ctx.operator,
                    "started": ctx.started,
                    "finished": report["finished"],
                    "from_revision": report.get("from_rev"),
                    "to_revision": report.get("to_rev"),
                    "backup_id": report.get("backup_id") or report.get("restored_id"),
                    "outcome": report["outcome"] + ("+restored" if report.get("recovery", {}).get("status") == "ok" else ""),
                    "error": report.get("error"),
                    "steps": [{k: v for k, v in s.items() if k in ("step", "phase", "status", "duration_s", "detail")} for s in report["steps"] + report.get("recovery", {}).get("steps", [])],
                    "revisions": report.get("revisions", []),
                    "tool_version": __version__,
                },
            )
        except Exception as e:  # noqa: BLE001
            ctx.emit("warning", f"could not write deploy_history: {redact(str(e).splitlines()[0] if str(e) else repr(e))}")
    # the run's log next to the backup it made
    bid = report.get("backup_id")
    if bid:
        try:
            ctx.catalog.write_log(bid, ctx.journal.lines)
        except Exception:  # noqa: BLE001
            pass
    ctx.close()
