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

Every probe runs in one READ ONLY transaction under ``statement_timeout`` and ``lock_timeout``
(each probe in a savepoint, so one that fails to evaluate does not end the others).
Expressions are the pglast deparse of the parsed statement (the text the migration itself
will run), never spliced from the file; identifiers and values are psycopg.sql
``Identifier`` / ``Literal``.

Casts: PostgreSQL 15 has no ``pg_input_is_valid`` (16+). The probe first asks for
``count((expr)::type)`` over the table (one statement, nothing rejected = done). Only when
that raises does it count the offending rows one by one: a ``DO`` block (PL/pgSQL, trusted
and present in every database) loops over the rows and evaluates the cast per row (by
ctid) in an exception block, a subtransaction that a READ ONLY transaction allows; the
count and the first keys come back through a transaction-local setting. ``DO`` writes
nothing, so the whole probe stays read-only (no temporary function: CREATE is refused in a
read-only transaction).

Big tables: when the planner's estimate (``pg_class.reltuples``; from the table's size
when it was never analyzed) is above ``checks.probe_sample_rows``, the probe reads a
``TABLESAMPLE SYSTEM`` sample of about that many rows, and says so: counts are then of the
sample, and a sample can miss duplicates.

A probe is skipped (with the reason, never silently) when an earlier pending statement
changes the rows it would look at (UPDATE/DELETE/INSERT, a DO block, a type change of the
same column): only running the migration (a rehearsal) can tell. Tables and columns that
pending revisions create have no live rows and are not probed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pglast
from pglast import ast as pg
from pglast.enums import AlterTableType as AT
from pglast.enums import ConstrType, ObjectType
from psycopg import errors as pgerr
from psycopg import sql

from ..validate.locks import Impact, deparse, nodes_of

STRING_TYPES = {"varchar", "bpchar", "text", "char", "character", "character varying", "name"}
_HARMLESS_CALLS = {"set_config", "setval", "nextval", "current_setting", "pg_advisory_xact_lock"}


@dataclass
class Probe:
    """One read-only question about the live rows, and (after :func:`run_probes`) its answer."""

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


# ---------------------------------------------------------------- running probes


@dataclass
class _Table:
    oid: int
    est_rows: int
    analyzed: bool
    columns: dict[str, tuple[int, int, str]]  # name -> (type oid, typmod, type name)
    keys: list[str]  # primary key columns ([] -> ctid)


_TABLE_SQL = """
select c.oid, c.reltuples, pg_relation_size(c.oid)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %s and c.relname = %s and c.relkind in ('r', 'p')
"""
_COLS_SQL = """
select a.attname, a.atttypid, a.atttypmod, t.typname from pg_attribute a join pg_type t on t.oid = a.atttypid
where a.attrelid = %s and a.attnum > 0 and not a.attisdropped
"""
_PK_SQL = """
select a.attname from pg_index i cross join unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
where i.indrelid = %s and i.indisprimary order by k.ord
"""


