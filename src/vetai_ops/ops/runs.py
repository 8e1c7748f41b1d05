"""The playbooks an operator runs by name: ``deploy``, ``backup``, ``rollback``, and ``plan``
(a deploy's dry run). Each maps its arguments to the playbook's options and returns the
run's report (:func:`vetai_ops.pipeline.run_playbook`)."""

from __future__ import annotations

from typing import Callable

from ..events import EventSink
from ..pipeline import run_playbook

Confirm = Callable[[str, dict], bool] | None


def deploy(env: str | None, *, yes: bool = False, dry_run: bool = False, allow=(), skip_backup: bool = False,
           no_rehearsal: bool = False, accept_drift=(), sink: EventSink | None = None, confirm: Confirm = None) -> dict:
    return run_playbook("deploy", env, options={"yes": yes, "dry_run": dry_run, "allow": list(allow or []),
                                                "skip_backup": skip_backup, "no_rehearsal": no_rehearsal,
                                                "accept_drift": list(accept_drift or [])},
                        sink=sink, confirm=confirm)


def plan(env: str | None, *, allow=(), accept_drift=(), sink: EventSink | None = None, confirm: Confirm = None) -> dict:
    """What a deploy would do (``report["plan"]``: hosts, from/to, pending, sql, findings). Changes nothing."""
    return run_playbook("deploy", env, options={"dry_run": True, "allow": list(allow or []),
                                                "accept_drift": list(accept_drift or [])},
                        sink=sink, confirm=confirm)


def backup(env: str | None, *, sink: EventSink | None = None, confirm: Confirm = None) -> dict:
    return run_playbook("backup", env, options={}, sink=sink, confirm=confirm)


def rollback(env: str | None, *, to: str | None, yes: bool = False, trust_unsigned: bool = False,
             sink: EventSink | None = None, confirm: Confirm = None) -> dict:
    return run_playbook("rollback", env, options={"to": to, "yes": yes, "trust_unsigned": trust_unsigned},
                        sink=sink, confirm=confirm)
