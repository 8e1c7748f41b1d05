"""What the steps of one run tell each other: :class:`RunState`, the run context's ``state``.

Typed fields, not string keys: a step that writes ``ctx.state.pending`` and one that reads
it agree on the name and the type, and a field nobody reads is dead code (``vulture``).
Who writes each field is said next to it; the pipeline reads the bookkeeping ones, the
``when:`` conditions (:meth:`RunState.condition`) and the report's (:meth:`RunState.report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .database.advisory import DeployLock
    from .plan import Plan
    from .store.manifest import Manifest

# fields whose None means something (the base revision, unknown writes): whether a step set
# them is kept (RunState.is_set), and a run's report carries only those a step set
_TRACKED = frozenset(("from_rev", "to_rev", "expect_rev", "backup_url", "revisions", "restored_id", "plan",
                      "restore_summary", "selection", "writes_since_backup", "kept_as", "writes_notes",
                      "fence_status", "fence_repaired", "recovered_by"))


@dataclass
class RunState:
    # -- the pipeline's bookkeeping
    current_step: str | None = None  # the step running (events name it)
    failed_step: str | None = None  # the main step that failed, while on_failure runs
    recovering: bool = False  # on_failure is running
    step_detail: dict | None = None  # a step's measurements for its journal record (rehearse)
    on_finish: list[Callable[[Any], None]] = field(default_factory=list)  # run at the run's end, every exit path

    # -- the ``when:`` conditions of a playbook (steps.CONDITIONS); None: not decided by a step,
    #    the option of that name decides
    run_migrations: bool | None = None  # validate
    first_deploy: bool | None = None  # validate
    backup_first: bool | None = None  # validate (a destructive revision acknowledged)
    downgrade_recovery: bool | None = None  # recovery_plan, downgrade

    # -- the database
    lock: DeployLock | None = None  # lock; migrate, downgrade and the swap ask it again
    db_touched: bool = False  # the run read or wrote the database: journaled in its deploy_history
    db_changed: bool = False  # the run changed the live database: on_failure restores
    from_rev: str | None = None  # where the run started (validate, downgrade_plan, restore, adopt_stamp)
    to_rev: str | None = None  # where it goes
    expect_rev: str | None = None  # when set (downgrade, restore): what postcheck expects instead of to_rev
    revisions: list[dict] = field(default_factory=list)  # run_alembic: each revision applied / reverted, timed
    own_writes: dict = field(default_factory=dict)  # run_alembic: rows the revisions wrote (not the app's)

    # -- validate, preflight, plan
    pending: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    sql: dict[str, str] = field(default_factory=dict)  # revision -> its offline SQL
    validated_hashes: dict[str, str] = field(default_factory=dict)  # revision -> sha256 (migrate checks)
    ack_tokens: dict[str, list[str]] = field(default_factory=dict)  # revision -> its `# vetai-ops: allow`
    acknowledged_destructive: bool = False  # verify restores the backup first
    pg_dump_version: str | None = None  # preflight asked the DB host; the backup records it
    db_size: int | None = None
    row_counts_before: dict[str, int] = field(default_factory=dict)
    impacts: list[dict] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)
    db_props: dict | None = None  # preflight captured them before anything of the run touched them
    object_owners: dict | None = None
    drift: list[dict] = field(default_factory=list)
    drift_accepting: list = field(default_factory=list)  # database.drift.Drift named by --accept-drift
    rehearsal: dict = field(default_factory=dict)  # plan: validate/datadep.py Decision.to_json()
    history_rows: list = field(default_factory=list)  # plan read deploy_history; rehearse's estimates reuse it
    plan: Plan | None = None
    confirm_deferred: bool = False  # confirm asks after the rehearsal; until then migrate refuses

    # -- backups and restores
    backup: Manifest | None = None  # the backup this run made (on_failure restores it)
    backup_url: str | None = None
    rollback_id: str | None = None  # the backup the operator confirmed is the one restored
    selection: dict | None = None  # how --to was read (store/when.py)
    before_swap: list[Callable[[Any, str], None]] = field(default_factory=list)  # (maint connector, copy): fence
    kept_as: str | None = None  # the retired database a restore kept
    writes_since_backup: dict | None = None
    writes_notes: list[str] = field(default_factory=list)
    restored_id: str | None = None
    restore_summary: dict | None = None
    recovered_by: str | None = None  # "downgrade" when on_failure downgraded instead of restoring

    # -- the write fence
    fence: dict | None = None  # its record (steps/fence.py)
    fence_status: str | None = None
    fence_repaired: dict | None = None  # a leftover fence this run lifted

    def __post_init__(self):
        self._set: set[str] = set()

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name in _TRACKED and "_set" in self.__dict__:
            self._set.add(name)

    def is_set(self, name: str) -> bool:
        """Whether a step set ``name`` (a tracked field, e.g. ``from_rev``: None is the base revision)."""
        return name in self._set

    def condition(self, name: str) -> bool | None:
        """The ``when:`` condition ``name`` (steps.CONDITIONS) as a step decided it; None: undecided."""
        return {"run_migrations": self.run_migrations, "first_deploy": self.first_deploy,
                "backup_first": self.backup_first, "downgrade_recovery": self.downgrade_recovery}[name]

    def report(self) -> dict[str, Any]:
        """What the run's report carries: the fields a step set (the plan as its JSON), and the
        backup's id."""
        out = {"from_rev": self.from_rev, "to_rev": self.to_rev, "backup_url": self.backup_url,
               "revisions": self.revisions, "restored_id": self.restored_id,
               "plan": self.plan.to_json() if self.plan is not None else None,
               "restore_summary": self.restore_summary, "selection": self.selection,
               "writes_since_backup": self.writes_since_backup, "kept_as": self.kept_as,
               "writes_notes": self.writes_notes, "fence_status": self.fence_status,
               "fence_repaired": self.fence_repaired, "recovered_by": self.recovered_by}
        out = {k: v for k, v in out.items() if k in self._set}
        if self.backup is not None:
            out["backup_id"] = self.backup.id
        return out
