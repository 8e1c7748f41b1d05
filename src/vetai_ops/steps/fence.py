"""The write fence (``write_fence: none | read_only | commands``): no app write between the
backup's start and the end of the post-checks, so a restore in that window discards nothing.

- ``fence`` with ``repair_only`` (right after ``lock`` in every mutating playbook): lifts a
  fence a killed run left (its record says which), before any gate can refuse the run.
- ``fence`` (deploy: before ``backup``; rollback: before ``restore``): raises this run's. The record
  ``<env>/fence.json`` in the backup store is written BEFORE the fence goes up and removed
  only once it is down: a run killed at any moment leaves a fence the next run can see.
- ``unfence`` (after the post-checks): lifts it. Every other exit (a failure after the
  recovery, Ctrl-C, SIGTERM, SIGHUP) lifts it when the run's context closes, with signals
  held off; only SIGKILL leaves it, for the next mutating run to lift and report.

``read_only`` is :mod:`vetai_ops.database.fence`. A restore copy about to be swapped in is
fenced too (before its swap), so the app stays read-only through the post-checks.
``commands`` runs ``services.maintenance_on`` / ``maintenance_off`` on every app host.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time

from ..database import fence as dbfence
from ..errors import OpsError, short_error
from . import step


def _key(ctx) -> str:
    return f"{ctx.env.name}/fence.json"


def _read_record(ctx) -> dict | None:
    key = _key(ctx)
    if not ctx.store.exists(key):
        return None
    try:
        rec = json.loads(ctx.store.get_bytes(key))
        return rec if isinstance(rec, dict) and rec.get("mode") in ("read_only", "commands") else None
    except (ValueError, OpsError):
        return None


@contextlib.contextmanager
def _signals_held(redeliver: bool = False):
    """Lifting a fence is not cut short by Ctrl-C / SIGTERM / SIGHUP (main thread only). A signal
    that arrives meanwhile is noted, not discarded: with ``redeliver`` (a leftover fence lifted
    before this run's own work) the first one is raised again once the fence is down, so the run
    stops as the operator asked instead of going on to its backup and migration; without (the
    run's end) it is dropped, there is nothing left to interrupt."""
    saved: dict = {}
    got: list[int] = []
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            saved[sig] = signal.signal(sig, lambda signum, frame: got.append(signum))
    except ValueError:
        pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
        if redeliver and got:
            signal.raise_signal(got[0])  # its own handler now: KeyboardInterrupt in a run


def _lift(ctx, rec: dict) -> list[str]:
    """Lift the fence ``rec`` describes; returns what failed (empty: it is down, record removed)."""
    failed: list[str] = []
    if rec["mode"] == "read_only":
        maint = ctx.access.admin
        # the live name (after a restore: the restored copy, fenced before its swap) and the
        # database a restore retired (it carries the setting it had when it was live)
        for db in [rec["database"], *rec.get("also", [])]:
            try:
                dbfence.lift_read_only(maint, db, rec.get("previous"))
            except Exception as e:  # noqa: BLE001
                failed.append(f"{db}: {short_error(e)}")
    else:
        hosts = set(rec.get("hosts") or [])
        for t in ctx.app_targets:
            if t.name not in hosts:
                continue
            try:
                t.run(list(ctx.env.services.maintenance_off or []), timeout=120)
            except Exception as e:  # noqa: BLE001
                failed.append(f"maintenance_off on {t.name}: {short_error(e)}")
    if not failed:
        try:
            ctx.store.delete(_key(ctx))
        except Exception as e:  # noqa: BLE001 - the next run lifts it again (harmless) and removes it
            failed.append(f"the fence is down but its record {_key(ctx)} could not be removed: {short_error(e)}")
    return failed


def _lift_now(ctx) -> None:
    rec = ctx.state.fence
    if not rec or rec.get("lifted"):
        return
    with _signals_held():
        if ctx.state.kept_as and rec["mode"] == "read_only":
            rec.setdefault("also", []).append(ctx.state.kept_as)
            with contextlib.suppress(Exception):
                ctx.store.put_bytes(_key(ctx), json.dumps(rec).encode())
        try:
            failed = _lift(ctx, rec)
        except Exception as e:  # noqa: BLE001 - reported, never a failed step (that would restore)
            failed = [short_error(e)]
    rec["lifted"] = not failed
    if failed:
        ctx.state.fence_status = "STILL UP: " + "; ".join(failed)
        ctx.emit("warning", f"the {rec['mode']} write fence could not be lifted ({'; '.join(failed)}); the app may "
                 f"still be unable to write. The next deploy or rollback lifts it, or by hand: "
                 + ("ALTER DATABASE ... RESET default_transaction_read_only" if rec["mode"] == "read_only"
                    else "run services.maintenance_off on the app hosts"))
    else:
        ctx.state.fence_status = "lifted"
        ctx.emit("info", f"{rec['mode']} write fence lifted: the app can write again")


def repair_leftover(ctx) -> None:
    """A fence a killed run left: lift it first, and say so (recorded in the report)."""
    rec = _read_record(ctx)
    if rec is None:
        return
    if rec["mode"] == "commands" and not ctx.env.services.maintenance_off:
        raise OpsError(f"a 'commands' write fence left by run {rec.get('run_id')} cannot be lifted: "
                       "services.maintenance_off is not set", "set it, or end maintenance by hand and remove "
                       f"{ctx.store.url(_key(ctx))}")
    what = (f"a {rec['mode']} write fence left by run {rec.get('run_id')} ({rec.get('operator')}, "
            f"{rec.get('action')}, up since {rec.get('since')})")
    if ctx.options.get("dry_run"):  # a plan changes nothing: it says so
        ctx.emit("warning", f"{what} is still up; the next deploy or rollback lifts it")
        return
    with _signals_held(redeliver=True):
        failed = _lift(ctx, rec)
    if failed:
        raise OpsError(f"{what} could not be lifted: {'; '.join(failed)}", "check the DB / app hosts, then re-run")
    ctx.state.fence_repaired = {k: rec.get(k) for k in ("run_id", "operator", "action", "since", "mode")}
    ctx.emit("warning", f"lifted {what}: the app can write again")


@step("fence")
def fence(ctx, repair_only: bool = False):
    repair_leftover(ctx)
    mode = ctx.env.write_fence
    if repair_only:
        return "lifted a fence a killed run left" if ctx.state.fence_repaired else "no fence left by a killed run"
    if mode == "none" or ctx.options.get("dry_run"):
        return "none" if mode == "none" else "dry run"
    rec = {"mode": mode, "run_id": ctx.run_id, "operator": ctx.operator, "action": ctx.action,
           "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "database": ctx.access.db.name}
    if mode == "read_only":
        with ctx.access.admin() as c:
            rec["previous"] = dbfence.current_setting(c, rec["database"])
    else:
        rec["hosts"] = [t.name for t in ctx.app_targets]
    ctx.store.put_bytes(_key(ctx), json.dumps(rec).encode())  # first: a killed run's fence is known
    ctx.state.fence = rec
    # every exit path: the run's finish calls it first, with signals held off
    ctx.state.on_finish.append(_lift_now)
    if mode == "read_only":
        _, ended = dbfence.raise_read_only(ctx.access.admin, rec["database"])
        ctx.state.before_swap.append(dbfence.set_read_only)  # a restore copy is fenced before it goes live
        return f"read_only: {rec['database']} refuses the app's writes ({ended} session(s) ended to reconnect read-only)"
    for t in ctx.app_targets:
        t.run(list(ctx.env.services.maintenance_on or []), timeout=120)
    return f"commands: maintenance on, on {', '.join(rec['hosts']) or 'no app host'}"


@step("unfence")
def unfence(ctx):
    if not ctx.state.fence:
        return "no fence"
    _lift_now(ctx)
    return f"{ctx.state.fence['mode']} write fence {ctx.state.fence_status}"
