"""Operations outside the main playbooks: backups.verify, backups.prune, adopt (a built-in playbook).

Each runs on a :class:`~vetai_ops.pipeline.RunContext` (targets, store, DB access, events,
journal in logs/migration.log) like the pipeline does, but with its own fixed sequence.
They report through ``ctx.emit`` and never print; the face renders.
"""

from __future__ import annotations

from typing import Callable

from ..events import EventSink
from ..pipeline import RunContext, run_context


def op_context(env_name: str | None, action: str, sink: EventSink | None = None,
               options: dict | None = None, confirm: Callable | None = None):
    """A journaled RunContext for one operation (closed, with its lock if any, on exit)."""
    return run_context(env_name, action, sink=sink, options=options, confirm=confirm)


def drop_database(ctx: RunContext, name: str) -> None:
    from ..database.introspect import drop_database as _drop

    _drop(ctx.access.admin_engine(), name)
