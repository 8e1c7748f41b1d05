"""Runs a playbook: ordered steps, a journal, the env lock, and on_failure handlers.

A run is a :class:`RunContext` (env, targets, store, DB access, options, shared state)
passed to each step function registered in :mod:`vetai_ops.steps`. Steps report through
``ctx.emit``; the face renders. A failure in or after the step named by the playbook's
``on_failure_after`` (``backup``) runs ``on_failure`` (restore that backup, restart,
post-check again) and ends in :class:`DeployFailed` carrying a report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from . import __version__
from .config import Environment, Inventory, Playbook, StepSpec, load_inventory, load_playbook
from .errors import DeployFailed, Interrupted, OpsError, StopPipeline, short_error
from .events import Event, EventSink, ListSink, NullSink, Tee
from .database.history import record as record_history
from .journal import FileJournal, operator_id
from .secrets import redact, redact_data


@dataclass
class RunContext:
    inventory: Inventory
    env: Environment
    action: str
    options: dict[str, Any] = field(default_factory=dict)
    sink: EventSink = field(default_factory=NullSink)
    confirm: Callable[[str, dict], bool] | None = None  # face-provided prompt
    state: dict[str, Any] = field(default_factory=dict)
    journaled: bool = True  # False for read-only views (status, history, lists)

    def __post_init__(self):
        self.run_id = uuid.uuid4().hex[:12]
        self.operator = operator_id()
        self.started = time.time()
        self._stack = contextlib.ExitStack()
        self._db_target = None
        self._app_targets = None
        self._targets: dict[str, Any] = {}  # host -> its target, for the run
        self._store = None
        self._catalog = None
        self._access = None
        self._cluster = None
        self.events = ListSink()
        self.journal = FileJournal(self.run_id, self.action, self.env.name, enabled=self.journaled)
        self.sink = Tee(self.sink, self.events, self.journal)

    # ---------------------------------------------------------------- reporting
    def emit(self, kind: str, message: str = "", step: str | None = None, **data) -> None:
        self.sink.emit(Event(kind, step or self.state.get("current_step"), redact(message), redact_data(data)))

    def progress(self, step: str, done: int, total: int | None = None, **data) -> None:
        self.sink.emit(Event("progress", step, "", {"done": done, "total": total, **data}))

    # ---------------------------------------------------------------- resources
    @property
    def cluster(self):
        if self.env.sandbox is not None and self._cluster is None:
            from .database.sandbox import ensure_sandbox

            self._cluster = ensure_sandbox(self.env)
        return self._cluster

    @property
    def db_target(self):
        if self._db_target is None:
            self._db_target = self._make_target(self.env.hosts.db[0])
        return self._db_target

    @property
    def app_targets(self) -> list:
        if self._app_targets is None:
            hosts = self.env.hosts.app or ([] if self.env.ssh else ["local"])
            self._app_targets = [self._make_target(h) for h in hosts]
        return self._app_targets

    def use_target(self, host: str, target) -> None:
        """``target`` for ``host`` for the whole run, instead of one made from the inventory
        (fab: the host Fabric was given, reached as Fabric was told); closed when the run ends."""
        self._targets[host] = target
        self._stack.callback(target.close)

    def _make_target(self, host: str):
        """One target per host for the whole run: its SSH connection is opened once and
        reused by every step (backup, restart, health, the recovery's restart and
        post-check), also when the DB host is an app host too; closed when the run ends."""
        t = self._targets.get(host)
        if t is None:
            from .targets.factory import make_target  # local without an ssh: block, else SSH

            t = self._targets[host] = make_target(host, self.env.ssh, self.env.protected)
            self._stack.callback(t.close)
        return t

    @property
    def store(self):
        if self._store is None:
            from .store.factory import make_store

            self._store = make_store(self.env)
        return self._store

    @property
    def catalog(self):
        if self._catalog is None:
            from .store.factory import make_catalog

            self._catalog = make_catalog(self.env, self.store)
        return self._catalog

    @property
    def access(self):
        if self._access is None:
            from .database.access import DbAccess

            cluster = self.cluster
            self._access = DbAccess(self.env, self.db_target, cluster=cluster)
            self._stack.callback(self._access.close)
        return self._access

    def close(self) -> None:
        self._stack.close()
        self.journal.close()


@contextlib.contextmanager
def run_context(env_name: str | None, action: str, *, journaled: bool = True, sink: EventSink | None = None,
                options: dict | None = None, confirm: Callable | None = None):
    """The one factory of a RunContext outside a playbook (the read-only views, check,
    validate, verify, prune): ``journaled=False`` for views that write no journal. Its
    connections, tunnels and lock are released on exit."""
    inv = load_inventory()
    ctx = RunContext(inv, inv.env(env_name), action, dict(options or {}), sink or NullSink(), confirm,
                     journaled=journaled)
    try:
        yield ctx
    finally:
        ctx.close()


# ------------------------------------------------------------------- runner


def _when(spec: StepSpec, ctx: RunContext) -> bool:
    cond = spec.when
    if not cond:
        return True
    neg = cond.startswith("not ")
    name = cond[4:] if neg else cond
    val = bool(ctx.state.get(f"when:{name}", ctx.options.get(name, False)))
    return not val if neg else val


def _run_step(ctx: RunContext, spec: StepSpec, phase: str, records: list) -> dict:
    """Run one step; its record is in ``records`` from the start, so a failed step is reported too."""
    from .steps import get_step

    fn = get_step(spec.step)
    rec = {"step": spec.label, "phase": phase, "status": "running"}
    records.append(rec)
    if not _when(spec, ctx):
        ctx.emit("step_skipped", f"skipped ({spec.when} is false)", step=spec.label)
        rec.update(status="skipped", duration_s=0.0)
        return rec
    ctx.state["current_step"] = spec.label
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
    """A step's measurements for the journal (``ctx.state["step_detail"]``, e.g. the rehearsal's
    per-revision durations): kept in its record, and so in deploy_history's ``steps``."""
    detail = ctx.state.pop("step_detail", None)
    if detail:
        rec["detail"] = redact_data(detail)