def _table(cur, schema: str | None, name: str) -> _Table | None:
    row = cur.execute(_TABLE_SQL, (schema or "public", name)).fetchone()
    if row is None:
        return None
    oid, reltuples, size = row
    cols = {r[0]: (r[1], r[2], r[3]) for r in cur.execute(_COLS_SQL, (oid,)).fetchall()}
    keys = [r[0] for r in cur.execute(_PK_SQL, (oid,)).fetchall()]
    analyzed = reltuples >= 0
    est = int(reltuples) if analyzed else int(size // 100)  # never analyzed: ~100 bytes a row
    return _Table(oid, est, analyzed, cols, keys)


def _key_text(keys: list[str]) -> sql.Composable:
    """``'id=' || id::text`` (every primary key column), or the row's ctid without one."""
    if not keys:
        return sql.SQL("'ctid=' || ctid::text")
    parts = [sql.SQL("{} || coalesce({}::text, 'NULL')").format(sql.Literal(f"{k}="), sql.Identifier(k))
             for k in keys]
    return sql.SQL("concat_ws(', ', {})").format(sql.SQL(", ").join(parts))


def _offenders(p: Probe, rel: sql.Composable, src: sql.Composable, key: sql.Composable) -> sql.Composable:
    """SELECT <key> AS vetai_key of the rows that offend."""
    if p.kind == "unique":
        where = [sql.SQL("({})").format(sql.SQL(p.where))] if p.where else []
        if p.nulls_distinct:
            where += [sql.SQL("{} IS NOT NULL").format(sql.SQL(k)) for k in p.keys]
        cond = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL("")
        return sql.SQL("SELECT vetai_key FROM (SELECT {key} AS vetai_key, count(*) OVER (PARTITION BY {keys}) "
                       "AS vetai_n FROM {src}{cond}) d WHERE vetai_n > 1").format(
            key=key, keys=sql.SQL(", ").join(sql.SQL(k) for k in p.keys), src=src, cond=cond)
    return sql.SQL("SELECT {key} AS vetai_key FROM {src} WHERE {cond}").format(key=key, src=src,
                                                                               cond=sql.SQL(p.cond or "false"))


def _count_and_examples(cur, q: sql.Composable) -> tuple[int, list[str]]:
    rows = cur.execute(sql.SQL("SELECT count(*) OVER (), vetai_key FROM ({}) p LIMIT 5").format(q)).fetchall()
    return (rows[0][0] if rows else 0), [r[1] for r in rows]


_PER_ROW = """DECLARE r record; n bigint := 0; ex text[] := '{{}}';
BEGIN
  FOR r IN EXECUTE {rows} LOOP
    BEGIN
      EXECUTE {test} USING r.vetai_tid;
    EXCEPTION WHEN others THEN
      n := n + 1;
      IF n <= 5 THEN ex := ex || r.vetai_key; END IF;
    END;
  END LOOP;
  PERFORM set_config('vetai_ops.probe_n', n::text, true);
  PERFORM set_config('vetai_ops.probe_ex', to_jsonb(ex)::text, true);
END"""


def _cast(cur, p: Probe, rel: sql.Composable, src: sql.Composable, key: sql.Composable) -> tuple[int, list[str]]:
    """Offending rows of a cast: one statement when every value casts, else counted per row."""
    cast = sql.SQL("({})::{}").format(sql.SQL(p.cast_expr), sql.SQL(p.cast_type))
    conn = cur.connection
    try:
        with conn.transaction():
            cur.execute(sql.SQL("SELECT count({}) FROM {}").format(cast, src))
        return 0, []
    except pgerr.QueryCanceled:
        raise
    except (pgerr.DataError, pgerr.IntegrityError):
        pass  # some value does not cast (or breaks a domain's CHECK): count them
    rows = sql.SQL("SELECT ctid AS vetai_tid, {} AS vetai_key FROM {}").format(key, src)
    test = sql.SQL("SELECT {} FROM {} WHERE ctid = $1").format(cast, rel)
    body = sql.SQL(_PER_ROW).format(rows=sql.Literal(rows.as_string(conn)), test=sql.Literal(test.as_string(conn)))
    try:
        with conn.transaction():
            cur.execute(sql.SQL("DO {}").format(sql.Literal(body.as_string(conn))))
            n, ex = cur.execute("SELECT current_setting('vetai_ops.probe_n'), "
                                "current_setting('vetai_ops.probe_ex')").fetchone()
        return int(n), list(json.loads(ex))
    except pgerr.QueryCanceled:  # the one-statement try already proved a rejected value
        p.what += " (at least one value; counting them all timed out after checks.probe_timeout)"
        return 1, []


def _assignment_cast_missing(cur, tab: _Table, column: str, type_sql: str) -> str:
    """Why PostgreSQL refuses ALTER COLUMN TYPE without USING ('' when an assignment cast exists)."""
    src = tab.columns[column][0]
    dst, cat = cur.execute("SELECT t.oid, t.typcategory FROM pg_type t WHERE t.oid = to_regtype(%s)",
                           (type_sql,)).fetchone() or (None, None)
    if dst is None or dst == src or cat == "S":
        return ""
    ok = cur.execute("SELECT exists(SELECT 1 FROM pg_cast WHERE castsource = %s AND casttarget = %s "
                     "AND castcontext IN ('a', 'i')) OR exists(SELECT 1 FROM pg_type WHERE oid = %s "
                     "AND (typtype = 'd' OR typelem <> 0))", (src, dst, src)).fetchone()[0]
    if ok:
        return ""
    return (f"column {column} ({tab.columns[column][2]}) cannot be cast automatically to {type_sql}: "
            "PostgreSQL refuses the statement; give the revision a USING expression "
            "(op.alter_column(..., postgresql_using=...))")


def run_probes(engine, probes: list[Probe], *, sample_rows: int, timeout: str, lock_timeout: str) -> list[Probe]:
    """Answer every probe (in place) in one READ ONLY transaction; returns ``probes``.

    Probes on tables or columns that do not exist live are dropped from the result (a
    pending revision makes them). A probe that cannot be evaluated (timeout, an expression
    the live schema does not have) gets ``error`` and refuses nothing.
    """
    todo = [p for p in probes if not p.skipped]
    if not todo:
        return probes
    out = [p for p in probes if p.skipped]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        conn = c.connection.driver_connection
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout)))
            cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
            tables: dict[tuple, _Table | None] = {}
            for p in todo:
                k = (p.schema, p.table)
                if k not in tables:
                    tables[k] = _table(cur, *k)
                tab = tables[k]
                if tab is None or not set(p.columns) <= set(tab.columns):
                    continue  # made by an earlier pending revision: no live rows
                out.append(p)
                _answer(cur, p, tab, sample_rows, timeout)
    order = {id(p): i for i, p in enumerate(probes)}
    return sorted(out, key=lambda p: order[id(p)])


