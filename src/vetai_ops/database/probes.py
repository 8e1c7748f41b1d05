"""Data probes: what the pending revisions' SQL would hit in the live data, asked before the backup.

The pending revisions' rendered SQL (Alembic offline mode) is parsed with pglast; each
data-dependent statement becomes a read-only question to the live database:

============================  ==============================================================
statement                     probe (offending rows)
============================  ==============================================================
UNIQUE / PRIMARY KEY /        rows of duplicate groups (``count(*) OVER (PARTITION BY keys)``),
CREATE UNIQUE INDEX           inside the partial index's WHERE, NULL keys left out unless
                              NULLS NOT DISTINCT; a PRIMARY KEY also probes NULLs
SET NOT NULL                  rows where the column IS NULL
ADD COLUMN ... NOT NULL       every row (no default: each existing row would be NULL)
ADD CHECK (not NOT VALID),    rows where ``NOT (expr)`` (a CHECK passes on NULL, so does this)
VALIDATE of a pending CHECK
ALTER COLUMN TYPE             values the cast (USING expr, or the column) rejects; no USING and
                              no assignment cast in pg_cast: PostgreSQL refuses the statement
... TYPE varchar(n)/char(n)   values longer than n (trailing spaces aside, as PostgreSQL does)
... TYPE <enum made here>     values not among the new enum's labels (the enum-value removal)
DROP COLUMN                   non-NULL values (data loss: reported, never refused here; the
                              destructive gate already needs the acknowledgement)
============================  ==============================================================

The probes are answered by :mod:`vetai_ops.database.probes_live`.

A probe is skipped (with the reason, never silently) when an earlier pending statement
changes the rows it would look at (UPDATE/DELETE/INSERT, a DO block, a type change of the
same column): only running the migration (a rehearsal) can tell. Tables and columns that
pending revisions create have no live rows and are not probed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pglast
from pglast import ast as pg
from pglast.enums import AlterTableType as AT
from pglast.enums import ConstrType, ObjectType
from psycopg import sql

from ..validate.locks import deparse, nodes_of

STRING_TYPES = {"varchar", "bpchar", "text", "char", "character", "character varying", "name"}
_HARMLESS_CALLS = {"set_config", "setval", "nextval", "current_setting", "pg_advisory_xact_lock"}


@dataclass
class Probe:
    """One read-only question about the live rows, and (after :func:`~vetai_ops.database.probes_live.run_probes`) its answer."""

    revision: str
    statement: str  # deparsed, one line
    kind: str  # unique | not_null | new_not_null | check | cast | length | enum | data_loss
    table: str
    schema: str | None
    columns: list[str]  # columns the probe reads (must exist live)
    what: str  # "NULL in name", "duplicates of (lower(name), client_id)", ...
    refuses: bool = True
    skipped: str = ""  # why it was not run (earlier pending statement changes the rows, ...)
    # answer
    count: int | None = None
    examples: list[str] = field(default_factory=list)
    sampled: str = ""  # the sampling strategy, when the table was sampled
    error: str = ""  # the probe could not be evaluated (timeout, unknown function, ...)
    # query parts (not in JSON)
    cond: str | None = field(default=None, repr=False)  # deparsed boolean: the row offends
    keys: list[str] = field(default_factory=list, repr=False)  # deparsed unique keys
    where: str | None = field(default=None, repr=False)  # partial index predicate
    nulls_distinct: bool = field(default=True, repr=False)
    cast_expr: str | None = field(default=None, repr=False)
    cast_type: str | None = field(default=None, repr=False)
    needs_assignment_cast: bool = field(default=False, repr=False)
    max_len: int | None = field(default=None, repr=False)
    labels: list[str] = field(default_factory=list, repr=False)

    @property
    def failed(self) -> bool:
        return self.refuses and bool(self.count)

    @property
    def where_text(self) -> str:
        return f"{self.table}({', '.join(self.columns)})" if self.columns else self.table

    def describe(self) -> str:
        """One line naming revision, statement, table/column, count and example keys."""
        stmt = self.statement if len(self.statement) <= 140 else self.statement[:137] + "..."
        ex = f" (e.g. {'; '.join(self.examples)})" if self.examples else ""
        sample = " in a sample" if self.sampled else ""
        return f"{self.revision}: `{stmt}` — {self.count} rows of {self.where_text}{sample}: {self.what}{ex}"

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("cond", "keys", "where", "nulls_distinct", "cast_expr", "cast_type", "needs_assignment_cast",
                  "max_len", "labels"):
            d.pop(k)
        return d


# ---------------------------------------------------------------- deriving probes from SQL


def _column_refs(node) -> set[str]:
    return {c.fields[-1].sval for c in nodes_of(node, pg.ColumnRef)
            if c.fields and isinstance(c.fields[-1], pg.String)}


def _type_names(node) -> set[str]:
    return {t.names[-1].sval for t in nodes_of(node, pg.TypeName)}


def _calls(node) -> set[str]:
    return {f.funcname[-1].sval for f in nodes_of(node, pg.FuncCall)}


class _Walk:
    """Pending statements in run order, with what earlier ones did to tables, columns and types."""

    def __init__(self):
        self.created: set[str] = set()  # tables created by pending statements
        self.new_cols: set[tuple[str, str]] = set()
        self.changed: dict[str, str] = {}  # table -> the earlier statement that changes its rows
        self.changed_cols: dict[tuple[str, str], str] = {}
        self.opaque = ""  # an earlier DO / CALL / function call: any row may have changed
        self.enums: dict[str, list[str]] = {}  # enum types (re)created by pending statements
        self.pending_types: set[str] = set()  # other types created/renamed by pending statements
        self.not_valid: dict[tuple[str, str], object] = {}  # (table, constraint) -> CHECK expr
        self.probes: list[Probe] = []

    def add(self, p: Probe, refs: set[str] = frozenset()) -> None:
        if p.table in self.created or any((p.table, c) in self.new_cols for c in set(p.columns) | set(refs)):
            return  # no live rows to look at
        why = self.opaque or self.changed.get(p.table) or next(
            (self.changed_cols[(p.table, c)] for c in set(p.columns) | set(refs) if (p.table, c) in self.changed_cols),
            "")
        if why:
            p.skipped = (f"an earlier pending statement changes these rows ({why[:100]}); "
                         "only running the migration (a rehearsal) can tell")
        self.probes.append(p)

    def statement(self, rev: str, text: str, st) -> None:
        if isinstance(st, pg.CreateStmt):
            self.created.add(st.relation.relname)
        elif isinstance(st, pg.CreateTableAsStmt) and st.into is not None:
            self.created.add(st.into.rel.relname)
        elif isinstance(st, pg.RenameStmt):
            if st.renameType == ObjectType.OBJECT_TABLE:
                self.changed[st.newname] = text
            elif st.renameType == ObjectType.OBJECT_COLUMN and st.relation is not None:
                self.changed_cols[(st.relation.relname, st.newname)] = text
            elif st.renameType == ObjectType.OBJECT_TYPE:
                self.pending_types.add(st.newname)
                self.pending_types.add(st.object[-1].sval if isinstance(st.object, tuple) else "?")
        elif isinstance(st, pg.CreateEnumStmt):
            name = st.typeName[-1].sval
            self.enums[name] = [v.sval for v in st.vals or ()]
            self.pending_types.discard(name)
        elif isinstance(st, pg.AlterEnumStmt):
            name = st.typeName[-1].sval
            if name in self.enums and st.newVal and not st.oldVal:
                self.enums[name].append(st.newVal)
            else:
                self.pending_types.add(name)
        elif isinstance(st, (pg.CompositeTypeStmt, pg.CreateDomainStmt, pg.CreateRangeStmt)):
            names = getattr(st, "typevar", None) or getattr(st, "domainname", None) or getattr(st, "typeName", None)
            last = names.relname if isinstance(names, pg.RangeVar) else names[-1].sval
            self.pending_types.add(last)
        elif isinstance(st, (pg.InsertStmt, pg.UpdateStmt, pg.DeleteStmt)):
            self.changed[st.relation.relname] = text
        elif isinstance(st, pg.TruncateStmt):
            for rv in st.relations or ():
                self.changed[rv.relname] = text
        elif isinstance(st, (pg.DoStmt, pg.CallStmt)):
            self.opaque = self.opaque or text
        elif isinstance(st, pg.SelectStmt) and _calls(st) - _HARMLESS_CALLS:
            self.opaque = self.opaque or text
        elif isinstance(st, pg.IndexStmt) and st.unique:
            self._unique(rev, text, st.relation, [e.name if e.name else e.expr for e in st.indexParams or ()],
                         st.whereClause, st.nulls_not_distinct, "CREATE UNIQUE INDEX")
        elif isinstance(st, pg.AlterTableStmt) and st.relation is not None:
            for cmd in st.cmds or ():
                if isinstance(cmd, pg.AlterTableCmd):
                    self._alter(rev, text, st.relation, cmd)

    def _probe(self, rev, text, rel, kind, columns, what, **kw) -> Probe:
        return Probe(rev, text, kind, rel.relname, rel.schemaname, list(columns), what, **kw)

    def _unique(self, rev, text, rel, elems, where, nulls_not_distinct, label, primary=False):
        keys, refs = [], set()
        for e in elems:
            if isinstance(e, str):
                keys.append(sql.Identifier(e).as_string())
                refs.add(e)
            else:
                keys.append(f"({deparse(e)})")
                refs |= _column_refs(e)
        if where is not None:
            refs |= _column_refs(where)
        shown = ", ".join(e if isinstance(e, str) else deparse(e) for e in elems)
        cols = [e for e in elems if isinstance(e, str)]
        self.add(self._probe(rev, text, rel, "unique", cols,
                             f"duplicate values of ({shown}) before {label}"
                             + (f" WHERE {deparse(where)}" if where is not None else ""),
                             keys=keys, where=deparse(where) if where is not None else None,
                             nulls_distinct=not nulls_not_distinct), refs)
        if primary:
            for c in cols:
                self.add(self._probe(rev, text, rel, "not_null", [c], f"NULL in {c} (a PRIMARY KEY is NOT NULL)",
                                     cond=f"{sql.Identifier(c).as_string()} IS NULL"))

    def _alter(self, rev, text, rel, cmd) -> None:
        t, d = rel.relname, cmd.def_
        if cmd.subtype == AT.AT_AddColumn and isinstance(d, pg.ColumnDef):
            cons = d.constraints or ()
            kinds = {c.contype for c in cons}
            not_null = d.is_not_null or ConstrType.CONSTR_NOTNULL in kinds or ConstrType.CONSTR_PRIMARY in kinds
            filled = kinds & {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED} \
                or (d.typeName is not None and d.typeName.names[-1].sval.startswith(("serial", "bigserial",
                                                                                     "smallserial")))
            if not_null and not filled:
                self.add(self._probe(rev, text, rel, "new_not_null", [],
                                     f"new column {d.colname} is NOT NULL without a default: every existing row "
                                     "would be NULL", cond="true"))
            self.new_cols.add((t, d.colname))
        elif cmd.subtype == AT.AT_SetNotNull:
            self.add(self._probe(rev, text, rel, "not_null", [cmd.name], f"NULL in {cmd.name} before SET NOT NULL",
                                 cond=f"{sql.Identifier(cmd.name).as_string()} IS NULL"))
        elif cmd.subtype == AT.AT_DropColumn:
            self.add(self._probe(rev, text, rel, "data_loss", [cmd.name],
                                 f"non-NULL values in {cmd.name} are lost by DROP COLUMN", refuses=False,
                                 cond=f"{sql.Identifier(cmd.name).as_string()} IS NOT NULL"))
        elif cmd.subtype == AT.AT_AddConstraint and isinstance(d, pg.Constraint):
            if d.contype == ConstrType.CONSTR_CHECK and d.raw_expr is not None:
                if d.skip_validation:
                    self.not_valid[(t, d.conname or "")] = d.raw_expr
                else:
                    self._check(rev, text, rel, d.conname, d.raw_expr)
            elif d.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY) and not d.indexname and d.keys:
                label = "PRIMARY KEY" if d.contype == ConstrType.CONSTR_PRIMARY else "UNIQUE"
                self._unique(rev, text, rel, [k.sval for k in d.keys], None, d.nulls_not_distinct, label,
                             primary=d.contype == ConstrType.CONSTR_PRIMARY)
        elif cmd.subtype == AT.AT_ValidateConstraint and (t, cmd.name) in self.not_valid:
            self._check(rev, text, rel, cmd.name, self.not_valid[(t, cmd.name)])
        elif cmd.subtype == AT.AT_AlterColumnType and isinstance(d, pg.ColumnDef):
            self._type_change(rev, text, rel, cmd.name, d)
            self.changed_cols[(t, cmd.name)] = text

    def _check(self, rev, text, rel, name, expr) -> None:
        refs = _column_refs(expr)
        self.add(self._probe(rev, text, rel, "check", sorted(refs),
                             f"rows violating CHECK {name + ' ' if name else ''}({deparse(expr)})",
                             cond=f"NOT ({deparse(expr)})"), refs)

    def _type_change(self, rev, text, rel, column, d: pg.ColumnDef) -> None:
        tn = d.typeName
        tname = tn.names[-1].sval
        tsql = deparse(tn)
        using = d.raw_default
        expr = using if using is not None else pg.ColumnRef(fields=(pg.String(sval=column),))
        refs = _column_refs(expr) | {column}
        if tname in self.enums:
            inner = expr.arg if isinstance(expr, pg.TypeCast) and expr.typeName.names[-1].sval == tname else expr
            p = self._probe(rev, text, rel, "enum", [column],
                            f"values of {column} that are not labels of the new enum {tname} "
                            f"({', '.join(self.enums[tname])})",
                            cond=f"({deparse(inner)}) IS NOT NULL AND ({deparse(inner)})::text <> ALL ("
                                 f"{sql.Literal(self.enums[tname]).as_string()}::text[])",
                            labels=list(self.enums[tname]))
            if _type_names(inner) & (self.pending_types | set(self.enums)):
                p.skipped = "the USING expression uses a type made by a pending revision: it cannot be tried live"
            self.add(p, refs)
            return
        if tname in self.pending_types or _type_names(expr) & self.pending_types:
            p = self._probe(rev, text, rel, "cast", [column], f"values of {column} the cast to {tsql} rejects")
            p.skipped = f"type {tname} is made by a pending revision: its cast cannot be tried live"
            self.add(p, refs)
            return
        if tname in ("varchar", "bpchar") and tn.typmods:
            n = next((m.val.ival for m in tn.typmods if isinstance(getattr(m, "val", None), pg.Integer)), None)
            if n is not None:
                self.add(self._probe(rev, text, rel, "length", [column],
                                     f"values of {column} longer than {n} characters ({tsql})",
                                     cond=f"char_length(rtrim(({deparse(expr)})::text, ' ')) > {int(n)}",
                                     max_len=int(n)), refs)
        if tname not in STRING_TYPES or using is not None:
            self.add(self._probe(rev, text, rel, "cast", [column],
                                 f"values of {column} the cast to {tsql} rejects"
                                 + (f" (USING {deparse(using)})" if using is not None else ""),
                                 cast_expr=deparse(expr), cast_type=tsql, needs_assignment_cast=using is None), refs)


def derive_probes(sql_by_rev: dict[str, str]) -> list[Probe]:
    """The probes for the pending revisions' SQL (in run order); unparsable SQL is skipped
    (the static gate reports it)."""
    w = _Walk()
    for rev, text_sql in sql_by_rev.items():
        try:
            stmts = pglast.parse_sql(text_sql)
        except pglast.parser.ParseError:
            continue
        for raw in stmts:
            try:
                text = deparse(raw.stmt)
            except Exception:  # noqa: BLE001 - deparse gaps for exotic nodes
                text = type(raw.stmt).__name__
            w.statement(rev, text, raw.stmt)
    return w.probes


def probe_notes(p: Probe | dict) -> list[str]:
    """What an operator should read about a probe that did not simply pass (or one that
    measured data loss): sampled, skipped, not evaluated, rows lost. ``p`` may be its JSON."""
    d = p.to_json() if isinstance(p, Probe) else p
    head = f"{d['revision']}: probe {d['kind']} on {d['table']}"
    out = []
    if d.get("skipped"):
        out.append(f"{head} skipped: {d['skipped']}")
    if d.get("error"):
        out.append(f"{head} not proven: {d['error']}")
    if d.get("sampled"):
        out.append(f"{head} sampled: {d['sampled']}")
    if d["kind"] == "data_loss" and d.get("count") is not None:
        cols = ", ".join(d.get("columns") or [])
        out.append(f"{d['revision']}: data loss: DROP COLUMN {d['table']}.{cols} discards {d['count']} non-NULL "
                   f"values" + (" (in a sample)" if d.get("sampled") else ""))
    return out
