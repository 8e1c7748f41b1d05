"""Lock impact of each pending statement, read from the rendered SQL with pglast.

For every statement that touches an existing table: the lock it takes (PostgreSQL's
documented lock level of the command), and whether it rewrites the table (a new copy of
every row under that lock) or scans it (reads every row under that lock). The live part
(the table's size, whether a type change is binary-coercible, whether a default is
volatile) is :func:`vetai_ops.database.probes_live.measure_impacts`; this module only reads SQL.

Rules (PostgreSQL 15 documentation, "ALTER TABLE" and "Explicit Locking"):

- ALTER TABLE takes the strongest lock of its subcommands: ACCESS EXCLUSIVE for most;
  SHARE ROW EXCLUSIVE for ADD FOREIGN KEY and ENABLE/DISABLE TRIGGER; SHARE UPDATE EXCLUSIVE
  for VALIDATE CONSTRAINT, SET STATISTICS, SET/RESET (storage parameters), CLUSTER ON.
- rewrites: ALTER COLUMN TYPE (unless binary-coercible: decided live), ADD COLUMN with a
  volatile default (decided live), a serial/identity or stored generated column, SET
  TABLESPACE, SET LOGGED/UNLOGGED, SET ACCESS METHOD; VACUUM FULL and CLUSTER.
- scans: SET NOT NULL, ADD CHECK / FOREIGN KEY without NOT VALID, VALIDATE CONSTRAINT,
  ADD PRIMARY KEY / UNIQUE / EXCLUDE (builds an index), CREATE INDEX (SHARE; CONCURRENTLY:
  SHARE UPDATE EXCLUSIVE, two scans without blocking writes), UPDATE / DELETE (ROW EXCLUSIVE).
- metadata only: DROP COLUMN, SET/DROP DEFAULT, DROP NOT NULL, ADD ... NOT VALID, renames.

A rewrite of a table larger than ``checks.max_rewrite_mb`` refuses a deploy unless it is
acknowledged: ``# vetai-ops: allow rewrite <table>`` in the revision file or
``--allow='rewrite <table>'`` (also ``--allow=rewrite:<table>``) on the command line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pglast
from pglast import ast as pg
from pglast.enums import AlterTableType as AT
from pglast.enums import ConstrType
from pglast.stream import RawStream

from .ack import normalize
from .model import Finding

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE = "SHARE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
_STRENGTH = [ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, ACCESS_EXCLUSIVE]

_SUE_SUBCOMMANDS = {AT.AT_ValidateConstraint, AT.AT_SetStatistics, AT.AT_SetRelOptions, AT.AT_ResetRelOptions,
                    AT.AT_ClusterOn, AT.AT_DropCluster}
_SRE_SUBCOMMANDS = {AT.AT_EnableTrig, AT.AT_DisableTrig, AT.AT_EnableAlwaysTrig, AT.AT_EnableReplicaTrig,
                    AT.AT_EnableTrigAll, AT.AT_DisableTrigAll, AT.AT_EnableTrigUser, AT.AT_DisableTrigUser}
_REWRITE_SUBCOMMANDS = {AT.AT_SetTableSpace: "SET TABLESPACE copies the table",
                        AT.AT_SetLogged: "SET LOGGED rewrites the table",
                        AT.AT_SetUnLogged: "SET UNLOGGED rewrites the table",
                        AT.AT_SetAccessMethod: "SET ACCESS METHOD rewrites the table"}
_SERIAL = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}


BOOKKEEPING = {"alembic_version", "vetai_ops_applied", "deploy_history"}


def deparse(node) -> str:
    """PostgreSQL text of a parse-tree node, one line (pglast's deparser)."""
    return " ".join(RawStream()(node).split())


@dataclass
class TypeChange:
    """What the live check needs to decide whether ALTER COLUMN TYPE rewrites."""

    column: str
    type_sql: str  # deparsed target type, e.g. "varchar(20)"
    typmods: list[int]  # integer modifiers as written, e.g. [6, 2]
    plain_using: bool  # no USING, or USING is the column itself (possibly cast to the target type)


@dataclass
class Impact:
    """The lock a statement takes on one table and what it does to its rows."""

    revision: str
    statement: str  # deparsed, one line
    table: str
    schema: str | None
    lock: str
    effect: str = ""  # "rewrite" | "scan" | "" (metadata only)
    reason: str = ""
    # filled live by database.probes_live.measure_impacts
    size_bytes: int | None = None  # pg_total_relation_size; None: table does not exist yet
    acknowledged: bool = False
    # live questions (not in JSON)
    type_changes: list[TypeChange] = field(default_factory=list, repr=False)
    volatile_calls: list[str] = field(default_factory=list, repr=False)  # function names in ADD COLUMN defaults
    scan_reasons: list[str] = field(default_factory=list, repr=False)  # what scans, should no rewrite happen

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("type_changes")
        d.pop("volatile_calls")
        d.pop("scan_reasons")
        return d

    def line(self) -> str:
        """'ALTER TABLE pets ALTER COLUMN ... — ACCESS EXCLUSIVE, rewrites 1.2 GB'."""
        from ..units import human_bytes

        stmt = self.statement if len(self.statement) <= 100 else self.statement[:97] + "..."
        what = {"rewrite": "rewrites", "scan": "scans"}.get(self.effect)
        size = "new table" if self.size_bytes is None else human_bytes(self.size_bytes)
        tail = f", {what} {size}" if what else f", no rewrite or scan ({size})"
        return f"{stmt} — {self.lock}{tail}"


def _stronger(a: str, b: str) -> str:
    return a if _STRENGTH.index(a) >= _STRENGTH.index(b) else b


def nodes_of(node, cls):
    """Every ``cls`` node inside ``node`` (itself included), depth first, in source order.

    One walker for the SQL analyses here and in database/probes.py: pglast's ``Visitor``
    would do the same with a class per query; a generator keeps the call sites one line.
    """
    if isinstance(node, cls):
        yield node
    if isinstance(node, pg.Node):
        for attr in node:
            yield from nodes_of(getattr(node, attr), cls)
    elif isinstance(node, tuple):
        for x in node:
            yield from nodes_of(x, cls)


def _func_names(node) -> list[str]:
    """Names of the functions called anywhere inside ``node``."""
    return [f.funcname[-1].sval for f in nodes_of(node, pg.FuncCall)]


def _typmods(tn: pg.TypeName) -> list[int]:
    mods = []
    for m in tn.typmods or ():
        val = getattr(m, "val", None)
        if isinstance(val, pg.Integer):
            mods.append(val.ival)
    return mods


def _is_column(node, column: str, target: pg.TypeName) -> bool:
    """USING <column> or USING <column>::<the target type>."""
    if isinstance(node, pg.TypeCast) and deparse(node.typeName) == deparse(target):
        node = node.arg
    return isinstance(node, pg.ColumnRef) and len(node.fields) == 1 and \
        isinstance(node.fields[0], pg.String) and node.fields[0].sval == column


def _alter_table(rev: str, text: str, st: pg.AlterTableStmt) -> Impact | None:
    rel = st.relation
    imp = Impact(rev, text, rel.relname, rel.schemaname, ROW_EXCLUSIVE)
    reasons: list[tuple[str, str]] = []  # (effect, reason)
    for cmd in st.cmds or ():
        if not isinstance(cmd, pg.AlterTableCmd):
            continue
        sub, d = cmd.subtype, cmd.def_
        lock = ACCESS_EXCLUSIVE
        if sub in _SUE_SUBCOMMANDS:
            lock = SHARE_UPDATE_EXCLUSIVE
        elif sub in _SRE_SUBCOMMANDS:
            lock = SHARE_ROW_EXCLUSIVE
        if sub == AT.AT_AlterColumnType and isinstance(d, pg.ColumnDef):
            tn = d.typeName
            plain = d.raw_default is None or _is_column(d.raw_default, cmd.name, tn)
            imp.type_changes.append(TypeChange(cmd.name, deparse(tn), _typmods(tn), plain))
            reasons.append(("rewrite?", f"type change of {cmd.name}"))
        elif sub == AT.AT_AddColumn and isinstance(d, pg.ColumnDef):
            cons = d.constraints or ()
            if d.typeName is not None and d.typeName.names[-1].sval in _SERIAL:
                reasons.append(("rewrite", f"serial column {d.colname} (volatile nextval default)"))
            elif any(c.contype in (ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED) for c in cons):
                reasons.append(("rewrite", f"identity/generated column {d.colname}"))
            else:
                defaults = [c.raw_expr for c in cons if c.contype == ConstrType.CONSTR_DEFAULT and c.raw_expr]
                calls = [f for e in defaults for f in _func_names(e)]
                if calls:
                    imp.volatile_calls.extend(calls)
                    reasons.append(("rewrite?", f"default of {d.colname} calls {', '.join(sorted(set(calls)))}"))
                checks = [c for c in cons if c.contype == ConstrType.CONSTR_CHECK]
                if checks and defaults:
                    reasons.append(("scan", f"CHECK on new column {d.colname} with a default"))
        elif sub == AT.AT_SetNotNull:
            reasons.append(("scan", f"SET NOT NULL on {cmd.name} checks every row"))
        elif sub == AT.AT_AddConstraint and isinstance(d, pg.Constraint):
            if d.contype == ConstrType.CONSTR_FOREIGN:
                lock = SHARE_ROW_EXCLUSIVE
                if not d.skip_validation:
                    reasons.append(("scan", f"FOREIGN KEY {d.conname or ''} validated on every row".replace("  ", " ")))
            elif d.contype == ConstrType.CONSTR_CHECK and not d.skip_validation:
                reasons.append(("scan", f"CHECK {d.conname or ''} validated on every row".replace("  ", " ")))
            elif d.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_EXCLUSION) \
                    and not d.indexname:
                reasons.append(("scan", "builds the constraint's index"))
        elif sub == AT.AT_ValidateConstraint:
            reasons.append(("scan", f"VALIDATE CONSTRAINT {cmd.name} checks every row"))
        elif sub in _REWRITE_SUBCOMMANDS:
            reasons.append(("rewrite", _REWRITE_SUBCOMMANDS[sub]))
        imp.lock = _stronger(imp.lock, lock)
    _set_effect(imp, reasons)
    return imp


