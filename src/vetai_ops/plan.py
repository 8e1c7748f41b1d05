"""What a run will do, as the steps state it and the face shows it (``cli/render.py``).

A plan is made by a step (``plan``: :class:`DeployPlan`; ``confirm`` on a rollback:
:class:`RollbackPlan`; ``downgrade_plan``: :class:`DowngradePlan`; ``adopt_check``:
:class:`AdoptPlan`), kept in the run's state (:class:`vetai_ops.runstate.RunState`), handed
to the face's confirmation, emitted as a ``plan`` event and reported (``--json``: the
report's ``"plan"``) through :meth:`Plan.to_json`, whose keys are the JSON the tool has
always printed (``from`` / ``to`` for the revisions). :meth:`Plan.from_json` reads one back
(the renderer gets the event's data).

The containers inside (findings, drift, impacts, probes, the selection) stay JSON-like:
they are what validate/, database/ and store/ already report as JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

_JSON_NAMES = {"from_rev": "from", "to_rev": "to"}


@dataclass
class Plan:
    env: str
    database: str

    # keys left out of the JSON while they are None (set only on some paths)
    _OMIT_NONE: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.name in self._OMIT_NONE:
                continue
            out[_JSON_NAMES.get(f.name, f.name)] = v
        return out

    @staticmethod
    def from_json(data: dict[str, Any]) -> Plan:
        """A plan from its JSON (``to_json``), of the kind its keys say."""
        cls: type[Plan] = (RollbackPlan if "restore" in data else DowngradePlan if "reverting" in data
                           else AdoptPlan if "typeorm_table" in data else DeployPlan)
        names = {_JSON_NAMES.get(f.name, f.name): f.name for f in dataclasses.fields(cls)}
        return cls(**{names[k]: v for k, v in data.items() if k in names})


@dataclass
class RunPlan(Plan):
    """What every plan of a run on the live database says: where, and from which revision to which."""

    protected: bool
    db_host: str
    app_hosts: list[str]
    from_rev: str | None
    to_rev: str | None
    backup_store: str
    pending: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, env, **kw):
        """A plan of this kind for ``env`` (a :class:`vetai_ops.config.Environment`)."""
        return cls(env=env.name, database=env.database.name, protected=env.protected, db_host=env.hosts.db[0],
                   app_hosts=list(env.hosts.app), **kw)


@dataclass
class DeployPlan(RunPlan):
    """A deploy or ``migrations.upgrade``: the pending revisions, their SQL, the gate's findings,
    the live measurements, the rehearsal decision and the estimates."""

    sql: dict[str, str] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    accepting_drift: list[str] = field(default_factory=list)
    impacts: list[dict] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)
    first_deploy_seeds: bool = False
    estimated_restore_s: float | None = None
    rehearsal: dict = field(default_factory=dict)  # validate/datadep.py Decision, plus its "result" once rehearsed
    estimates: dict = field(default_factory=dict)
    migrate_by_revision: dict = field(default_factory=dict)
    max_rollback_s: float | None = None
    created: float | None = None


@dataclass
class RollbackPlan(RunPlan):
    """A rollback: the backup chosen by ``--to``, how it was chosen, and the writes it sets aside."""

    restore: str = ""  # the backup's id
    restore_size: int = 0
    restore_signed: bool = True
    selection: dict = field(default_factory=dict)  # store/when.py Selection.to_json()
    findings: list[dict] = field(default_factory=list)
    writes_since_backup: dict | None = None  # None: unknown (writes_notes says why)
    writes_notes: list[str] = field(default_factory=list)
    kept_as: str = ""


@dataclass
class DowngradePlan(RunPlan):
    """``migrations.downgrade``: the revisions reverted, newest first."""

    reverting: list[str] = field(default_factory=list)
    created: float | None = None


@dataclass
class AdoptPlan(Plan):
    """``invoke adopt``: the TypeORM journal read, the Alembic revision it maps to, the schema
    compared; after the stamp, the result (this is also what ``invoke adopt --json`` prints)."""

    typeorm_table: str = ""
    ok: bool = False
    differences: list[str] = field(default_factory=list)
    typeorm_names: list[str] | None = None
    refused_names: list[str] | None = None
    typeorm_last: str | None = None
    typeorm_applied: int | None = None
    revision: str | None = None
    drift: list[dict] | None = None
    compare_s: float | None = None
    reference_cached: bool | None = None
    tables: int | None = None
    stamped: str | None = None
    head: str | None = None
    pending: list[str] | None = None

    _OMIT_NONE: ClassVar[tuple[str, ...]] = (
        "typeorm_names", "refused_names", "typeorm_last", "typeorm_applied", "revision", "drift", "compare_s",
        "reference_cached", "tables", "stamped", "head", "pending")