def _ttys() -> set[int]:
    out = set()
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                out.add(fd)
        except OSError:
            pass
    return out


def _detach_terminal(fds: set[int]) -> None:
    """SIGHUP: the terminal is gone, and writing to it now fails (EIO). Point the standard
    streams that were that terminal (``fds``, noted while it was there: a hung-up terminal
    no longer answers isatty) at /dev/null, so the recovery and the journal go on."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    try:
        for fd in fds | _ttys():
            try:
                os.dup2(null, fd)
            except OSError:
                pass
    finally:
        os.close(null)


class _SignalGuard:
    """SIGTERM and SIGHUP (a dropped terminal or SSH session) behave like Ctrl-C; while
    on_failure runs, further signals are held off."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.received: str | None = None
        self.ttys = _ttys()
        self._old: dict | None = {}
        try:
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._term)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _term(self, signum, frame):
        self.received = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            _detach_terminal(self.ttys)
        raise KeyboardInterrupt

    def _hup_held(self, signum, frame):
        self.received = self.received or "SIGHUP"
        _detach_terminal(self.ttys)

    @contextlib.contextmanager
    def shielded(self):
        try:
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            old_hup = signal.signal(signal.SIGHUP, self._hup_held)
        except ValueError:
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGHUP, old_hup)

    def __exit__(self, *exc):
        if self._old is not None:
            for sig, old in self._old.items():
                signal.signal(sig, old)


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
    from .steps import check_playbook

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
    with _SignalGuard() as guard:
        try:
            try:
                for spec in pb.steps:
                    rec = _run_step(ctx, spec, "main", report["steps"])
                    if (pb.on_failure_after and spec.step == pb.on_failure_after and rec["status"] == "ok"
                            and "backup_manifest" in ctx.state):
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
                report["failed_step"] = ctx.state.get("current_step")
                report["db_changed"] = bool(ctx.state.get("db_changed"))
                # restore only what this run changed: a failure before any write (verify, a refused
                # migrate, a restart with nothing applied) leaves the live DB and its newer writes alone
                if armed and report["db_changed"] and pb.on_failure:
                    ctx.state["failed_step"] = report["failed_step"]
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
    from .database.writestats import describe

    w = report.get("writes_since_backup")
    if w == {}:
        return f"; no writes since the backup were discarded (the replaced database is kept as {report['kept_as']})"
    return (f"; WRITES SINCE THE BACKUP discarded by the restore: {describe(w)}"
            + (f" ({'; '.join(report.get('writes_notes') or [])})" if w is None else "")
            + f"; they are kept in database {report['kept_as']}")


def _on_failure(ctx: RunContext, pb: Playbook, report: dict) -> None:
    rec: dict[str, Any] = {"status": "running", "done": [], "steps": []}
    report["recovery"] = rec
    ctx.state["recovering"] = True
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
    for fn in ctx.state.pop("on_finish", []):  # e.g. lift the write fence: on every exit path, first
        try:
            fn(ctx)
        except Exception as e:  # noqa: BLE001 - never hides the run's own outcome
            ctx.emit("warning", f"{getattr(fn, '__name__', 'cleanup')} failed: {redact(short_error(e))}")
    report["finished"] = time.time()
    report["started"] = ctx.started
    report["duration_s"] = round(report["finished"] - ctx.started, 3)
    for k in ("from_rev", "to_rev", "backup_id", "backup_url", "revisions", "restored_id", "adopt", "plan",
              "restore_summary", "selection", "writes_since_backup", "kept_as", "writes_notes", "fence_status",
              "fence_repaired", "recovered_by"):
        if k in ctx.state:
            report[k] = ctx.state[k]
    ctx.emit("run_finished", report["outcome"], step=None, outcome=report["outcome"], duration_s=report["duration_s"])
    # journal: the target DB's deploy_history (best effort: never hides the real outcome);
    # a dry run (`invoke plan`) writes nothing into the database, only the local log
    if ctx.state.get("db_touched") and not ctx.options.get("dry_run"):
        try:
            record_history(
                ctx.access.engine(),
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
    bid = ctx.state.get("backup_id")
    if bid:
        try:
            ctx.catalog.write_log(bid, ctx.journal.lines)
        except Exception:  # noqa: BLE001
            pass
    ctx.close()