def _set_effect(imp: Impact, reasons: list[tuple[str, str]]) -> None:
    imp.scan_reasons = [r for e, r in reasons if e == "scan"]
    for effect in ("rewrite", "rewrite?", "scan"):
        mine = [r for e, r in reasons if e == effect]
        if mine:
            imp.effect = effect
            imp.reason = "; ".join(mine)
            return


def statement_impacts(sql_by_rev: dict[str, str]) -> list[Impact]:
    """One :class:`Impact` per statement that locks an existing table, in run order.

    ``effect`` may be ``"rewrite?"``: a type change or a default whose rewrite depends on
    the live catalog (resolved by ``database.probes_live.measure_impacts``). Unparsable SQL is
    skipped (the static gate reports it).
    """
    out: list[Impact] = []
    for rev, sql in sql_by_rev.items():
        try:
            stmts = pglast.parse_sql(sql)
        except pglast.parser.ParseError:
            continue
        for raw in stmts:
            st = raw.stmt
            try:
                text = deparse(st)
            except Exception:  # noqa: BLE001, S112 - deparse gaps for exotic nodes: nothing to measure
                continue
            imp = None
            if isinstance(st, pg.AlterTableStmt) and st.relation is not None:
                imp = _alter_table(rev, text, st)
            elif isinstance(st, pg.IndexStmt):
                lock = SHARE_UPDATE_EXCLUSIVE if st.concurrent else SHARE
                imp = Impact(rev, text, st.relation.relname, st.relation.schemaname, lock, "scan",
                             "builds the index" + (" without blocking writes" if st.concurrent else
                                                   " (blocks writes until done)"))
            elif isinstance(st, (pg.UpdateStmt, pg.DeleteStmt)):
                imp = Impact(rev, text, st.relation.relname, st.relation.schemaname, ROW_EXCLUSIVE, "scan",
                             "changes rows" + ("" if st.whereClause is not None else " (every row)"))
            elif isinstance(st, pg.VacuumStmt) and st.is_vacuumcmd and any(
                    isinstance(o, pg.DefElem) and o.defname == "full" for o in st.options or ()):
                for rel in st.rels or ():
                    out.append(Impact(rev, text, rel.relation.relname, rel.relation.schemaname, ACCESS_EXCLUSIVE,
                                      "rewrite", "VACUUM FULL rewrites the table"))
            elif isinstance(st, pg.ClusterStmt) and st.relation is not None:
                imp = Impact(rev, text, st.relation.relname, st.relation.schemaname, ACCESS_EXCLUSIVE, "rewrite",
                             "CLUSTER rewrites the table")
            elif isinstance(st, pg.RenameStmt) and st.relation is not None:
                imp = Impact(rev, text, st.relation.relname, st.relation.schemaname, ACCESS_EXCLUSIVE)
            elif isinstance(st, pg.TruncateStmt):
                for rv in st.relations or ():
                    out.append(Impact(rev, text, rv.relname, rv.schemaname, ACCESS_EXCLUSIVE))
            if imp is not None:
                out.append(imp)
    # Alembic's own bookkeeping (UPDATE alembic_version) is not the operator's concern
    return [i for i in out if i.table not in BOOKKEEPING]


