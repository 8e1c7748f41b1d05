"""Data probes, live: each probe of :mod:`vetai_ops.database.probes` answered on the live rows,
and the lock impacts of the pending SQL measured on the live catalog.

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
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg import errors as pgerr
from psycopg import sql

from ..validate.locks import Impact
from .probes import Probe, derive_probes


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