def _answer(cur, p: Probe, tab: _Table, sample_rows: int, timeout: str) -> None:
    rel = sql.Identifier(p.schema, p.table) if p.schema else sql.Identifier(p.table)
    src = rel
    if sample_rows and tab.est_rows > sample_rows:
        pct = max(0.001, min(100.0, round(100.0 * sample_rows / tab.est_rows, 3)))
        src = sql.SQL("{} TABLESAMPLE SYSTEM ({})").format(rel, sql.Literal(pct))
        how = "planner estimate" if tab.analyzed else "never analyzed, estimated from its size"
        p.sampled = (f"TABLESAMPLE SYSTEM ({pct}%) of ~{tab.est_rows} rows ({how}) > checks.probe_sample_rows "
                     f"{sample_rows}: counts are of the sample"
                     + ("; a sample can miss duplicates" if p.kind == "unique" else ""))
    key = _key_text(tab.keys)
    conn = cur.connection
    try:
        with conn.transaction():  # a savepoint: one probe's error leaves the others running
            if p.kind == "cast" and p.needs_assignment_cast:
                why = _assignment_cast_missing(cur, tab, p.columns[0], p.cast_type)
                if why:
                    p.what = why
                    p.count, p.examples = _count_and_examples(cur, _offenders(
                        Probe(p.revision, "", "all", p.table, p.schema, [], "", cond="true"), rel, src, key))
                    p.count = max(p.count, 1)  # refused even on an empty table
                    return
            if p.kind == "length" and p.columns[0] in tab.columns:
                _, typmod, tname = tab.columns[p.columns[0]]
                if tname in ("varchar", "bpchar") and typmod >= 4 and typmod - 4 <= (p.max_len or 0):
                    p.count = 0  # the current type already fits
                    return
            if p.kind == "cast":
                p.count, p.examples = _cast(cur, p, rel, src, key)
            else:
                p.count, p.examples = _count_and_examples(cur, _offenders(p, rel, src, key))
    except pgerr.CannotCoerce as e:  # no cast between the types at all: PostgreSQL refuses the statement
        p.what = f"PostgreSQL refuses the cast ({str(e).splitlines()[0][:160]}); give the revision a USING expression"
        with conn.transaction():
            p.count, p.examples = _count_and_examples(cur, _offenders(
                Probe(p.revision, "", "all", p.table, p.schema, [], "", cond="true"), rel, src, key))
        p.count = max(p.count or 0, 1)
    except pgerr.QueryCanceled:
        p.error = f"timed out after checks.probe_timeout={timeout} (not proven either way)"
    except pgerr.LockNotAvailable:
        p.error = "the table is locked by another session (lock_timeout): not probed"
    except Exception as e:  # noqa: BLE001 - an expression the live schema lacks is not the probe's failure
        p.error = f"could not be evaluated on the live data: {str(e).splitlines()[0][:200]}"


# ---------------------------------------------------------------- lock impact, live