REWRITE_RULE = "table-rewrite"


def rewrite_finding(imp: Impact, file: str = "") -> Finding:
    """The finding an over-limit rewrite is judged as (acknowledged like destructive ones)."""
    return Finding(file, imp.revision, REWRITE_RULE, imp.line(), operation=f"rewrite {imp.table}")


def rewrite_tokens(tokens) -> set[str]:
    """Acknowledgement tokens, with ``rewrite:<table>`` read as ``rewrite <table>``."""
    out = set()
    for t in tokens:
        t = normalize(t)
        out.add("rewrite " + t.split(":", 1)[1].strip() if t.startswith("rewrite:") else t)
    return out


def over_limit(impacts: list[Impact], max_bytes: int, file_tokens: dict[str, list[str]] | None = None,
               cli_tokens=()) -> list[Impact]:
    """Rewrites of tables over ``max_bytes`` that nobody acknowledged (sets ``acknowledged``)."""
    from .ack import is_acknowledged

    cli = rewrite_tokens(cli_tokens)
    out = []
    for imp in impacts:
        if imp.effect != "rewrite" or imp.size_bytes is None or imp.size_bytes <= max_bytes:
            continue
        f = rewrite_finding(imp)
        mine = rewrite_tokens((file_tokens or {}).get(imp.revision, ()))
        imp.acknowledged = is_acknowledged(f, mine) or is_acknowledged(f, cli, by_revision=True)
        if not imp.acknowledged:
            out.append(imp)
    return out
