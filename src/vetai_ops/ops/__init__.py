"""Pipeline-level operations that are not playbooks: backups.verify, backups.prune, adopt.

Each runs on a :class:`~vetai_ops.pipeline.RunContext` (targets, store, DB access, events,
journal in logs/migration.log) like the pipeline does, but with its own fixed sequence.
They report through ``ctx.emit`` and never print; the face renders.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from ..config import load_inventory
from ..events import EventSink
from ..pipeline import RunContext


@contextlib.contextmanager
def op_context(env_name: str | None, action: str, sink: EventSink | None = None,
               options: dict | None = None, confirm: Callable | None = None) -> Iterator[RunContext]:
    """A journaled RunContext for one operation (closed, with its lock if any, on exit)."""
    inv = load_inventory()
    kwargs = {"sink": sink} if sink is not None else {}
    ctx = RunContext(inv, inv.env(env_name), action, dict(options or {}), confirm=confirm, **kwargs)
    try:
        yield ctx
    finally:
        ctx.close()


def drop_database(ctx: RunContext, name: str) -> None:
    from ..database.introspect import drop_database as _drop

    _drop(ctx.access.admin_engine(), name)