def measure_impacts(conn, impacts: list[Impact]) -> list[Impact]:
    """Fill each impact's live table size and settle the rewrites that depend on the catalog
    (type changes: binary-coercible or not; defaults: volatile or not). ``conn`` is a
    SQLAlchemy connection; all questions are catalog reads with bound parameters."""
    from sqlalchemy import text

    def q(query, **kw):
        return conn.execute(text(query), kw)

    for imp in impacts:
        oid = q("select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = :s and c.relname = :t and c.relkind in ('r', 'p', 'm')",
                s=imp.schema or "public", t=imp.table).scalar()
        imp.size_bytes = q("select pg_total_relation_size(:o)", o=oid).scalar() if oid is not None else None
        if imp.effect != "rewrite?":
            continue
        reasons = []
        for tc in imp.type_changes:
            if oid is None or _settled(conn, lambda oid=oid, tc=tc: _type_change_rewrites(q, oid, tc)):
                reasons.append(f"type change of {tc.column} to {tc.type_sql}")
        calls = sorted(set(imp.volatile_calls))
        if calls and _settled(conn, lambda calls=calls: q(
                "select exists(select 1 from pg_proc where proname = any(:n) and provolatile = 'v')",
                n=calls).scalar()):
            reasons.append(f"volatile default ({', '.join(sorted(set(imp.volatile_calls)))})")
        if reasons:
            imp.effect, imp.reason = "rewrite", "; ".join(reasons)
        elif imp.scan_reasons:
            imp.effect, imp.reason = "scan", "; ".join(imp.scan_reasons)
        else:
            imp.effect, imp.reason = "", "binary-coercible type change / stable default: catalog only"
    return impacts


def _settled(conn, ask) -> bool:
    """``ask()`` in a savepoint; a catalog question that errors counts as a rewrite (the safe answer)."""
    try:
        with conn.begin_nested():
            return bool(ask())
    except Exception:  # noqa: BLE001 - e.g. a type name the live catalog cannot read
        return True


_PRECISION_TYPES = {"timestamp", "timestamptz", "time", "timetz", "interval"}


def _type_change_rewrites(q, oid: int, tc) -> bool:
    """PostgreSQL's ATColumnChangeRequiresRewrite, for the common cases; unsure -> True."""
    if not tc.plain_using:
        return True
    row = q("select a.atttypid, a.atttypmod, t.typname from pg_attribute a join pg_type t on t.oid = a.atttypid "
            "where a.attrelid = :o and a.attname = :c and not a.attisdropped", o=oid, c=tc.column).first()
    dst = q("select t.oid, t.typname from pg_type t where t.oid = to_regtype(:t)", t=tc.type_sql).first()
    if row is None or dst is None:
        return True
    src_oid, src_mod, _ = row
    dst_oid, dst_name = dst
    mods = tc.typmods
    if src_oid == dst_oid:
        if dst_name == "varchar":
            return bool(mods) and (src_mod < 0 or mods[0] < src_mod - 4)
        if dst_name == "numeric":
            if not mods:
                return False
            if src_mod < 0:
                return True
            sp, ss = ((src_mod - 4) >> 16) & 0xFFFF, (src_mod - 4) & 0xFFFF
            dp, ds = mods[0], (mods[1] if len(mods) > 1 else 0)
            return not (ds == ss and dp >= sp)
        if dst_name in _PRECISION_TYPES:
            return bool(mods) and (src_mod < 0 or mods[0] < src_mod)
        return bool(mods)  # other typmod changes (char(n), bit(n)): rewrite
    binary = q("select exists(select 1 from pg_cast where castsource = :s and casttarget = :d "
               "and castmethod = 'b')", s=src_oid, d=dst_oid).scalar()
    if not binary:
        return True
    return bool(mods) and dst_name in ("varchar", "bpchar", "numeric", "bit", "varbit")


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


def data_loss(engine, sql_by_rev: dict[str, str], *, sample_rows: int, timeout: str,
              lock_timeout: str) -> dict[tuple[str, str], str]:
    """``{(revision, "drop_column t.c"): "discards N non-NULL values"}`` for the pending DROP
    COLUMNs whose column holds data: the destructive gate's refusal says what the loss is.
    Best effort: a failure here returns what it has, never hides the refusal it decorates."""
    out: dict[tuple[str, str], str] = {}
    try:
        probes = run_probes(engine, [p for p in derive_probes(sql_by_rev) if p.kind == "data_loss" and not p.skipped],
                            sample_rows=sample_rows, timeout=timeout, lock_timeout=lock_timeout)
    except Exception:  # noqa: BLE001 - decoration only
        return out
    for p in probes:
        if p.count:
            table = f"{p.schema}.{p.table}" if p.schema else p.table
            out[(p.revision, f"drop_column {table}.{p.columns[0]}")] = (
                f"discards {p.count} non-NULL values" + (" (in a sample)" if p.sampled else ""))
    return out
