"""The run's context: what every step is given (``ctx``).

:class:`RunContext`: the env, the options, the run's id and operator, its sinks (the face,
an in-memory list, the journal file), the steps' shared :class:`~vetai_ops.runstate.RunState`
(``ctx.state``), and the run's resources, made on first use and closed with the run:
``db_target``, ``app_targets``, ``store``, ``catalog``, ``access``, ``cluster``.
:func:`run_context` makes one for an operation outside a playbook.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import Environment, Inventory, load_inventory
from ..events import Event, EventSink, ListSink, NullSink, Tee
from ..journal import FileJournal, operator_id
from ..runstate import RunState
from ..secrets import redact, redact_data


@dataclass
class RunContext:
    inventory: Inventory
    env: Environment
    action: str
    options: dict[str, Any] = field(default_factory=dict)
    sink: EventSink = field(default_factory=NullSink)
    confirm: Callable[[str, dict], bool] | None = None  # face-provided prompt
    state: RunState = field(default_factory=RunState)
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
        self.sink.emit(Event(kind, step or self.state.current_step, redact(message), redact_data(data)))

    def progress(self, step: str, done: int, total: int | None = None, **data) -> None:
        self.sink.emit(Event("progress", step, "", {"done": done, "total": total, **data}))

    # ---------------------------------------------------------------- resources
    @property
    def cluster(self):
        if self.env.sandbox is not None and self._cluster is None:
            from ..database.sandbox import ensure_sandbox

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
            from ..targets.factory import make_target  # local without an ssh: block, else SSH

            t = self._targets[host] = make_target(host, self.env.ssh, self.env.protected)
            self._stack.callback(t.close)
        return t

    @property
    def store(self):
        if self._store is None:
            from ..store.factory import make_store

            self._store = make_store(self.env)
        return self._store

    @property
    def catalog(self):
        if self._catalog is None:
            from ..store.factory import make_catalog

            self._catalog = make_catalog(self.env, self.store)
        return self._catalog

    @property
    def access(self):
        if self._access is None:
            from ..database.access import DbAccess

            cluster = self.cluster
            self._access = DbAccess(self.env, self.db_target, cluster=cluster)
            self._stack.callback(self._access.close)
        return self._access

    def on_close(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` when the run's context closes (after the run's end, on every exit path)."""
        self._stack.callback(fn)

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
